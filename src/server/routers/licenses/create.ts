import { createLicense } from '../../../domain/licenses/licenses';
import { procedure, requireTenant } from '../../trpc';
import { licenseAuthorityOf } from './authority';
import { createLicenseInput, licenseSchema } from './schemas';

export const createLicenseProcedure = procedure({ roles: ['owner', 'member'], scope: 'tenant', target: 'license' })
  .input(createLicenseInput)
  .output(licenseSchema)
  .mutation(({ ctx, input: { plan, ...input } }) =>
    createLicense(ctx.services.db.prisma, requireTenant(ctx.tenantId), ctx.environment, { ...input, planCode: plan }, licenseAuthorityOf(ctx.principal)),
  );
