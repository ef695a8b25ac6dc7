import type { Db } from '../../lib/db';
import type { Prisma } from '../../generated/prisma/client';
import { afterCursor, decodeCursor, pageOf } from '../../lib/cursor';
import type pg from 'pg';
import { type WebhookDispatchDeps, publishWebhookEvent } from '../webhooks/dispatch';
import { deterministicEventId } from '../webhooks/events';
import type { LevelCrossing } from '../quotas/enforcer';
import { type Environment, licensesOfEnvironment } from '../environments/environment';

export interface AlertDeps {
  pool: pg.Pool;
  webhooks: WebhookDispatchDeps;
}

type AlertRow = Prisma.UsageAlertGetPayload<object>;

export function presentAlert(a: AlertRow) {
  return {
    id: a.id,
    licenseId: a.licenseId,
    thresholdId: a.thresholdId,
    usageType: a.usageType,
    periodType: a.periodType,
    periodStart: a.periodStart,
    periodEnd: a.periodEnd,
    level: a.level,
    type: a.level >= 100 ? ('usage.threshold.exceeded' as const) : ('usage.threshold.warning' as const),
    limit: a.limitQuantity.toFixed(),
    used: a.usedQuantity.toFixed(),
    detectedBy: a.detectedBy,
    createdAt: a.createdAt,
  };
}

/** Newest first, keyset-paginated. */
export async function listAlerts(
  db: Db,
  tenantId: string,
  environment: Environment,
  args: { licenseId?: string; usageType?: string; minLevel?: number; limit: number; cursor?: string },
) {
  const after = args.cursor ? decodeCursor(args.cursor, 'alerts.list') : null;
  const rows = await db.usageAlert.findMany({
    where: {
      tenantId,
      licenseId: await licensesOfEnvironment(db, tenantId, environment, args.licenseId),
      ...(args.usageType ? { usageType: args.usageType } : {}),
      ...(args.minLevel ? { level: { gte: args.minLevel } } : {}),
      ...afterCursor(after),
    },
    orderBy: [{ createdAt: 'desc' }, { id: 'desc' }],
    take: args.limit + 1,
  });
  const page = pageOf(rows, args.limit);
  return { items: page.items.map(presentAlert), nextCursor: page.nextCursor };
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
export async function recordLevelCrossings(deps: AlertDeps, crossings: LevelCrossing[], detectedBy: 'ingestion' | 'scheduled'): Promise<number> {
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
    await publishWebhookEvent(deps.webhooks, c, {
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
