import { QueueEvents, type Worker } from 'bullmq';
import { createRedis, redisTargetOf } from '../../src/lib/redis';
import { closeWorkers, startWorkers } from '../../jobs/worker';
import { QUEUES, type QueueName } from '../../src/domain/jobs/catalog';
import { jobDepsOf } from '../../src/app';
import type { TestApp } from './harness';

/** Real BullMQ workers for every queue of the catalog, on the app's own Redis prefix. */
export async function startTestWorkers(app: TestApp) {
  const s = app.services;
  const prefix = s.queues.prefix;
  const workers: Worker[] = startWorkers(
    jobDepsOf(s),
    { connection: s.bullConnection, prefix, concurrency: 4, lockDuration: 30_000 },
  );
  const connection = createRedis(redisTargetOf(s.env), { maxRetriesPerRequest: null });
  const events = Object.fromEntries(QUEUES.map((q) => [q, new QueueEvents(q, { connection, prefix })])) as Record<QueueName, QueueEvents>;
  await Promise.all(Object.values(events).map((e) => e.waitUntilReady()));
  return {
    events,
    /** Waits for a job to finish (for good: after its retries), by id. */
    async finished(jobId: string): Promise<unknown> {
      const job = await s.queues.getJob(jobId);
      if (!job) throw new Error(`no job ${jobId}`);
      const queue = job.queueName as QueueName;
      return job.waitUntilFinished(events[queue]);
    },
    async close() {
      await closeWorkers(workers);
      await Promise.all(Object.values(events).map((e) => e.close()));
      connection.disconnect();
    },
  };
}
