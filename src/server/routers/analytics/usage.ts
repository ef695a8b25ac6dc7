import { z } from 'zod';
import { usageAnalytics } from '../../../domain/analytics/usage-analytics';
import { procedure, requireTenant } from '../../trpc';
import { generationFor, readView } from '../../read-routing';
import { granularitySchema, periodOutput, rangeInput } from './schemas';

/** Present when asked for with `percentiles: true`; null when no event of the period has a duration. */
const durationPercentiles = {
  p50DurationMs: z.number().nullable().optional(),
  p95DurationMs: z.number().nullable().optional(),
  p99DurationMs: z.number().nullable().optional(),
};

export const usageAnalyticsOutput = z.object({
  period: periodOutput,
  overview: z.object({
    totalQuantity: z.string(),
    eventCount: z.number(),
    uniqueUsers: z.number(),
    errorCount: z.number(),
    errorRate: z.number(),
    avgDurationMs: z.number().nullable(),
    ...durationPercentiles,
  }),
  timeSeries: z.array(z.object({ period: z.string(), quantity: z.string(), events: z.number(), ...durationPercentiles })),
  byUsageType: z.array(z.object({ usageType: z.string(), quantity: z.string(), events: z.number(), errorCount: z.number() })),
});

export const usageProcedure = procedure({ roles: ['owner', 'member', 'read'], scope: 'tenant' })
  .input(z.strictObject({ ...rangeInput, granularity: granularitySchema, percentiles: z.boolean().optional() }))
  .output(usageAnalyticsOutput)
  .query(({ ctx, input }) => {
    const tenantId = requireTenant(ctx.tenantId);
    // The environment is part of the cached question: a test key never gets a live answer.
    const { reads } = ctx.services.db;
    return ctx.services.analyticsCache.read(tenantId, 'usage', { ...input, environment: ctx.environment }, (generation, keepUncached) =>
      readView(reads, ctx.res, (db) =>
        usageAnalytics(
          { pool: db.pool, prisma: db.prisma, finalDays: ctx.services.finalDays },
          tenantId,
          ctx.environment,
          input,
          generationFor(reads, db, tenantId, generation, keepUncached),
        ),
      ),
    );
  });
