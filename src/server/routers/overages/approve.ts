import { decideOverage } from '../../../domain/overages/overages';
import { procedure, requireTenant } from '../../trpc';
import { idInput } from '../schemas';
import { overageSchema } from './schemas';

export const approveOverageProcedure = procedure({ roles: ['owner'], scope: 'tenant', target: 'overage' })
  .input(idInput)
  .output(overageSchema)
  .mutation(({ ctx, input }) =>
    decideOverage(ctx.services.db.prisma, requireTenant(ctx.tenantId), ctx.environment, input.id, 'APPROVED', ctx.principal.keyId),
  );
