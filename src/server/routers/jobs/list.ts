import { z } from 'zod';
import { listJobRuns } from '../../../domain/jobs/job-runs';
import { procedure } from '../../trpc';
import { pageInput, pageOutput, text } from '../schemas';
import { jobRunOutput } from './schemas';

export const listJobsProcedure = procedure({ roles: [], scope: 'platform' })
  .input(
    z.strictObject({
      name: text(100).optional(),
      status: z.enum(['active', 'completed', 'failed']).optional(),
      ...pageInput,
    }),
  )
  .output(pageOutput(jobRunOutput))
  .query(({ ctx, input }) => listJobRuns(ctx.services.db.prisma, input));
