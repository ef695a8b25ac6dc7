import { z } from 'zod';
import { whoAmI } from '../../../domain/api-keys/who-am-i';
import { procedure } from '../../trpc';
import { isoDate, isoDateOrNull } from '../schemas';

const environment = z.enum(['live', 'test']);

/** Every key may ask who it is; it sees its own key only (an admin also the tenant it names). */
export const meProcedure = procedure({ roles: ['owner', 'member', 'ingest', 'read'], scope: 'either' })
  .input(z.strictObject({}).optional())
  .output(
    z.object({
      id: z.string(),
      prefix: z.string(),
      name: z.string(),
      role: z.enum(['admin', 'owner', 'member', 'ingest', 'read']),
      environment,
      userEmail: z.string().nullable(),
      organization: z.string().nullable(),
      createdAt: isoDate,
      lastUsedAt: isoDateOrNull,
      tenant: z.object({ id: z.string(), name: z.string(), slug: z.string(), timezone: z.string() }).nullable(),
      usage: z
        .object({
          period: z.object({ month: z.string(), timezone: z.string(), start: z.string(), end: z.string() }),
          environment,
          byUsageType: z.array(z.object({ usageType: z.string(), quantity: z.string(), events: z.number() })),
        })
        .nullable(),
    }),
  )
  .query(({ ctx }) =>
    whoAmI(
      { prisma: ctx.services.db.prisma, pool: ctx.services.db.pool, pendingLastUse: (id) => ctx.services.authenticator.pendingLastUse(id) },
      ctx.principal.keyId,
      ctx.tenantId,
    ),
  );
