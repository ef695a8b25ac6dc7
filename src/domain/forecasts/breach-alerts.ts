import type pg from 'pg';
import { Prisma, type PrismaClient } from '../../generated/prisma/client';
import { type LicenseLimits, limitsFor, loadLicenseLimits } from '../quotas/limits';
import { type WebhookDispatchDeps, publishWebhookEvent } from '../webhooks/dispatch';
import { deterministicEventId } from '../webhooks/events';

export interface BreachAlertDeps {
  pool: pg.Pool;
  prisma: PrismaClient;
  webhooks: WebhookDispatchDeps;
}

/** NUMERIC columns come back with their scale's trailing zeros; decimals go out without them. */
function exact(numeric: string): string {
  return new Prisma.Decimal(numeric).toFixed();
}

interface BreachRow {
  id: string;
  tenant_id: string;
  license_id: string;
  threshold_id: string | null;
  usage_type: string;
  period_type: 'daily' | 'weekly' | 'monthly';
  period_start: Date;
  period_end: Date;
  limit_quantity: string;
  used_so_far: string;
  predicted_total: string;
  lower_bound: string;
  upper_bound: string;
  breach_at: string;
  method: string;
  generated_at: Date;
}

/**
 * usage.forecast.breach for every current period whose latest forecast reaches its limit
 * before the period ends while usage has not reached it yet (once it has, the threshold's own
 * usage.threshold.exceeded alert speaks). One UsageForecastAlert per license, usage type,
 * period type and period: the unique index decides, so two runs, or two workers, send it once,
 * and a run that fails between publishing and claiming sends it on the next run (same event id).
 * A limit changed or removed since the forecast was made is skipped; the next forecast decides.
 */
export async function sendForecastBreachAlerts(deps: BreachAlertDeps, asOf: Date): Promise<{ rowsTouched: number; candidates: number; sent: number }> {
  const { rows } = await deps.pool.query<BreachRow>(
    `SELECT f.id, f.tenant_id, f.license_id, f.threshold_id, f.usage_type, f.period_type::text AS period_type,
            f.period_start, f.period_end, f.limit_quantity, f.used_so_far, f.predicted_total, f.lower_bound, f.upper_bound,
            to_char(f.breach_at, 'YYYY-MM-DD') AS breach_at, f.method::text AS method, f.generated_at
       FROM usage_forecasts f
       JOIN licenses l ON l.id = f.license_id AND l.tenant_id = f.tenant_id
      WHERE f.evaluated_at IS NULL AND f.period_end > $1 AND f.period_start <= $1
        AND f.breach_at IS NOT NULL AND f.used_so_far < f.limit_quantity
        AND l.status = 'ACTIVE' AND l.deleted_at IS NULL
        AND NOT EXISTS (SELECT 1 FROM usage_forecast_alerts a
                         WHERE a.tenant_id = f.tenant_id AND a.license_id = f.license_id AND a.usage_type = f.usage_type
                           AND a.period_type = f.period_type AND a.period_start = f.period_start)
      ORDER BY f.tenant_id, f.license_id, f.usage_type, f.period_type`,
    [asOf],
  );
  const limitsByLicense = new Map<string, LicenseLimits | null>();
  let sent = 0;
  for (const f of rows) {
    if (!limitsByLicense.has(f.license_id)) limitsByLicense.set(f.license_id, await loadLicenseLimits(deps.prisma, f.tenant_id, f.license_id));
    const limits = limitsByLicense.get(f.license_id);
    const limit = limits ? limitsFor(limits, f.usage_type).find((l) => l.periodType === f.period_type) : undefined;
    if (!limits || !limit || !limit.limit.eq(f.limit_quantity) || limit.thresholdId !== f.threshold_id) continue;

    // Publish first, then claim. The event's id is derived from what the alert is about, so
    // a run that published and then failed to claim (or crashed) publishes the same event
    // again next time, and deliveries are unique per endpoint and event: sent exactly once.
    // (Claiming first lost the alert whenever publishing failed after the claim.)
    const id = deterministicEventId('usage.forecast.breach', f.tenant_id, f.license_id, f.usage_type, f.period_type, f.period_start.toISOString());
    await publishWebhookEvent(deps.webhooks, limits, {
      id,
      type: 'usage.forecast.breach',
      createdAt: new Date().toISOString(),
      data: {
        forecastAlertId: id,
        licenseId: f.license_id,
        thresholdId: f.threshold_id,
        source: limit.source,
        usageType: f.usage_type,
        periodType: f.period_type,
        periodStart: f.period_start.toISOString(),
        periodEnd: f.period_end.toISOString(),
        limit: limit.limit.toFixed(),
        usedSoFar: exact(f.used_so_far),
        predictedTotal: exact(f.predicted_total),
        lower: exact(f.lower_bound),
        upper: exact(f.upper_bound),
        breachAt: f.breach_at,
        method: f.method,
        generatedAt: f.generated_at.toISOString(),
      },
    });
    const claimed = await deps.pool.query(
      `INSERT INTO usage_forecast_alerts (id, tenant_id, license_id, threshold_id, usage_type, period_type, period_start, period_end,
                                          limit_quantity, used_so_far, predicted_total, breach_at)
       VALUES ($1, $2, $3, $4, $5, $6::period_type, $7, $8, $9, $10, $11, $12::date)
       ON CONFLICT (tenant_id, license_id, usage_type, period_type, period_start) DO NOTHING`,
      [id, f.tenant_id, f.license_id, f.threshold_id, f.usage_type, f.period_type, f.period_start, f.period_end, f.limit_quantity, f.used_so_far, f.predicted_total, f.breach_at],
    );
    sent += claimed.rowCount ?? 0;
  }
  return { rowsTouched: sent, candidates: rows.length, sent };
}
