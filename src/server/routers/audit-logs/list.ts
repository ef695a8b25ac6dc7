import { z } from 'zod';
import { listAuditLogs } from '../../../domain/audit/audit-log';
import { procedure } from '../../trpc';
import { isoDate, jsonValue, pageInput, pageOutput } from '../schemas';

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

const instant = z.iso.datetime({ offset: true }).transform((s) => new Date(s));

/** A tenant's owner sees the tenant's log; an admin sees everything, or one tenant with X-Tally-Tenant. */
export const listAuditLogsProcedure = procedure({ roles: ['owner'], scope: 'either' })
  .input(
    z
      .strictObject({
        action: z.string().max(100).optional(),
        actorKeyId: z.uuid().optional(),
        targetId: z.string().max(100).optional(),
        outcome: z.enum(['success', 'denied', 'refused']).optional(),
        from: instant.optional(),
        to: instant.optional(),
        ...pageInput,
      })
      .default({ limit: 50 }),
  )
  .output(pageOutput(auditLogSchema))
  .query(({ ctx, input }) => listAuditLogs(ctx.services.db.prisma, { ...input, tenantId: ctx.tenantId }));
