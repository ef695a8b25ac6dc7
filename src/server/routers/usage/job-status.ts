import { z } from 'zod';
import { jobStatus } from '../../../domain/jobs/job-control';
import { procedure } from '../../trpc';
import { text } from '../schemas';

export const jobStatusOutput = z.object({
  jobId: z.string(),
  name: z.string(),
  status: z.enum(['waiting', 'active', 'completed', 'failed']),
  progress: z.object({ done: z.number(), total: z.number() }),
  attempts: z.number(),
  error: z.string().optional(),
});

export const jobStatusProcedure = procedure({ roles: [], scope: 'either' })
  .input(z.strictObject({ jobId: text(200).min(1) }))
  .output(jobStatusOutput)
  .query(({ ctx, input }) => jobStatus({ jobs: ctx.services.queues, prisma: ctx.services.db.prisma }, input.jobId));
