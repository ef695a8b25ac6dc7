import { z } from 'zod';
import { createEndpoint } from '../../../domain/webhooks/endpoints';
import { webhookPolicy } from '../../../domain/webhooks/url-policy';
import { procedure, requireTenant } from '../../trpc';
import { text } from '../schemas';
import { endpointWithSecretSchema, webhookEventsSchema, webhookUrlSchema } from './schemas';

/** The signing secret is returned here once (and by rotateSecret); lists never show it. */
export const createWebhookProcedure = procedure({ roles: ['owner'], scope: 'tenant', target: 'webhook' })
  .input(z.strictObject({ url: webhookUrlSchema, events: webhookEventsSchema.optional(), description: text(500).optional() }))
  .output(endpointWithSecretSchema)
  .mutation(({ ctx, input }) => createEndpoint(ctx.services.db.prisma, requireTenant(ctx.tenantId), ctx.environment, input, webhookPolicy(ctx.services.env)));
