import { z } from 'zod';
import { listAuditLogs } from '../../../domain/audit/audit-log';
import { procedure } from '../../trpc';
import { instantSchema, isoDate, jsonValue, pageInput, pageOutput, text } from '../schemas';

const auditLogSchema = z.object({
  id: z.string(),
  tenantId: z.string().nullable(),
  actorKeyId: z.string().nullable(),
  actorPrefix: z.string().nullable(),
  action: z.string(),
  targetType: z.string().nullable(),
  targetId: z.string().nullable(),
  outcome: z.string(),
  ip: z.string().nullable(),
  userAgent: z.string().nullable(),
  metadata: jsonValue,
  createdAt: isoDate,
});

/** A tenant's owner sees the tenant's log; an admin sees everything, or one tenant with X-Tally-Tenant. */
export const listAuditLogsProcedure = procedure({ roles: ['owner'], scope: 'either' })
  .input(
    z
      .strictObject({
        action: text(100).optional(),
        actorKeyId: z.uuid().optional(),
        targetId: text(100).optional(),
        outcome: z.enum(['success', 'denied', 'refused']).optional(),
        from: instantSchema.optional(),
        to: instantSchema.optional(),
        ...pageInput,
      })
      .default({ limit: 50 }),
  )
  .output(pageOutput(auditLogSchema))
  .query(({ ctx, input }) => listAuditLogs(ctx.services.db.prisma, { ...input, tenantId: ctx.tenantId }));
