import { deleteLicense } from '../../../domain/licenses/licenses';
import { procedure, requireTenant } from '../../trpc';
import { idInput } from '../schemas';
import { licenseSchema } from './schemas';

export const deleteLicenseProcedure = procedure({ roles: ['owner'], scope: 'tenant', target: 'license' })
  .input(idInput)
  .output(licenseSchema)
  .mutation(({ ctx, input }) => deleteLicense(ctx.services.db.prisma, requireTenant(ctx.tenantId), input.id));
