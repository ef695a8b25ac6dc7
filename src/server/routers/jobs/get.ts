import { z } from 'zod';
import { getJobRun } from '../../../domain/jobs/job-runs';
import { procedure } from '../../trpc';
import { text } from '../schemas';
import { jobRunOutput } from './schemas';

/** By JobRun id or by job id (e.g. `usage.aggregate.hourly@2026-11-23T10Z`). */
export const getJobProcedure = procedure({ roles: [], scope: 'platform' })
  .input(z.strictObject({ id: text(200).min(1) }))
  .output(jobRunOutput)
  .query(({ ctx, input }) => getJobRun(ctx.services.db.prisma, input.id));
