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
      // a key makes keys of its own environment (an admin may name either)
      environment: environmentOfNew(ctx.environment, input.environment, ctx.principal.role === 'admin', 'keys'),
      tenantId: requireTenant(ctx.tenantId),
      createdByKeyId: ctx.principal.keyId,
    }),
  );
