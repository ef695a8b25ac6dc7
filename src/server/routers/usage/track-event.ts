import { z } from 'zod';
import { usageEventInputSchema } from '../../../domain/usage/event-schema';
import { trackEvent } from '../../../domain/usage/track';
import { procedure, requireTenant } from '../../trpc';
import { trackDeps } from './deps';
import { withQuotaHeaders } from './quota-headers';

export const trackEventProcedure = procedure({ roles: ['owner', 'member', 'ingest'], scope: 'tenant', audit: false })
  .input(usageEventInputSchema)
  .output(z.object({ eventId: z.string(), duplicate: z.boolean() }))
  .mutation(({ ctx, input }) =>
    withQuotaHeaders(ctx.res, () => trackEvent(trackDeps(ctx.services), requireTenant(ctx.tenantId), input, ctx.request.ip ?? undefined)),
  );
