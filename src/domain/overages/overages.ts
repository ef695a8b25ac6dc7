import type { Db } from '../../lib/db';
import { type OverageStatus, Prisma } from '../../generated/prisma/client';
import { AppError } from '../../lib/errors';
import { afterCursor, decodeCursor, pageOf } from '../../lib/cursor';
import type pg from 'pg';
import { type WebhookDispatchDeps, publishWebhookEvent } from '../webhooks/dispatch';
import { deterministicEventId } from '../webhooks/events';
import type { OverageCrossing } from '../quotas/enforcer';
import { capOf, feeCents } from '../quotas/limits';
import { type Environment, licensesOfEnvironment } from '../environments/environment';

export interface OverageDeps {
  pool: pg.Pool;
  webhooks: WebhookDispatchDeps;
}

type OverageRow = Prisma.UsageOverageGetPayload<object>;

export function presentOverage(o: OverageRow) {
  return {
    id: o.id,
    licenseId: o.licenseId,
    thresholdId: o.thresholdId,
    usageType: o.usageType,
    periodType: o.periodType,
    periodStart: o.periodStart,
    periodEnd: o.periodEnd,
    quantity: o.quantity.toFixed(),
    rateCents: o.rateCents,
    feeCents: Number(o.feeCents),
    status: o.status,
    final: o.final,
    decidedAt: o.decidedAt,
    createdAt: o.createdAt,
    updatedAt: o.updatedAt,
  };
}

export async function listOverages(
  db: Db,
  tenantId: string,
  environment: Environment,
  args: { licenseId?: string; status?: OverageStatus; limit: number; cursor?: string },
) {
  const after = args.cursor ? decodeCursor(args.cursor, 'overages.list') : null;
  const rows = await db.usageOverage.findMany({
    where: {
      tenantId,
      licenseId: await licensesOfEnvironment(db, tenantId, environment, args.licenseId),
      ...(args.status ? { status: args.status } : {}),
      ...afterCursor(after),
    },
    orderBy: [{ createdAt: 'desc' }, { id: 'desc' }],
    take: args.limit + 1,
  });
  const page = pageOf(rows, args.limit);
  return { items: page.items.map(presentOverage), nextCursor: page.nextCursor };
}

/**
 * DETECTED → APPROVED (to be billed) or WAIVED (never billed). Deciding twice the same way is
 * a no-op; changing a decision, or deciding a BILLED overage, is a conflict.
 */
export async function decideOverage(
  db: Db,
  tenantId: string,
  environment: Environment,
  id: string,
  decision: 'APPROVED' | 'WAIVED',
  actorKeyId: string | null,
) {
  const overage = await db.usageOverage.findFirst({ where: { id, tenantId } });
  const licenseHere = overage && (await db.license.count({ where: { id: overage.licenseId, tenantId, environment } }));
  if (!overage || !licenseHere) throw new AppError('NOT_FOUND', 'overage not found');
  if (overage.status === decision) return presentOverage(overage);
  if (overage.status !== 'DETECTED') {
    throw new AppError('CONFLICT', `overage is already ${overage.status}`);
  }
  const updated = await db.usageOverage.updateMany({
    where: { id, tenantId, status: 'DETECTED' },
    data: { status: decision, decidedAt: new Date(), decidedByKeyId: actorKeyId },
  });
  if (updated.count === 0) throw new AppError('CONFLICT', 'overage was decided concurrently');
  return presentOverage(await db.usageOverage.findFirstOrThrow({ where: { id, tenantId } }));
}

/**
 * Usage beyond limit × (1 + grace%) of a threshold that allows overage, priced at its rate.
 * Provisional rows are recomputed until the period is over; the computation after it has
 * closed marks the row final, and a final row is never computed again.
 */
export async function upsertOverage(deps: OverageDeps, o: OverageCrossing, final: boolean): Promise<'created' | 'updated' | 'unchanged'> {
  if (!o.limit.thresholdId) return 'unchanged';
  const excess = new Prisma.Decimal(o.used).minus(capOf(o.limit));
  if (excess.lte(0)) return settleBelowCap(deps, o, final);
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
    await publishWebhookEvent(deps.webhooks, o, {
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
 * Usage back under the cap (a void, a recalculation): a provisional overage of the period falls
 * to nothing, so it can never be finalized (and billed) at the amount it had before. The row
 * stays, with its decision, as the record that the period once went over.
 */
async function settleBelowCap(deps: OverageDeps, o: OverageCrossing, final: boolean): Promise<'updated' | 'unchanged'> {
  const { rowCount } = await deps.pool.query(
    `UPDATE usage_overages SET quantity = 0, fee_cents = 0, final = $4, updated_at = now()
      WHERE tenant_id = $1 AND threshold_id = $2 AND period_start = $3 AND final = false
        AND (quantity <> 0 OR fee_cents <> 0 OR final <> $4)`,
    [o.tenantId, o.limit.thresholdId, o.period.start, final],
  );
  return rowCount ? 'updated' : 'unchanged';
}
