import { z } from 'zod';
import { EMAIL_EXPORT_ROLES, EXPORT_KINDS, exportQuerySchema, exportUrl } from '../../../domain/analytics/export';
import { AppError } from '../../../lib/errors';
import { resolveScope } from '../../../domain/analytics/usage-analytics';
import { rangeOf } from '../../../domain/analytics/buckets';
import { procedure, requireTenant } from '../../trpc';
import type { AccessRule } from '../../access';

/** Who may export: this procedure and the export routes it points to (src/server/export-routes.ts). */
export const EXPORT_ACCESS = { roles: ['owner', 'member', 'read'], scope: 'tenant' } as const satisfies AccessRule;

/** The export URL for a range, checked as the export route checks it (so a bad range is a 400 here, not later). */
export const exportProcedure = procedure(EXPORT_ACCESS)
  .input(exportQuerySchema.extend({ kind: z.enum(EXPORT_KINDS).default('events') }))
  .output(z.object({ url: z.string(), method: z.literal('GET'), format: z.enum(['csv', 'json']) }))
  .query(async ({ ctx, input }) => {
    const { kind, ...query } = input;
    if (query.includeUserEmail === true && !EMAIL_EXPORT_ROLES.includes(ctx.principal.role)) {
      throw new AppError('FORBIDDEN', `includeUserEmail: role "${ctx.principal.role}" may not export users' emails (owner only)`);
    }
    const { timezone } = await resolveScope({ pool: ctx.services.db.pool, prisma: ctx.services.db.prisma }, requireTenant(ctx.tenantId), ctx.environment, query);
    rangeOf(query.startDate, query.endDate, 'daily', timezone);
    return { url: exportUrl(kind, query), method: 'GET' as const, format: query.format };
  });
