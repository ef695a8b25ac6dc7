import type { JobName, JobPayload } from './catalog';

export interface EnqueueOptions {
  /** A deliberate re-run of a window: the job id gets `~<tag>` appended. */
  rerunTag?: string;
  /** A window whose job ran out of attempts is run again instead of staying failed. */
  retryFailed?: boolean;
  /** Base of the exponential backoff, when not the catalog's. */
  backoffMs?: number;
}

/** What the domain may know of a queued job. */
export interface QueuedJob {
  id: string;
  name: string;
  state: 'waiting' | 'active' | 'completed' | 'failed';
  progress: { done: number; total: number };
  attempts: number;
  error?: string;
}

/**
 * The domain's one door to the job runtime: enqueue a catalog job (its id names its window,
 * so enqueueing a window twice is a no-op), and look one up. BullMQ implements it in jobs/.
 */
export interface JobPort {
  enqueue<N extends JobName>(name: N, payload: JobPayload<N>, options?: EnqueueOptions): Promise<{ id?: string }>;
  find(jobId: string): Promise<QueuedJob | undefined>;
}
