import { createTenant } from '../../../domain/tenants/tenants';
import { procedure } from '../../trpc';
import { createTenantInput, createTenantOutput } from './schemas';

export const createTenantProcedure = procedure({ roles: [], scope: 'platform', target: 'tenant' })
  .input(createTenantInput)
  .output(createTenantOutput)
  .mutation(({ ctx, input }) =>
    createTenant(ctx.services.db.prisma, {
      name: input.name,
      slug: input.slug,
      timezone: input.timezone,
      owner: { email: input.ownerEmail, organization: input.organization, environment: input.environment },
      createdByKeyId: ctx.principal.keyId,
    }),
  );
