import { z } from 'zod';
import { listDeliveries } from '../../../domain/webhooks/endpoints';
import { procedure, requireTenant } from '../../trpc';
import { isoDate, isoDateOrNull, jsonValue, pageInput, pageOutput } from '../schemas';

const deliverySchema = z.object({
  id: z.string(),
  endpointId: z.string(),
  eventId: z.string(),
  eventType: z.string(),
  payload: jsonValue,
  status: z.enum(['PENDING', 'SUCCEEDED', 'FAILED']),
  attempts: z.number(),
  responseStatus: z.number().nullable(),
  attemptLog: jsonValue,
  lastError: z.string().nullable(),
  createdAt: isoDate,
  deliveredAt: isoDateOrNull,
});

/** The delivery log: every event sent to an endpoint, with each attempt's response code. */
export const webhookDeliveriesProcedure = procedure({ roles: ['owner'], scope: 'tenant' })
  .input(
    z
      .strictObject({ endpointId: z.uuid().optional(), status: z.enum(['PENDING', 'SUCCEEDED', 'FAILED']).optional(), ...pageInput })
      .default({ limit: 50 }),
  )
  .output(pageOutput(deliverySchema))
  .query(({ ctx, input }) => listDeliveries(ctx.services.db.prisma, requireTenant(ctx.tenantId), ctx.environment, input));
