import { revokeApiKey } from '../../../domain/api-keys/api-keys';
import { procedure, requireTenant } from '../../trpc';
import { idInput } from '../schemas';
import { apiKeySchema } from './schemas';

export const revokeApiKeyProcedure = procedure({ roles: ['owner'], scope: 'tenant', target: 'api_key' })
  .input(idInput)
  .output(apiKeySchema)
  .mutation(async ({ ctx, input }) => {
    const key = await revokeApiKey(ctx.services.db.prisma, requireTenant(ctx.tenantId), input.id);
    // A revoked key must fail at once, in this process and in every other one.
    await ctx.services.authenticator.revoked(key.id);
    return key;
  });
