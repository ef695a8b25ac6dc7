import { getLicense } from '../../../domain/licenses/licenses';
import { procedure, requireTenant } from '../../trpc';
import { idInput } from '../schemas';
import { licenseSchema } from './schemas';

export const getLicenseProcedure = procedure({ roles: ['owner', 'member', 'read'], scope: 'tenant' })
  .input(idInput)
  .output(licenseSchema)
  .query(({ ctx, input }) => getLicense(ctx.services.db.prisma, requireTenant(ctx.tenantId), ctx.environment, input.id));
