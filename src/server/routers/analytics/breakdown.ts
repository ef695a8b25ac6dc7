import { z } from 'zod';
import { BREAKDOWN_DIMENSIONS, usageBreakdown } from '../../../domain/analytics/breakdown';
import { procedure, requireTenant } from '../../trpc';
import { generationFor, readView } from '../../read-routing';
import { periodOutput, rangeInput } from './schemas';

export const MAX_BREAKDOWN_LIMIT = 100;

const share = z.object({ quantity: z.string(), events: z.number(), share: z.number() });

export const breakdownProcedure = procedure({ roles: ['owner', 'member', 'read'], scope: 'tenant' })
  .input(z.strictObject({ ...rangeInput, by: z.enum(BREAKDOWN_DIMENSIONS), limit: z.number().int().min(1).max(MAX_BREAKDOWN_LIMIT).default(10) }))
  .output(
    z.object({
      period: periodOutput,
      by: z.enum(BREAKDOWN_DIMENSIONS),
      total: z.object({ quantity: z.string(), events: z.number() }),
      items: z.array(share.extend({ key: z.string().nullable() })),
      other: share.extend({ keys: z.number() }),
    }),
  )
  .query(({ ctx, input }) => {
    const tenantId = requireTenant(ctx.tenantId);
    const { reads } = ctx.services.db;
    return ctx.services.analyticsCache.read(tenantId, 'breakdown', { ...input, environment: ctx.environment }, (generation, keepUncached) =>
      readView(reads, ctx.res, (db) => {
        generationFor(reads, db, tenantId, generation, keepUncached);
        return usageBreakdown({ pool: db.pool, prisma: db.prisma }, tenantId, ctx.environment, input);
      }),
    );
  });
