import { z } from 'zod';
import type { UsageEventInput } from '../../../domain/usage/event-schema';
import { trackEvents } from '../../../domain/usage/track';
import { procedure, requireTenant } from '../../trpc';
import { withQuotaHeaders } from './quota-headers';

export const MAX_EVENTS_PER_BATCH = 1000;

// Events are typed for clients but validated one by one in the domain, so that one bad
// event is reported in `rejected` instead of failing the whole batch.
const eventShape = z.custom<UsageEventInput>(
  (v) => typeof v === 'object' && v !== null && !Array.isArray(v),
  'each event must be a JSON object',
);

/**
 * False: `results` comes back empty; the counts and `rejected` (with each event's index) still say
 * what became of every event. For senders that only count (the SDK): a thousand result objects
 * less to build, validate, send and parse per batch. The REST route documents the same field.
 */
export const includeResultsField = z
  .boolean()
  .optional()
  .describe('false: `results` comes back empty (the counts and `rejected` still say what became of each event)');

export const trackEventsProcedure = procedure({ roles: ['owner', 'member', 'ingest'], scope: 'tenant', audit: false })
  .input(
    z.strictObject({
      events: z.array(eventShape).min(1).max(MAX_EVENTS_PER_BATCH),
      includeResults: includeResultsField,
    }),
  )
  .output(
    z.object({
      accepted: z.number(),
      duplicates: z.number(),
      rejected: z.array(z.object({ index: z.number(), code: z.string(), message: z.string() })),
      results: z.array(
        z.object({
          index: z.number(),
          eventId: z.string().nullable(),
          status: z.enum(['accepted', 'duplicate', 'rejected']),
        }),
      ),
    }),
  )
  .mutation(({ ctx, input }) =>
    withQuotaHeaders(ctx.res, () =>
      trackEvents(ctx.services.track, requireTenant(ctx.tenantId), ctx.environment, input.events, ctx.request.ip ?? undefined, {
        results: input.includeResults !== false,
      }),
    ),
  );
