import { deleteLicense } from '../../../domain/licenses/licenses';
import { procedure, requireTenant } from '../../trpc';
import { idInput } from '../schemas';
import { licenseSchema } from './schemas';

export const deleteLicenseProcedure = procedure({ roles: ['owner'], scope: 'tenant', target: 'license' })
  .input(idInput)
  .output(licenseSchema)
  .mutation(async ({ ctx, input }) => {
    const tenantId = requireTenant(ctx.tenantId);
    const license = await deleteLicense(ctx.services.db.prisma, tenantId, input.id);
    await ctx.services.analyticsCache.invalidate([tenantId]); // its answers now say "not found"
    return license;
  });
