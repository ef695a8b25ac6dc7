import { z } from 'zod';
import { UNSTORABLE_MESSAGE, storableChars } from '../../../lib/storable-text';
import { MAX_VOID_IDS, MAX_VOID_REASON, voidEvents } from '../../../domain/usage/void-events';
import { procedure, requireTenant } from '../../trpc';

const storable = (max: number) => z.string().max(max).refine(storableChars, UNSTORABLE_MESSAGE);

export const voidEventsInput = z
  .strictObject({
    eventIds: z.array(z.uuid()).max(MAX_VOID_IDS).optional(),
    // Same bounds as an event's idempotencyKey.
    idempotencyKeys: z.array(storable(255).min(1)).max(MAX_VOID_IDS).optional(),
    reason: storable(MAX_VOID_REASON).trim().min(1, 'must say why the events are voided'),
  })
  .superRefine((input, ctx) => {
    const count = (input.eventIds?.length ?? 0) + (input.idempotencyKeys?.length ?? 0);
    if (count === 0) ctx.addIssue({ code: 'custom', path: ['eventIds'], message: 'name at least one event (eventIds or idempotencyKeys)' });
    if (count > MAX_VOID_IDS) {
      ctx.addIssue({ code: 'custom', path: ['eventIds'], message: `at most ${MAX_VOID_IDS} ids and keys per call in total (got ${count})` });
    }
  });

const status = z.enum(['voided', 'already_void', 'not_found']);

/**
 * Owner (or an admin naming the tenant): marks events void. Audited by the domain operation
 * itself, in the void's transaction, with the reason and the ids (the generic audit row
 * would carry neither).
 */
export const voidEventsProcedure = procedure({ roles: ['owner'], scope: 'tenant', target: 'usage_event', audit: false })
  .input(voidEventsInput)
  .output(
    z.object({
      voided: z.number().int(),
      alreadyVoid: z.number().int(),
      notFound: z.number().int(),
      results: z.array(z.object({ eventId: z.string().nullable(), idempotencyKey: z.string().optional(), status })),
      windows: z.array(z.object({ licenseId: z.string(), usageType: z.string(), hour: z.string() })),
      recomputeJobId: z.string().nullable(),
    }),
  )
  .mutation(async ({ ctx, input }) => {
    const tenantId = requireTenant(ctx.tenantId);
    const { services } = ctx;
    return voidEvents(
      {
        pool: services.db.pool,
        prisma: services.db.prisma,
        quota: services.quota,
        analytics: services.analyticsCache,
        jobs: services.queues,
        reactions: services.reactions,
        logger: ctx.log,
      },
      {
        tenantId,
        environment: ctx.environment,
        keyId: ctx.principal.keyId,
        keyPrefix: ctx.principal.prefix,
        ip: ctx.request.ip,
        userAgent: ctx.request.userAgent,
      },
      input,
    );
  });
