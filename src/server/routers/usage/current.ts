import { z } from 'zod';
import { currentUsage } from '../../../domain/usage-reader/current-usage';
import { procedure, requireTenant } from '../../trpc';
import { usageTypeSchema } from '../../../domain/usage/event-schema';

const currentUsageRow = z.object({
  usageType: z.string(),
  period: z.enum(['daily', 'weekly', 'monthly']),
  periodStart: z.string(),
  periodEnd: z.string(),
  used: z.string(),
  limit: z.string().nullable(),
  remaining: z.string().nullable(),
  resetAt: z.string(),
});

export const currentProcedure = procedure({ roles: ['owner', 'member', 'read'], scope: 'tenant' })
  .input(z.strictObject({ licenseId: z.uuid(), usageType: usageTypeSchema.optional() }))
  .output(z.object({ usage: z.array(currentUsageRow) }))
  .query(({ ctx, input }) =>
    currentUsage({ pool: ctx.services.db.pool, prisma: ctx.services.db.prisma }, requireTenant(ctx.tenantId), ctx.environment, input),
  );
