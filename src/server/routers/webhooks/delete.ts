import { z } from 'zod';
import { deleteEndpoint } from '../../../domain/webhooks/endpoints';
import { procedure, requireTenant } from '../../trpc';
import { idInput } from '../schemas';

export const deleteWebhookProcedure = procedure({ roles: ['owner'], scope: 'tenant', target: 'webhook' })
  .input(idInput)
  .output(z.object({ id: z.string(), deleted: z.literal(true) }))
  .mutation(({ ctx, input }) => deleteEndpoint(ctx.services.db.prisma, requireTenant(ctx.tenantId), ctx.environment, input.id));
