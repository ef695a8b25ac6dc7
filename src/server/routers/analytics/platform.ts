import { z } from 'zod';
import { platformOverview } from '../../../domain/analytics/platform';
import { signupCounts } from '../../../domain/signup/counts';
import { procedure } from '../../trpc';

export const platformProcedure = procedure({ roles: [], scope: 'platform' })
  .input(z.strictObject({ days: z.number().int().min(1).max(90).default(30), top: z.number().int().min(1).max(50).default(10) }).default({ days: 30, top: 10 }))
  .output(
    z.object({
      days: z.number(),
      tenants: z.number(),
      licenses: z.object({
        total: z.number(),
        byStatus: z.record(z.string(), z.number()),
        activeLast30Days: z.number(),
      }),
      events: z.number(),
      errorRate: z.number(),
      eventsPerDay: z.array(z.object({ date: z.string(), events: z.number() })),
      topTenants: z.array(z.object({ tenantId: z.string(), name: z.string(), events: z.number() })),
      topOrganizations: z.array(z.object({ organization: z.string(), keys: z.number(), requests: z.number() })),
      sdkVersions: z.array(z.object({ sdkVersion: z.string().nullable(), keys: z.number() })),
      /** Tenants created by signup.register, and those of them with events in the last 30 days. */
      signups: z.object({ tenants: z.number(), activeLast30Days: z.number() }),
    }),
  )
  .query(async ({ ctx, input }) => {
    const [overview, signups] = await Promise.all([platformOverview(ctx.services.db.pool, input), signupCounts(ctx.services.db.pool)]);
    return { ...overview, signups };
  });
