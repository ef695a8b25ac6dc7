import { z } from 'zod';
import { quantitySchema, usageTypeSchema } from '../../../domain/usage/event-schema';
import { procedure, requireTenant } from '../../trpc';
import { isoDate } from '../schemas';

/** Would `quantity` more be admitted now? Reads the same counters as ingestion; records nothing. */
export const checkProcedure = procedure({ roles: ['owner', 'member', 'ingest', 'read'], scope: 'tenant' })
  .input(z.strictObject({ licenseId: z.uuid(), usageType: usageTypeSchema, quantity: quantitySchema.default('1') }))
  .output(
    z.object({
      allowed: z.boolean(),
      usageType: z.string(),
      limits: z.array(
        z.object({
          periodType: z.enum(['daily', 'weekly', 'monthly']),
          periodStart: isoDate,
          periodEnd: isoDate,
          limit: z.string(),
          cap: z.string(),
          hard: z.boolean(),
          used: z.string(),
          remaining: z.string().nullable(),
          allowed: z.boolean(),
        }),
      ),
    }),
  )
  .query(({ ctx, input }) => ctx.services.quota.check(requireTenant(ctx.tenantId), ctx.environment, input));
