import { z } from 'zod';
import { TRIGGERABLE_JOBS, triggerJob } from '../../../domain/jobs/job-control';
import { procedure } from '../../trpc';
import { text } from '../schemas';

export const triggerJobProcedure = procedure({ roles: [], scope: 'platform', target: 'job' })
  .input(z.strictObject({ name: z.enum(TRIGGERABLE_JOBS), window: text(40).optional() }))
  .output(z.object({ jobId: z.string(), name: z.string(), window: z.string() }))
  .mutation(({ ctx, input }) => triggerJob(ctx.services.queues, input));
