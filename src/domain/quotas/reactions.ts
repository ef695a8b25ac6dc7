import type pg from 'pg';
import { Prisma } from '../../generated/prisma/client';
import type { Logger } from '../../lib/logger';
import type { Period } from '../periods';
import { type WebhookDispatchDeps, publishWebhookEvent } from '../webhooks/dispatch';
import { deterministicEventId } from '../webhooks/events';
import type { Crossings, LevelCrossing } from './enforcer';
import { type EffectiveLimit, capOf, feeCents } from './limits';

export interface ReactionDeps {
  pool: pg.Pool;
  webhooks: WebhookDispatchDeps;
  logger: Logger;
}

/**
 * Stores each level crossed as a UsageAlert unless that license, usage type, period and
 * level already has one (the unique index decides, so concurrent detectors, ingestion and
 * the hourly check, create it once), and publishes a webhook for each new one. The webhook
 * goes out first, under an id derived from the alert, and the alert row is claimed after:
 * when publishing fails (or the process dies) before the claim, the next detector (the
 * hourly check at the latest) publishes the same event again, and deliveries are unique per
 * endpoint and event, so the receiver gets it once. Claiming first lost such an alert.
 */
export async function recordLevelCrossings(deps: ReactionDeps, crossings: LevelCrossing[], detectedBy: 'ingestion' | 'scheduled'): Promise<number> {
  let created = 0;
  for (const c of crossings) {
    const key = [c.tenantId, c.licenseId, c.usageType, c.period.type, c.period.start] as const;
    const known = await deps.pool.query(
      `SELECT 1 FROM usage_alerts
        WHERE tenant_id = $1 AND license_id = $2 AND usage_type = $3 AND period_type = $4::period_type AND period_start = $5 AND level = $6`,
      [...key, c.level],
    );
    if (known.rowCount) continue;
    const id = deterministicEventId('usage.alert', c.tenantId, c.licenseId, c.usageType, c.period.type, c.period.start.toISOString(), String(c.level));
    await publishWebhookEvent(deps.webhooks, c.tenantId, {
      id,
      type: c.level >= 100 ? 'usage.threshold.exceeded' : 'usage.threshold.warning',
      createdAt: new Date().toISOString(),
      data: {
        alertId: id,
        licenseId: c.licenseId,
        thresholdId: c.limit.thresholdId,
        source: c.limit.source,
        usageType: c.usageType,
        periodType: c.period.type,
        periodStart: c.period.start.toISOString(),
        periodEnd: c.period.end.toISOString(),
        level: c.level,
        limit: c.limit.limit.toFixed(),
        used: c.used,
      },
    });
    const claimed = await deps.pool.query(
      `INSERT INTO usage_alerts (id, tenant_id, license_id, threshold_id, usage_type, period_type, period_start, period_end,
                                 level, limit_quantity, used_quantity, detected_by)
       VALUES ($1, $2, $3, $4, $5, $6::period_type, $7, $8, $9, $10, $11, $12)
       ON CONFLICT (tenant_id, license_id, usage_type, period_type, period_start, level) DO NOTHING`,
      [id, c.tenantId, c.licenseId, c.limit.thresholdId, c.usageType, c.period.type, c.period.start, c.period.end, c.level, c.limit.limit.toFixed(), c.used, detectedBy],
    );
    created += claimed.rowCount ?? 0;
  }
  return created;
}

export interface OverageFacts {
  tenantId: string;
  licenseId: string;
  usageType: string;
  period: Period;
  limit: EffectiveLimit;
  used: string;
}

/**
 * Usage beyond limit × (1 + grace%) of a threshold that allows overage, priced at its rate.
 * Provisional rows are recomputed until the period is over; the computation after it has
 * closed marks the row final, and a final row is never computed again.
 */
export async function upsertOverage(deps: ReactionDeps, o: OverageFacts, final: boolean): Promise<'created' | 'updated' | 'unchanged'> {
  if (!o.limit.thresholdId) return 'unchanged';
  const excess = new Prisma.Decimal(o.used).minus(capOf(o.limit));
  if (excess.lte(0)) return 'unchanged';
  const quantity = excess.toDecimalPlaces(6, Prisma.Decimal.ROUND_DOWN);
  const fee = feeCents(quantity, o.limit.overageRateCents);
  // As with level alerts: a new overage's webhook goes out first, under an id derived from the
  // threshold and period, and the row is written after, so a failure in between leaves the
  // publication to the next computation (deliveries are unique per endpoint and event).
  const id = deterministicEventId('usage.overage', o.tenantId, o.limit.thresholdId, o.period.start.toISOString());
  const known = await deps.pool.query('SELECT 1 FROM usage_overages WHERE tenant_id = $1 AND threshold_id = $2 AND period_start = $3', [
    o.tenantId,
    o.limit.thresholdId,
    o.period.start,
  ]);
  if (!known.rowCount) {
    await publishWebhookEvent(deps.webhooks, o.tenantId, {
      id,
      type: 'usage.overage.detected',
      createdAt: new Date().toISOString(),
      data: {
        overageId: id,
        licenseId: o.licenseId,
        thresholdId: o.limit.thresholdId,
        usageType: o.usageType,
        periodType: o.period.type,
        periodStart: o.period.start.toISOString(),
        periodEnd: o.period.end.toISOString(),
        quantity: quantity.toFixed(),
        rateCents: o.limit.overageRateCents,
        feeCents: Number(fee),
        final,
      },
    });
  }
  const { rows } = await deps.pool.query<{ inserted: boolean }>(
    `INSERT INTO usage_overages (id, tenant_id, license_id, threshold_id, usage_type, period_type, period_start, period_end,
                                 quantity, rate_cents, fee_cents, final, updated_at)
     VALUES ($1, $2, $3, $4, $5, $6::period_type, $7, $8, $9, $10, $11, $12, now())
     ON CONFLICT (tenant_id, threshold_id, period_start) DO UPDATE
        SET quantity = EXCLUDED.quantity, rate_cents = EXCLUDED.rate_cents, fee_cents = EXCLUDED.fee_cents,
            final = EXCLUDED.final, updated_at = now()
      WHERE usage_overages.final = false
        AND (usage_overages.quantity <> EXCLUDED.quantity OR usage_overages.final <> EXCLUDED.final)
     RETURNING (xmax = 0) AS inserted`,
    [id, o.tenantId, o.licenseId, o.limit.thresholdId, o.usageType, o.period.type, o.period.start, o.period.end, quantity.toFixed(), o.limit.overageRateCents, fee.toString(), final],
  );
  const row = rows[0];
  if (!row) return 'unchanged';
  if (!row.inserted) return 'updated';
  return 'created';
}

/**
 * What ingestion does once events are stored. Failures are logged, not thrown: the event is
 * stored, and the hourly usage.thresholds.check finds whatever was missed.
 */
export async function reactToCrossings(deps: ReactionDeps, crossings: Crossings): Promise<void> {
  if (crossings.levels.length === 0 && crossings.overages.length === 0) return;
  try {
    await recordLevelCrossings(deps, crossings.levels, 'ingestion');
    for (const o of crossings.overages) await upsertOverage(deps, o, false);
  } catch (err) {
    deps.logger.error({ err }, 'could not record alerts or overages at ingestion; the hourly check will');
  }
}
