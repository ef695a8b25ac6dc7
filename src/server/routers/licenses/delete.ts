import { deleteLicense } from '../../../domain/licenses/licenses';
import { procedure, requireTenant } from '../../trpc';
import { idInput } from '../schemas';
import { licenseSchema } from './schemas';

export const deleteLicenseProcedure = procedure({ roles: ['owner'], scope: 'tenant', target: 'license' })
  .input(idInput)
  .output(licenseSchema)
  .mutation(async ({ ctx, input }) => {
    return deleteLicense(ctx.services.licenses, requireTenant(ctx.tenantId), ctx.environment, input.id);
  });
