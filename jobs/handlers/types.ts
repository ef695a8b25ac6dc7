import type pg from 'pg';
import type { PrismaClient } from '../../src/generated/prisma/client';
import type { JobQueues } from '../queues';
import type { Env } from '../../src/env';
import type { Logger } from '../../src/lib/logger';
import type { JobName, JobPayload } from '../catalog';
import type { AnalyticsCache } from '../../src/domain/analytics/cache';

export interface JobDeps {
  pool: pg.Pool;
  prisma: PrismaClient;
  queues: JobQueues;
  env: Env;
  logger: Logger;
  /** Rollup changes drop the cached analytics answers they make stale. */
  analyticsCache: AnalyticsCache;
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
