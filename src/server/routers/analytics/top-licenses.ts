import { z } from 'zod';
import { topLicenses } from '../../../domain/analytics/top-licenses';
import { procedure, requireTenant } from '../../trpc';
import { generationFor, readView } from '../../read-routing';
import { periodOutput, rangeInput } from './schemas';

export const topLicensesProcedure = procedure({ roles: ['owner', 'member', 'read'], scope: 'tenant' })
  .input(
    z.strictObject({
      usageType: rangeInput.usageType,
      startDate: rangeInput.startDate,
      endDate: rangeInput.endDate,
      timezone: rangeInput.timezone,
      limit: z.number().int().min(1).max(100).default(10),
    }),
  )
  .output(
    z.object({
      period: periodOutput,
      items: z.array(
        z.object({
          licenseId: z.string(),
          name: z.string().nullable(),
          externalId: z.string().nullable(),
          status: z.string().nullable(),
          deleted: z.boolean(),
          quantity: z.string(),
          events: z.number(),
        }),
      ),
    }),
  )
  .query(({ ctx, input }) => {
    const tenantId = requireTenant(ctx.tenantId);
    const { reads } = ctx.services.db;
    return ctx.services.analyticsCache.read(tenantId, 'topLicenses', { ...input, environment: ctx.environment }, (generation, keepUncached) =>
      readView(reads, ctx.res, (db) => {
        generationFor(reads, db, tenantId, generation, keepUncached);
        return topLicenses({ pool: db.pool, prisma: db.prisma }, tenantId, ctx.environment, input);
      }),
    );
  });
