import { revokeApiKey } from '../../../domain/api-keys/api-keys';
import { procedure, requireTenant } from '../../trpc';
import { idInput } from '../schemas';
import { apiKeySchema } from './schemas';

export const revokeApiKeyProcedure = procedure({ roles: ['owner'], scope: 'tenant', target: 'api_key' })
  .input(idInput)
  .output(apiKeySchema)
  .mutation(async ({ ctx, input }) => {
    return revokeApiKey(ctx.services.apiKeys, requireTenant(ctx.tenantId), ctx.environment, input.id);
  });
