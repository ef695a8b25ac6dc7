import { updateLicense } from '../../../domain/licenses/licenses';
import { procedure, requireTenant } from '../../trpc';
import { licenseAuthorityOf } from './authority';
import { licenseSchema, updateLicenseInput } from './schemas';

export const updateLicenseProcedure = procedure({ roles: ['owner', 'member'], scope: 'tenant', target: 'license' })
  .input(updateLicenseInput)
  .output(licenseSchema)
  .mutation(async ({ ctx, input: { id, plan, ...input } }) => {
    const tenantId = requireTenant(ctx.tenantId);
    const license = await updateLicense(ctx.services.db.prisma, tenantId, id, { ...input, planCode: plan }, licenseAuthorityOf(ctx.principal));
    ctx.services.quota.invalidate(id); // plan, time zone and anchor decide the limits and periods
    if (input.timezone !== undefined) await ctx.services.analyticsCache.invalidate([tenantId]); // the zone periods are cut in by default
    return license;
  });
