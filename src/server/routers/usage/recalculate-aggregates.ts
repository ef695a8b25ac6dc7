import { z } from 'zod';
import { requestRecalculation } from '../../../domain/jobs/job-control';
import { procedure } from '../../trpc';

/** Admin only: for every license, or (with X-Tally-Tenant) one tenant's, or one license. */
export const recalculateAggregatesProcedure = procedure({ roles: [], scope: 'either', target: 'job' })
  .input(
    z.strictObject({
      licenseId: z.uuid().optional(),
      startDate: z.iso.date(),
      endDate: z.iso.date(),
    }),
  )
  .output(z.object({ jobId: z.string() }))
  .mutation(({ ctx, input }) =>
    requestRecalculation({ jobs: ctx.services.queues, prisma: ctx.services.db.prisma }, ctx.tenantId, ctx.environment, input),
  );
