import { eraseUser } from '../../../domain/privacy/erasure';
import { procedure, requireTenant } from '../../trpc';
import { erasureReportSchema, eraseUserInput } from './schemas';

/** Owner work (an admin names the tenant with X-Tally-Tenant); audited with the erasure's id, never the user id. */
export const eraseUserProcedure = procedure({ roles: ['owner'], scope: 'tenant', target: 'erasure' })
  .input(eraseUserInput)
  .output(erasureReportSchema)
  .mutation(async ({ ctx, input }) => {
    const tenantId = requireTenant(ctx.tenantId);
    const report = await eraseUser(
      ctx.services.db.pool,
      { tenantId, environment: ctx.environment, userId: input.userId, licenseId: input.licenseId },
      undefined,
      ctx.services.db.sessionPool,
    );
    // Cached breakdowns may hold a route or platform that named the user.
    await ctx.services.analyticsCache.invalidate([tenantId]);
    return report;
  });
