import { createApiKey } from '../../../domain/api-keys/api-keys';
import { procedure, requireTenant } from '../../trpc';
import { environmentOfNew } from '../../../domain/environments/environment';
import { createApiKeyInput, createdApiKeySchema } from './schemas';

export const createApiKeyProcedure = procedure({ roles: ['owner'], scope: 'tenant', target: 'api_key' })
  .input(createApiKeyInput)
  .output(createdApiKeySchema)
  .mutation(({ ctx, input }) =>
    createApiKey(ctx.services.db.prisma, {
      ...input,
      // A key makes keys of its own environment. A live owner may make test keys too (to onboard
      // developers), an admin either; a test key never makes a live one: that would lead from test into live.
      environment: environmentOfNew(ctx.environment, input.environment, ctx.principal.role === 'admin' || ctx.environment === 'live', 'keys'),
      tenantId: requireTenant(ctx.tenantId),
      createdByKeyId: ctx.principal.keyId,
    }),
  );
