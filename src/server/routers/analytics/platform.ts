import { z } from 'zod';
import { platformOverview } from '../../../domain/analytics/platform';
import { signupCounts } from '../../../domain/signup/counts';
import { procedure } from '../../trpc';
import { readView } from '../../read-routing';

export const platformProcedure = procedure({ roles: [], scope: 'platform' })
  .input(
    z
      .strictObject({
        days: z.number().int().min(1).max(90).default(30),
        top: z.number().int().min(1).max(50).default(10),
        // Sections read from raw events, on request (see platformOverview).
        countries: z.boolean().default(false),
        percentiles: z.boolean().default(false),
      })
      .default({ days: 30, top: 10, countries: false, percentiles: false }),
  )
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
      countries: z.array(z.object({ country: z.string().nullable(), events: z.number() })).optional(),
      responseTimes: z
        .array(z.object({ date: z.string(), events: z.number(), p50DurationMs: z.number(), p95DurationMs: z.number(), p99DurationMs: z.number() }))
        .optional(),
      /** Tenants created by signup.register, and those of them with events in the last 30 days. */
      signups: z.object({ tenants: z.number(), activeLast30Days: z.number() }),
    }),
  )
  // The admin key's environment, or the one X-Tally-Environment names: test and live are never summed.
  .query(({ ctx, input }) =>
    readView(ctx.services.db.reads, ctx.res, async (db) => {
      const [overview, signups] = await Promise.all([platformOverview(db.pool, ctx.environment, input), signupCounts(db.pool)]);
      return { ...overview, signups };
    }),
  );
