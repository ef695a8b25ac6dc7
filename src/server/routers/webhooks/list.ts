import { z } from 'zod';
import { listEndpoints } from '../../../domain/webhooks/endpoints';
import { procedure, requireTenant } from '../../trpc';
import { endpointSchema } from './schemas';

export const listWebhooksProcedure = procedure({ roles: ['owner'], scope: 'tenant' })
  .input(z.strictObject({}).default({}))
  .output(z.object({ items: z.array(endpointSchema) }))
  .query(({ ctx }) => listEndpoints(ctx.services.db.prisma, requireTenant(ctx.tenantId), ctx.environment));
