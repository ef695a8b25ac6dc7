import { z } from 'zod';
import { forecastAccuracy } from '../../../domain/forecasts/forecasts';
import { usageTypeSchema } from '../../../domain/usage/event-schema';
import { procedure, requireTenant } from '../../trpc';
import { instantSchema } from '../schemas';
import { accuracyGroupSchema, forecastMethodSchema, periodTypeSchema } from './schemas';

export const forecastAccuracyInput = z
  .strictObject({
    licenseId: z.uuid().optional(),
    usageType: usageTypeSchema.optional(),
    periodType: periodTypeSchema.optional(),
    /** Periods that ended on or after this instant. */
    since: instantSchema.optional(),
  })
  .default({});

export const forecastAccuracyOutput = accuracyGroupSchema.extend({
  byPeriodType: z.array(accuracyGroupSchema.extend({ periodType: periodTypeSchema })),
  byMethod: z.array(accuracyGroupSchema.extend({ method: forecastMethodSchema })),
});

export const forecastAccuracyProcedure = procedure({ roles: ['owner', 'member', 'read'], scope: 'tenant' })
  .input(forecastAccuracyInput)
  .output(forecastAccuracyOutput)
  .query(({ ctx, input }) => forecastAccuracy(ctx.services.db.prisma, requireTenant(ctx.tenantId), ctx.environment, input));
