import { createApiKey } from '../../../domain/api-keys/api-keys';
import { procedure, requireTenant } from '../../trpc';
import { createApiKeyInput, createdApiKeySchema } from './schemas';

export const createApiKeyProcedure = procedure({ roles: ['owner'], scope: 'tenant', target: 'api_key' })
  .input(createApiKeyInput)
  .output(createdApiKeySchema)
  .mutation(({ ctx, input }) =>
    createApiKey(ctx.services.db.prisma, {
      ...input,
      tenantId: requireTenant(ctx.tenantId),
      createdByKeyId: ctx.principal.keyId,
    }),
  );
