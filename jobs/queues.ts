import { Queue, type Job, type JobsOptions } from 'bullmq';
import type { Redis } from '../src/lib/redis';
import { QUEUES, type JobName, type JobPayload, type QueueName, jobCatalog, jobIdFor } from '../src/domain/jobs/catalog';
import type { EnqueueOptions, JobPort, QueuedJob } from '../src/domain/jobs/port';

/**
 * BullMQ keys live under the service's Redis prefix, so test runs and deployments never mix.
 * BullMQ's scripts touch many keys of a queue at once, so on a Redis Cluster they must share a
 * slot: the prefix carries the hash tag `{bull}` there (BullMQ's own advice). Every queue is in
 * that one slot; jobs (rollup windows, deliveries, billing runs) are a trickle beside the quota
 * counters, which spread over the cluster by license. A single Redis keeps the old prefix, so an
 * upgrade finds the jobs queued before it.
 */
export function bullPrefix(redisKeyPrefix: string, cluster = false): string {
  return cluster ? `${redisKeyPrefix}{bull}` : `${redisKeyPrefix}bull`;
}

/**
 * Completed jobs are kept for 15 days: their ids are what make a window's job unique, so
 * a window cannot run twice while its job is remembered (and after that, the rollup
 * window table tells the scheduler it is done).
 */
const KEEP_COMPLETED = { age: 15 * 86_400 };
const KEEP_FAILED = { age: 30 * 86_400 };

export class JobQueues implements JobPort {
  readonly queues: Record<QueueName, Queue>;

  constructor(
    connection: Redis,
    /** bullPrefix(): workers and queue listeners of this deployment use the same. */
    readonly prefix: string,
  ) {
    this.queues = Object.fromEntries(
      QUEUES.map((name) => [name, new Queue(name, { connection, prefix })]),
    ) as Record<QueueName, Queue>;
    for (const queue of Object.values(this.queues)) queue.on('error', () => undefined); // the connection reconnects itself
  }

  /**
   * Enqueues a catalog job. With a window, the job id is `<name>@<window>` (or `unique`
   * appended for a deliberate re-run): adding an id that exists is a no-op in BullMQ.
   */
  async enqueue<N extends JobName>(
    name: N,
    payload: JobPayload<N>,
    options: EnqueueOptions = {},
  ): Promise<Job> {
    const definition = jobCatalog[name];
    const parsed = definition.payload.parse(payload) as JobPayload<N>;
    const window = (definition.windowOf as (p: JobPayload<N>) => string | null)(parsed);
    const baseId = jobIdFor(name, window);
    const jobId = baseId && options.rerunTag ? `${baseId}~${options.rerunTag}` : baseId;
    const opts: JobsOptions = {
      jobId,
      attempts: definition.attempts,
      backoff: { type: 'exponential', delay: options.backoffMs ?? definition.backoffMs },
      removeOnComplete: KEEP_COMPLETED,
      removeOnFail: KEEP_FAILED,
    };
    const job = await this.queues[definition.queue].add(name, parsed, opts);
    // A window whose job ran out of attempts keeps its id: run that job again rather than
    // leaving the window undone behind a remembered failure.
    if (options.retryFailed && jobId && (await job.isFailed())) await job.retry('failed');
    return job;
  }

  async getJob(jobId: string): Promise<Job | undefined> {
    for (const queue of Object.values(this.queues)) {
      const job = await queue.getJob(jobId);
      if (job) return job;
    }
    return undefined;
  }

  /** A job as the domain sees it (JobPort), while BullMQ remembers it. */
  async find(jobId: string): Promise<QueuedJob | undefined> {
    const job = await this.getJob(jobId);
    if (!job) return undefined;
    const state = await job.getState();
    const progress = typeof job.progress === 'object' && job.progress ? (job.progress as { done?: number; total?: number }) : {};
    return {
      id: jobId,
      name: job.name,
      state: stateOf(state),
      progress: { done: progress.done ?? 0, total: progress.total ?? 0 },
      attempts: job.attemptsMade,
      ...(job.failedReason ? { error: job.failedReason } : {}),
    };
  }

  async close(): Promise<void> {
    await Promise.all(Object.values(this.queues).map((q) => q.close()));
  }
}

function stateOf(state: string): QueuedJob['state'] {
  switch (state) {
    case 'active':
    case 'completed':
    case 'failed':
      return state;
    default:
      return 'waiting'; // waiting, delayed (backoff before a retry), prioritized, waiting-children
  }
}
