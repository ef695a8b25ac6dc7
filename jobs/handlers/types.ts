import type pg from 'pg';
import type { Env } from '../../src/env';
import type { Logger } from '../../src/lib/logger';
import type { JobName, JobPayload } from '../catalog';
import type { AnalyticsCache } from '../../src/domain/analytics/cache';

export interface JobDeps {
  pool: pg.Pool;
  env: Env;
  logger: Logger;
  /** Rollup changes drop the cached analytics answers they make stale. */
  analyticsCache: AnalyticsCache;
}

export interface JobContext {
  jobId: string;
  reportProgress(done: number, total: number): Promise<void>;
}

/** What a run reports to JobRun: rows touched plus whatever details it wants kept. */
export interface JobResult {
  rowsTouched: number;
  [detail: string]: unknown;
}

export type JobHandler<N extends JobName> = (deps: JobDeps, payload: JobPayload<N>, ctx: JobContext) => Promise<JobResult>;
