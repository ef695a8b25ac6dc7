import { z } from 'zod';
import { listApiKeys } from '../../../domain/api-keys/api-keys';
import { procedure, requireTenant } from '../../trpc';
import { apiKeySchema } from './schemas';

export const listApiKeysProcedure = procedure({ roles: ['owner'], scope: 'tenant' })
  .input(z.strictObject({ includeRevoked: z.boolean().default(false) }).default({ includeRevoked: false }))
  .output(z.object({ items: z.array(apiKeySchema) }))
  .query(async ({ ctx, input }) => ({
    items: await listApiKeys(ctx.services.db.prisma, requireTenant(ctx.tenantId), ctx.environment, input.includeRevoked),
  }));
