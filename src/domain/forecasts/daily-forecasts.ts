import { TZDate } from '@date-fns/tz';
import type pg from 'pg';
import { Prisma, type PrismaClient } from '../../generated/prisma/client';
import { bucketsOf, localDateOf, localDayAround, localMidnight } from '../analytics/buckets';
import { usageSeries } from '../usage-reader/series';
import { periodContaining } from '../periods';
import { type LicenseLimits, PERIOD_TYPES, limitsFor, loadLicenseLimits } from '../quotas/limits';
import { activeLimitedLicenses } from '../quotas/threshold-check';
import { licenseUsage } from '../usage-reader/license-usage';
import { fitDailyModel } from './models';
import { forecastPeriod } from './period-forecast';

/** How far back a model looks: eight weeks of complete local days. */
export const HISTORY_DAYS = 56;

export interface ForecastDeps {
  pool: pg.Pool;
  prisma: PrismaClient;
}

const ZERO = new Prisma.Decimal(0);
const MIDDLE = `(f.period_start + (f.period_end - f.period_start) / 2)`;
/** The new forecast's cut-off is at least as close to the middle of the period as the kept one's (ties go to the newer). */
const CLOSER_TO_MIDDLE = `(f.mid_as_of IS NULL OR abs(extract(epoch FROM EXCLUDED.as_of - ${MIDDLE})) <= abs(extract(epoch FROM f.mid_as_of - ${MIDDLE})))`;

/**
 * Forecasts every limited usage type of one license, as of `asOf`: for each usage type with a
 * limit (its own threshold, its plan's limit for it, or a plan limit on every type "*" for
 * each type it has used), one daily series in the license's zone, one model fitted to it,
 * and one forecast per limited period type (the period containing `asOf`), upserted.
 *
 * The history is the complete local days before today, at most HISTORY_DAYS back, starting on
 * the first day the usage type was used (days before that are not usage history, and zeros
 * there would drag the trend down).
 */
/** Returns the number of forecasts written (a forecast newer than `asOf` is left as it is). */
export async function forecastLicense(deps: ForecastDeps, limits: LicenseLimits, asOf: Date): Promise<number> {
  const tz = limits.timezone;
  const limitedTypes = PERIOD_TYPES.filter(
    (p) => limits.planLimits.some((l) => l.periodType === p) || limits.thresholds.some((t) => t.periodType === p),
  );
  if (limitedTypes.length === 0) return 0;
  const periods = new Map(limitedTypes.map((type) => [type, periodContaining(type, asOf, tz, limits.billingAnchor)]));

  const today = localDayAround(asOf.getTime(), tz);
  const local = new TZDate(today.start, tz);
  const historyStart = localMidnight(local.getFullYear(), local.getMonth(), local.getDate() - HISTORY_DAYS, tz);
  const start = Math.min(historyStart, ...[...periods.values()].map((p) => p.start.getTime()));
  const buckets = bucketsOf({ start, end: asOf.getTime() }, 'daily', tz);
  const series = await usageSeries(deps.pool, { tenantId: limits.tenantId, licenses: [{ id: limits.licenseId, timezone: tz }] }, buckets, tz);

  const usageTypes = new Set<string>([
    ...limits.thresholds.map((t) => t.usageType),
    ...limits.planLimits.filter((l) => l.usageType !== '*').map((l) => l.usageType),
  ]);
  if (limits.planLimits.some((l) => l.usageType === '*')) {
    for (const byType of series.values()) for (const type of byType.keys()) usageTypes.add(type);
  }

  const completeDays = buckets.filter((b) => b.end <= today.start).length;
  const elapsed = (asOf.getTime() - today.start) / (today.end - today.start);
  let written = 0;
  for (const usageType of [...usageTypes].sort()) {
    const quantities = buckets.map((_, i) => series.get(i)?.get(usageType)?.quantity ?? ZERO);
    const firstUsed = quantities.findIndex((q, i) => i < completeDays && buckets[i]!.start >= historyStart && q.gt(0));
    const days = firstUsed === -1 ? [] : quantities.slice(firstUsed, completeDays).map((q) => q.toNumber());
    const usedToday = completeDays < buckets.length ? quantities[completeDays]!.toNumber() : 0;
    const model = fitDailyModel({ days, today: { used: usedToday, elapsed } });

    for (const limit of limitsFor(limits, usageType)) {
      const period = periods.get(limit.periodType);
      if (!period) continue;
      let usedSoFar = ZERO;
      buckets.forEach((b, i) => {
        if (b.start >= period.start.getTime()) usedSoFar = usedSoFar.plus(quantities[i]!);
      });
      const remainingDates = bucketsOf({ start: today.start, end: period.end.getTime() }, 'daily', tz).map((b) => localDateOf(b.start, tz));
      const forecast = forecastPeriod({ model, usedSoFar, todayRemaining: 1 - elapsed, remainingDates, limit: limit.limit });
      const upserted = await deps.pool.query(
        `INSERT INTO usage_forecasts AS f (id, tenant_id, license_id, usage_type, period_type, period_start, period_end, timezone,
                                           threshold_id, limit_quantity, used_so_far, predicted_total, lower_bound, upper_bound,
                                           breach_at, method, history_days, as_of, generated_at,
                                           mid_predicted_total, mid_method, mid_as_of, updated_at)
         VALUES (gen_random_uuid(), $1, $2, $3, $4::period_type, $5, $6, $7, $8, $9, $10, $11, $12, $13,
                 $14::date, $15::forecast_method, $16, $17, now(), $11, $15::forecast_method, $17, now())
         ON CONFLICT (tenant_id, license_id, usage_type, period_type, period_start) DO UPDATE
            SET period_end = EXCLUDED.period_end, timezone = EXCLUDED.timezone, threshold_id = EXCLUDED.threshold_id,
                limit_quantity = EXCLUDED.limit_quantity, used_so_far = EXCLUDED.used_so_far,
                predicted_total = EXCLUDED.predicted_total, lower_bound = EXCLUDED.lower_bound, upper_bound = EXCLUDED.upper_bound,
                breach_at = EXCLUDED.breach_at, method = EXCLUDED.method, history_days = EXCLUDED.history_days,
                as_of = EXCLUDED.as_of, generated_at = now(), updated_at = now(),
                -- the forecast kept for accuracy is the one made closest to the period's middle
                mid_predicted_total = CASE WHEN ${CLOSER_TO_MIDDLE} THEN EXCLUDED.predicted_total ELSE f.mid_predicted_total END,
                mid_method = CASE WHEN ${CLOSER_TO_MIDDLE} THEN EXCLUDED.method ELSE f.mid_method END,
                mid_as_of = CASE WHEN ${CLOSER_TO_MIDDLE} THEN EXCLUDED.as_of ELSE f.mid_as_of END
          -- a run with an earlier cut-off (a re-run of an old window) never overwrites a newer forecast
          WHERE f.as_of <= EXCLUDED.as_of`,
        [
          limits.tenantId,
          limits.licenseId,
          usageType,
          period.type,
          period.start,
          period.end,
          tz,
          limit.thresholdId,
          limit.limit.toFixed(),
          usedSoFar.toFixed(),
          forecast.predictedTotal.toFixed(),
          forecast.lower.toFixed(),
          forecast.upper.toFixed(),
          forecast.breachAt,
          model.method,
          days.length,
          asOf,
        ],
      );
      written += upserted.rowCount ?? 0;
    }
  }
  return written;
}

/**
 * Closed periods get their actual total (exact, as usage.current counts it) and the absolute
 * percentage error of the forecast made closest to their middle: |forecast − actual| / actual
 * × 100, left null when the actual total is 0 (no percentage of nothing).
 */
export async function evaluateClosedPeriods(pool: pg.Pool, asOf: Date): Promise<number> {
  const { rows } = await pool.query<{
    id: string;
    tenant_id: string;
    license_id: string;
    usage_type: string;
    period_start: Date;
    period_end: Date;
    timezone: string;
    mid_predicted_total: string;
  }>(
    `SELECT id, tenant_id, license_id, usage_type, period_start, period_end, timezone, mid_predicted_total
       FROM usage_forecasts
      WHERE evaluated_at IS NULL AND period_end <= $1 AND mid_predicted_total IS NOT NULL
      ORDER BY period_end, id`,
    [asOf],
  );
  for (const row of rows) {
    const totals = await licenseUsage(
      pool,
      { tenantId: row.tenant_id, licenseId: row.license_id, usageType: row.usage_type, timezone: row.timezone },
      { start: row.period_start, end: row.period_end },
    );
    const actual = new Prisma.Decimal(totals.get(row.usage_type) ?? 0);
    const ape = actual.gt(0) ? new Prisma.Decimal(row.mid_predicted_total).minus(actual).abs().div(actual).times(100).toDecimalPlaces(4) : null;
    await pool.query(
      `UPDATE usage_forecasts SET actual_total = $3, absolute_percentage_error = $4, evaluated_at = now(), updated_at = now()
        WHERE tenant_id = $1 AND id = $2 AND evaluated_at IS NULL`,
      [row.tenant_id, row.id, actual.toFixed(), ape?.toFixed() ?? null],
    );
  }
  return rows.length;
}

/**
 * usage.forecast.daily: every active license with a limit (from its plan or its own
 * thresholds), then the evaluation of the periods that have closed.
 */
export async function forecastAllLicenses(
  deps: ForecastDeps,
  asOf: Date,
  onProgress?: (done: number, total: number) => Promise<void>,
): Promise<{ rowsTouched: number; licenses: number; forecasts: number; evaluated: number }> {
  const rows = await activeLimitedLicenses(deps.pool);
  let forecasts = 0;
  for (const [i, row] of rows.entries()) {
    const limits = await loadLicenseLimits(deps.prisma, row.tenant_id, row.id);
    if (limits) forecasts += await forecastLicense(deps, limits, asOf);
    if (onProgress && ((i + 1) % 100 === 0 || i + 1 === rows.length)) await onProgress(i + 1, rows.length);
  }
  const evaluated = await evaluateClosedPeriods(deps.pool, asOf);
  return { rowsTouched: forecasts + evaluated, licenses: rows.length, forecasts, evaluated };
}
