import { z } from 'zod';
import { listAlerts } from '../../../domain/alerts/alerts';
import { usageTypeSchema } from '../../../domain/usage/event-schema';
import { procedure, requireTenant } from '../../trpc';
import { isoDate, pageInput, pageOutput } from '../schemas';

const alertSchema = z.object({
  id: z.string(),
  licenseId: z.string(),
  thresholdId: z.string().nullable(),
  usageType: z.string(),
  periodType: z.enum(['daily', 'weekly', 'monthly']),
  periodStart: isoDate,
  periodEnd: isoDate,
  level: z.number(),
  type: z.enum(['usage.threshold.warning', 'usage.threshold.exceeded']),
  limit: z.string(),
  used: z.string(),
  detectedBy: z.string(),
  createdAt: isoDate,
});

export const listAlertsProcedure = procedure({ roles: ['owner', 'member', 'read'], scope: 'tenant' })
  .input(
    z
      .strictObject({ licenseId: z.uuid().optional(), usageType: usageTypeSchema.optional(), minLevel: z.number().int().min(1).max(100).optional(), ...pageInput })
      .default({ limit: 50 }),
  )
  .output(pageOutput(alertSchema))
  .query(({ ctx, input }) => listAlerts(ctx.services.db.prisma, requireTenant(ctx.tenantId), ctx.environment, input));
