import type { Env } from '../env';
import type { Database } from '../lib/db';
import type { Logger } from '../lib/logger';
import type { Metrics } from '../lib/metrics';
import type { Redis } from '../lib/redis';
import type { ApiKeyAuthenticator } from '../domain/api-keys/authenticator';
import type { EventWriter } from '../domain/usage/ingest';
import type { GroupCommitter } from '../domain/usage/group-commit';
import type { QuotaEnforcer } from '../domain/quotas/enforcer';
import type { JobQueues } from '../../jobs/queues';
import type { AnalyticsCache } from '../domain/analytics/cache';
import type { FinalDayCache } from '../domain/usage-reader/final-days';
import type { CoverageCache } from '../domain/usage-reader/coverage-cache';
import type { ReadTarget } from '../lib/read-replica';
import type { ReactionDeps } from '../domain/quotas/reactions';
import type { TrackDeps } from '../domain/usage/track';
import type { LicenseDeps } from '../domain/licenses/licenses';
import type { ThresholdDeps } from '../domain/quotas/thresholds';
import type { KeyRevocations } from '../domain/api-keys/authenticator';
import type { RollupDeps } from '../domain/rollups/aggregate';
import type { Db } from '../lib/db';
import type { BillingDeps } from '../domain/billing/deps';
import type { AddressRateLimiter } from '../domain/api-keys/throttles';

/** Everything a request handler may use; built once per process in src/app.ts. */
export interface Services {
  env: Env;
  db: Database;
  redis: Redis;
  /** Quota counters (auto-pipelined). */
  quotaRedis: Redis;
  /** BullMQ's connection (commands wait out a Redis restart instead of failing). */
  bullConnection: Redis;
  queues: JobQueues;
  logger: Logger;
  metrics: Metrics;
  authenticator: ApiKeyAuthenticator;
  eventWriter: EventWriter;
  groupCommitter: GroupCommitter;
  quota: QuotaEnforcer;
  analyticsCache: AnalyticsCache;
  finalDays: FinalDayCache;
  /**
   * Licenses' rollup coverage, kept as a guess that analytics.usage checks in the same statement
   * as its sums; one per read target (a guess read on the primary may be ahead of the replica).
   */
  coverage: Record<ReadTarget['source'], CoverageCache>;
  /** Alerts and webhooks that follow a crossed level or an overage. */
  reactions: ReactionDeps;
  /** Ingestion: limits, writer, group commit, quota enforcement. */
  track: TrackDeps;
  /** The collaborators of domain operations whose side effects reach beyond their rows. */
  licenses: LicenseDeps;
  thresholds: ThresholdDeps;
  apiKeys: { prisma: Db; revocations: KeyRevocations };
  rollups: RollupDeps;
  /** Stripe billing: connections, ledger, outbox, webhooks in. */
  billing: BillingDeps;
  /** signup.register: attempts per client address (SIGNUP_LIMIT per SIGNUP_WINDOW_SECONDS). */
  signup: { throttle: AddressRateLimiter };
}
