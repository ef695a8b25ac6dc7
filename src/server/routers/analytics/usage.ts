import { createHash } from 'node:crypto';
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

/**
 * The answer's schema, fingerprinted, is part of every cached question: a cached answer is sent
 * as Redis holds it (no parser to drop fields it no longer has), so after a deploy that changes
 * the schema no process serves an answer an older one stored.
 */
const ANSWER_SHAPE = createHash('sha256').update(JSON.stringify(z.toJSONSchema(usageAnalyticsOutput))).digest('base64url').slice(0, 16);

/**
 * No run-time output parser (meta.answer documents the answer instead): the answer is built
 * field by field by usageAnalytics, the resolver is typed with the schema's output, and the
 * analytics tests parse real answers with the schema. Parsing would copy every point of a
 * year of days once more on every request, and the answer's JSON, made once for the cache,
 * is then sent as it is.
 */
export const usageProcedure = procedure({ roles: ['owner', 'member', 'read'], scope: 'tenant', answer: usageAnalyticsOutput })
  .input(z.strictObject({ ...rangeInput, granularity: granularitySchema, percentiles: z.boolean().optional() }))
  .query(({ ctx, input }): Promise<z.output<typeof usageAnalyticsOutput>> => {
    const tenantId = requireTenant(ctx.tenantId);
    // The environment is part of the cached question: a test key never gets a live answer.
    const { reads } = ctx.services.db;
    return ctx.services.analyticsCache.read(tenantId, 'usage', { ...input, environment: ctx.environment, shape: ANSWER_SHAPE }, (generation, keepUncached) =>
      readView(reads, ctx.res, (db) =>
        usageAnalytics(
          { pool: db.pool, prisma: db.prisma, finalDays: ctx.services.finalDays, coverage: ctx.services.coverage[db.source] },
          tenantId,
          ctx.environment,
          input,
          generationFor(reads, db, tenantId, generation, keepUncached),
        ),
      ),
    );
  });
