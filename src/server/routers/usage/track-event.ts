import { usageEventInputSchema } from '../../../domain/usage/event-schema';
import { trackEvent } from '../../../domain/usage/track';
import { procedure, requireTenant } from '../../trpc';
import { withQuotaHeaders } from './quota-headers';

// No .output() schema: the answer is { eventId, duplicate } as withQuotaHeaders leaves it (typed
// for clients by the resolver), and every middleware level costs the hottest call of the API two
// copies of tRPC's options object.
export const trackEventProcedure = procedure({ roles: ['owner', 'member', 'ingest'], scope: 'tenant', audit: false })
  .input(usageEventInputSchema)
  .mutation(({ ctx, input }) =>
    withQuotaHeaders(ctx.res, () => trackEvent(ctx.services.track, requireTenant(ctx.tenantId), ctx.environment, input, ctx.request.ip ?? undefined)),
  );
