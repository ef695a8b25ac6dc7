import { z } from 'zod';
import { getForecast } from '../../../domain/forecasts/forecasts';
import { usageTypeSchema } from '../../../domain/usage/event-schema';
import { procedure, requireTenant } from '../../trpc';
import { forecastSchema, periodTypeSchema } from './schemas';

export const getForecastProcedure = procedure({ roles: ['owner', 'member', 'read'], scope: 'tenant' })
  .input(z.strictObject({ licenseId: z.uuid(), usageType: usageTypeSchema, periodType: periodTypeSchema.optional() }))
  .output(forecastSchema)
  .query(({ ctx, input }) => getForecast(ctx.services.db.prisma, requireTenant(ctx.tenantId), ctx.environment, input));
