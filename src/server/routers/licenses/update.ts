import { updateLicense } from '../../../domain/licenses/licenses';
import { procedure, requireTenant } from '../../trpc';
import { licenseSchema, updateLicenseInput } from './schemas';

export const updateLicenseProcedure = procedure({ roles: ['owner', 'member'], scope: 'tenant', target: 'license' })
  .input(updateLicenseInput)
  .output(licenseSchema)
  .mutation(({ ctx, input: { id, plan, ...input } }) =>
    updateLicense(ctx.services.db.prisma, requireTenant(ctx.tenantId), id, { ...input, planCode: plan }),
  );
