import { RedisRateGate, bucketKey } from './domain/billing/rate-gate';
import type { Env } from './env';
import { createDatabase } from './lib/db';
import type { Logger } from './lib/logger';
import { createMetrics } from './lib/metrics';
import { createRedis, isCluster, redisTargetOf } from './lib/redis';
import { ApiKeyAuthenticator } from './domain/api-keys/authenticator';
import { AddressRateLimiter, FailedAuthThrottle, KeyRateLimiter } from './domain/api-keys/throttles';
import { RefusalAudit } from './domain/audit/refusal-audit';
import { ensureAdminKey } from './domain/api-keys/api-keys';
import { ensurePlans } from './domain/plans/ensure-plans';
import { EventWriter } from './domain/usage/ingest';
import { GroupCommitter } from './domain/usage/group-commit';
import { ensureUsageEventPartitions } from './domain/usage/partitions';
import { QuotaEnforcer } from './domain/quotas/enforcer';
import { LicenseCache } from './domain/licenses/license-cache';
import type { Services } from './server/services';
import type { JobDeps } from '../jobs/handlers/types';
import type { ReactionDeps } from './domain/quotas/reactions';
import { DAY_MS } from './lib/time';
import { JobQueues, bullPrefix } from '../jobs/queues';
import { AnalyticsCache } from './domain/analytics/cache';
import { FinalDayCache } from './domain/usage-reader/final-days';
import { CoverageCache } from './domain/usage-reader/coverage-cache';
import { SecretBox, parseEncryptionKey } from './lib/secret-box';
import { StripeGateway } from './domain/billing/stripe-gateway';
import type { BillingDeps } from './domain/billing/deps';

/** Builds the long-lived parts of a process; nothing listens until the caller says so. */
export async function createServices(env: Env, logger: Logger): Promise<Services> {
  const db = createDatabase(env.DATABASE_URL, env.DB_POOL_SIZE, env.EXPORT_POOL_SIZE, {
    directUrl: env.DATABASE_DIRECT_URL,
    readUrl: env.DATABASE_READ_URL,
    readMaxLagMs: env.DATABASE_READ_MAX_LAG_MS,
    onReplicaError: (err) => logger.warn({ err }, 'read replica unavailable (DATABASE_READ_URL): reads go to the primary until it is back'),
  });
  const redisTarget = redisTargetOf(env);
  const redis = createRedis(redisTarget);
  await redis.connect();
  const metrics = createMetrics();
  db.reads.start(metrics);
  // One cache of licenses for the quota decision and the writer; changes are broadcast to every process.
  const licenseCache = new LicenseCache(db.pool, {
    ttlMs: env.QUOTA_LIMITS_CACHE_SECONDS * 1000,
    redis,
    channelPrefix: env.REDIS_KEY_PREFIX,
  });
  await licenseCache.start();
  const eventWriter = new EventWriter(db.pool, metrics, licenseCache);
  const groupCommitter = new GroupCommitter(eventWriter, {
    flushIntervalMs: env.INGEST_FLUSH_INTERVAL_MS,
    maxGroupSize: env.INGEST_MAX_GROUP_SIZE,
    maxInflight: env.INGEST_MAX_INFLIGHT_FLUSHES,
  });
  // BullMQ blocks on its connection and wants commands to wait out a Redis restart.
  const bullConnection = createRedis(redisTarget, { maxRetriesPerRequest: null });
  await bullConnection.connect();
  const queues = new JobQueues(bullConnection, bullPrefix(env.REDIS_KEY_PREFIX, isCluster(bullConnection)));
  // Quota checks get their own connection with auto-pipelining: the checks of concurrent
  // requests leave in one write and Redis answers them in one wake-up.
  const quotaRedis = createRedis(redisTarget, { enableAutoPipelining: true });
  await quotaRedis.connect();
  // Failure counts and key rate limits share the quota connection: one auto-pipelined script each.
  const counters = { keyPrefix: env.REDIS_KEY_PREFIX, redisTimeoutMs: env.QUOTA_REDIS_TIMEOUT_MS };
  const authenticator = new ApiKeyAuthenticator(db.prisma, {
    cacheTtlMs: env.API_KEY_CACHE_TTL_SECONDS * 1000,
    usageFlushMs: env.API_KEY_USAGE_FLUSH_SECONDS * 1000,
    redis,
    channelPrefix: env.REDIS_KEY_PREFIX,
    maxKeys: env.API_KEY_CACHE_MAX_KEYS,
    maxRefused: env.API_KEY_CACHE_MAX_REFUSED,
    throttle: new FailedAuthThrottle(quotaRedis, logger, {
      ...counters,
      addressLimit: env.AUTH_FAILURE_LIMIT,
      prefixLimit: env.AUTH_FAILURE_PREFIX_LIMIT,
      windowSeconds: env.AUTH_FAILURE_WINDOW_SECONDS,
    }),
    rateLimiter: new KeyRateLimiter(quotaRedis, logger, counters),
    refusals: new RefusalAudit(db.prisma, logger, { namespace: env.REDIS_KEY_PREFIX, windowSeconds: env.AUTH_FAILURE_WINDOW_SECONDS }),
    onRefusal: (reason) => metrics.authRefusals.inc({ reason }),
  });
  await authenticator.start();
  const quota = new QuotaEnforcer(
    { redis: quotaRedis, pool: db.pool, logger, licenses: licenseCache },
    {
      keyPrefix: env.REDIS_KEY_PREFIX,
      failMode: env.QUOTA_FAIL_MODE,
      limitsCacheMs: env.QUOTA_LIMITS_CACHE_SECONDS * 1000,
      redisTimeoutMs: env.QUOTA_REDIS_TIMEOUT_MS,
      leaseMaxEvents: env.QUOTA_LEASE_MAX_EVENTS,
    },
  );
  const analyticsCache = new AnalyticsCache(redis, env.REDIS_KEY_PREFIX, env.USAGE_CACHE_TTL_SECONDS, metrics);
  const finalDays = new FinalDayCache();
  const coverage = { primary: new CoverageCache(), replica: new CoverageCache() };
  const reactions: ReactionDeps = {
    pool: db.pool,
    logger,
    webhooks: { prisma: db.prisma, jobs: queues, retryBaseMs: env.WEBHOOK_RETRY_BASE_MS },
  };
  const track = {
    limits: { maxAgeMs: env.EVENT_MAX_AGE_DAYS * DAY_MS, maxFutureMs: env.EVENT_MAX_FUTURE_SECONDS * 1000 },
    writer: eventWriter,
    committer: groupCommitter,
    metrics,
    quota: { enforcer: quota, reactions },
  };
  const encryptionKey = env.BILLING_ENCRYPTION_KEY ? parseEncryptionKey(env.BILLING_ENCRYPTION_KEY) : null;
  const billing: BillingDeps = {
    prisma: db.prisma,
    pool: db.pool,
    logger,
    box: encryptionKey ? new SecretBox(encryptionKey) : null,
    gateway: new StripeGateway({ apiBase: env.STRIPE_API_BASE, timeoutMs: env.BILLING_STRIPE_TIMEOUT_MS }),
    webhooks: reactions.webhooks,
    limits: quota,
    send: {
      rps: env.BILLING_STRIPE_RPS,
      concurrency: env.BILLING_STRIPE_CONCURRENCY,
      budgetMs: env.BILLING_SEND_BUDGET_MS,
      retryBaseMs: env.BILLING_RETRY_BASE_MS,
      leaseMs: env.BILLING_STRIPE_TIMEOUT_MS * 2 + 5000,
      maxAttempts: 12,
    },
    onReconciliationDifferences: (count) => metrics.billingReconciliationDifferences.inc(count),
    // One token bucket per Stripe account in Redis: every worker process shares the account's rate.
    rateGateFor: (connectionId, rps) => new RedisRateGate(redis, bucketKey(env.REDIS_KEY_PREFIX, connectionId), rps, logger),
  };
  return {
    env, db, redis, billing, bullConnection, logger, metrics, authenticator, eventWriter, groupCommitter, queues, analyticsCache, finalDays, coverage, quotaRedis, quota, reactions, track,
    licenses: { prisma: db.prisma, limits: quota, analytics: analyticsCache },
    thresholds: { prisma: db.prisma, limits: quota },
    apiKeys: { prisma: db.prisma, revocations: authenticator },
    rollups: { pool: db.pool, analytics: analyticsCache },
    signup: {
      throttle: new AddressRateLimiter(quotaRedis, logger, { ...counters, namespace: 'signup', limit: env.SIGNUP_LIMIT, windowSeconds: env.SIGNUP_WINDOW_SECONDS }),
    },
  };
}

/** What the workers' job handlers get, from the same parts as the API's. */
export function jobDepsOf(services: Services): JobDeps {
  const { db, env, logger, metrics, reactions, rollups } = services;
  return { pool: db.pool, prisma: db.prisma, env, logger, metrics, reactions, rollups, jobs: services.queues, billing: services.billing };
}

/** Idempotent start-up data: plan tiers, the bootstrap admin key, event partitions. */
export async function prepareData(services: Services): Promise<void> {
  const { env, db } = services;
  await ensurePlans(db.prisma);
  if (env.BOOTSTRAP_ADMIN_KEY) await ensureAdminKey(db.prisma, env.BOOTSTRAP_ADMIN_KEY);
  const now = new Date();
  await ensureUsageEventPartitions(db.pool, now, new Date(now.getTime() - (env.EVENT_MAX_AGE_DAYS + 1) * DAY_MS));
}

/** Finishes in-flight writes, then closes pools. */
export async function closeServices(services: Services): Promise<void> {
  await services.groupCommitter.drain();
  await services.quota.close(); // unused leased quota back to the counters
  await services.authenticator.stop();
  await services.quota.licenses.stop();
  await services.queues.close().catch(() => undefined);
  await services.bullConnection.quit().catch(() => undefined);
  await services.redis.quit().catch(() => undefined);
  await services.quotaRedis.quit().catch(() => undefined);
  await services.db.close();
}
