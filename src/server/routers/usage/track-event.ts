import { usageEventInputSchema } from '../../../domain/usage/event-schema';
import { trackEvent } from '../../../domain/usage/track';
import { procedure, requireTenant } from '../../trpc';
import { trackDeps } from './deps';
import { withQuotaHeaders } from './quota-headers';

// No .output() schema: the answer is built here ({ eventId, duplicate }, typed for clients by the
// resolver), and every middleware level costs the hottest call of the API two copies of tRPC's
// options object.
export const trackEventProcedure = procedure({ roles: ['owner', 'member', 'ingest'], scope: 'tenant', audit: false })
  .input(usageEventInputSchema)
  .mutation(async ({ ctx, input }): Promise<{ eventId: string; duplicate: boolean }> => {
    const { eventId, duplicate } = await withQuotaHeaders(ctx.res, () =>
      trackEvent(trackDeps(ctx.services), requireTenant(ctx.tenantId), input, ctx.request.ip ?? undefined),
    );
    return { eventId, duplicate };
  });
