import { z } from 'zod';
import { updateEndpoint } from '../../../domain/webhooks/endpoints';
import { webhookPolicy } from '../../../domain/webhooks/url-policy';
import { procedure, requireTenant } from '../../trpc';
import { text } from '../schemas';
import { endpointSchema, webhookEventsSchema, webhookUrlSchema } from './schemas';

export const updateWebhookProcedure = procedure({ roles: ['owner'], scope: 'tenant', target: 'webhook' })
  .input(
    z.strictObject({
      id: z.uuid(),
      url: webhookUrlSchema.optional(),
      events: webhookEventsSchema.optional(),
      description: text(500).nullable().optional(),
      enabled: z.boolean().optional(),
    }),
  )
  .output(endpointSchema)
  .mutation(({ ctx, input: { id, ...fields } }) =>
    updateEndpoint(ctx.services.db.prisma, requireTenant(ctx.tenantId), ctx.environment, id, fields, webhookPolicy(ctx.services.env)),
  );
