import { z } from 'zod';
import { rotateEndpointSecret } from '../../../domain/webhooks/endpoints';
import { procedure, requireTenant } from '../../trpc';
import { endpointWithSecretSchema } from './schemas';

/** New secret returned once; the old one keeps signing beside it for overlapHours (0 = stop now). */
export const rotateWebhookSecretProcedure = procedure({ roles: ['owner'], scope: 'tenant', target: 'webhook' })
  .input(z.strictObject({ id: z.uuid(), overlapHours: z.number().int().min(0).max(720).optional() }))
  .output(endpointWithSecretSchema)
  .mutation(({ ctx, input }) =>
    rotateEndpointSecret(
      ctx.services.db.prisma,
      requireTenant(ctx.tenantId),
      ctx.environment,
      input.id,
      input.overlapHours ?? ctx.services.env.WEBHOOK_SECRET_OVERLAP_HOURS,
    ),
  );
