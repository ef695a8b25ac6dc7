import type pg from 'pg';
import type { PrismaClient } from '../../src/generated/prisma/client';
import type { Env } from '../../src/env';
import type { Logger } from '../../src/lib/logger';
import type { JobName, JobPayload } from '../../src/domain/jobs/catalog';
import type { RollupDeps } from '../../src/domain/rollups/aggregate';
import type { JobPort } from '../../src/domain/jobs/port';
import type { ReactionDeps } from '../../src/domain/quotas/reactions';
import type { Metrics } from '../../src/lib/metrics';
import type { BillingDeps } from '../../src/domain/billing/deps';

/** What job handlers work with; built once per process by src/app.ts (jobDepsOf). */
export interface JobDeps {
  pool: pg.Pool;
  prisma: PrismaClient;
  env: Env;
  logger: Logger;
  metrics: Metrics;
  /** The job runtime, as the domain sees it (enqueue, look a job up). */
  jobs: JobPort;
  /** Alerts and webhooks that follow from what a job found. */
  reactions: ReactionDeps;
  /** Rollup changes drop the cached analytics answers they make stale. */
  rollups: RollupDeps;
  /** Stripe reporting, reconciliation and their outbox. */
  billing: BillingDeps;
}

export interface JobContext {
  jobId: string;
  /** 1 for the first attempt. */
  attempt: number;
  maxAttempts: number;
  reportProgress(done: number, total: number): Promise<void>;
}

/** What a run reports to JobRun: rows touched plus whatever details it wants kept. */
export interface JobResult {
  rowsTouched: number;
  [detail: string]: unknown;
}

export type JobHandler<N extends JobName> = (deps: JobDeps, payload: JobPayload<N>, ctx: JobContext) => Promise<JobResult>;
