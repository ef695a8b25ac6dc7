import { getTenant } from '../../../domain/tenants/tenants';
import { procedure } from '../../trpc';
import { idInput } from '../schemas';
import { tenantSchema } from './schemas';

export const getTenantProcedure = procedure({ roles: [], scope: 'platform' })
  .input(idInput)
  .output(tenantSchema)
  .query(({ ctx, input }) => getTenant(ctx.services.db.prisma, input.id));
