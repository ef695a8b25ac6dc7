import { updateLicense } from '../../../domain/licenses/licenses';
import { procedure, requireTenant } from '../../trpc';
import { licenseAuthorityOf } from './authority';
import { licenseSchema, updateLicenseInput } from './schemas';

export const updateLicenseProcedure = procedure({ roles: ['owner', 'member'], scope: 'tenant', target: 'license' })
  .input(updateLicenseInput)
  .output(licenseSchema)
  .mutation(async ({ ctx, input: { id, plan, ...input } }) => {
    const tenantId = requireTenant(ctx.tenantId);
    return updateLicense(ctx.services.licenses, tenantId, ctx.environment, id, { ...input, planCode: plan }, licenseAuthorityOf(ctx.principal));
  });
