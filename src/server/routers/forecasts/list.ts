import { z } from 'zod';
import { listForecasts } from '../../../domain/forecasts/forecasts';
import { usageTypeSchema } from '../../../domain/usage/event-schema';
import { procedure, requireTenant } from '../../trpc';
import { pageInput, pageOutput } from '../schemas';
import { forecastMethodSchema, forecastSchema, periodTypeSchema } from './schemas';

export const listForecastsProcedure = procedure({ roles: ['owner', 'member', 'read'], scope: 'tenant' })
  .input(
    z
      .strictObject({
        licenseId: z.uuid().optional(),
        usageType: usageTypeSchema.optional(),
        periodType: periodTypeSchema.optional(),
        method: forecastMethodSchema.optional(),
        breaching: z.boolean().optional(),
        current: z.boolean().optional(),
        ...pageInput,
      })
      .default({ limit: 50 }),
  )
  .output(pageOutput(forecastSchema))
  .query(({ ctx, input }) => listForecasts(ctx.services.db.prisma, requireTenant(ctx.tenantId), ctx.environment, input));
