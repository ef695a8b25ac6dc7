import { randomUUID } from 'node:crypto';
import Decimal from 'decimal.js';
import { DAY_MS } from '../../lib/time';
import { nowOf, type BillingDeps } from './deps';
import { openConnection, type OpenConnection } from './connections';
import { centsFor, METER_TIMESTAMP_LIMIT_MS, windowKey } from './ledger-math';
import { insertOutbox } from './report';

/**
 * Daily reconciliation: per license (customer), meter and UTC day, Stripe's meter event summary
 * is compared with the units the ledger says Stripe holds, and the rollups with what the ledger
 * accounted for. A difference is recorded (billing.reconciliation lists it, /metrics counts it)
 * and healed hour by hour: units Stripe is missing are sent again, units it holds beyond the
 * ledger are credited. Heal calls are named by the state they repair, so reconciling the same
 * state twice sends nothing twice; hours with calls still in the outbox are left to them.
 */

export interface ReconcileOutcome {
  rowsTouched: number;
  checked: number;
  differences: number;
  healCalls: number;
  [detail: string]: unknown;
}

interface DayStream {
  license_id: string;
  meter_id: string;
  customer: string;
  stripe_meter_id: string | null;
  event_name: string;
  unit_multiplier: string;
  unit_amount_decimal: string | null;
  live_units: string;
  metered: string;
  rollup: string;
}

export async function reconcileDay(deps: BillingDeps, day: Date, scope: { tenantId?: string } = {}): Promise<ReconcileOutcome> {
  const outcome: ReconcileOutcome = { rowsTouched: 0, checked: 0, differences: 0, healCalls: 0 };
  if (!deps.box) return outcome;
  const connections = await deps.prisma.billingConnection.findMany({ where: scope.tenantId ? { tenantId: scope.tenantId } : {}, select: { id: true } });
  for (const { id } of connections) {
    const connection = await openConnection(deps, { id });
    if (!connection) continue;
    await reconcileConnection(deps, connection, day, outcome);
    // Per account: billing.health shows when this tenant's own account (of this mode) was last
    // compared in full, not when the platform-wide job last ran (a run that failed before or
    // at this account leaves its earlier time standing).
    await deps.pool.query('UPDATE billing_connections SET last_reconciled_at = now() WHERE id = $1', [connection.id]);
  }
  outcome.rowsTouched = outcome.checked;
  deps.onReconciliationDifferences?.(outcome.differences);
  return outcome;
}

async function reconcileConnection(deps: BillingDeps, connection: OpenConnection, day: Date, outcome: ReconcileOutcome): Promise<void> {
  const start = new Date(Math.floor(day.getTime() / DAY_MS) * DAY_MS);
  const end = new Date(start.getTime() + DAY_MS);
  const from = start < connection.reportFrom ? connection.reportFrom : start;
  if (from >= end) return;
  const { rows } = await deps.pool.query<DayStream>(
    `WITH lic AS (SELECT id, stripe_customer_id FROM licenses WHERE tenant_id = $1 AND environment = $2::api_key_environment AND stripe_customer_id IS NOT NULL),
     met AS (SELECT * FROM billing_meters WHERE tenant_id = $1 AND mode = $2::api_key_environment),
     w AS (SELECT license_id, meter_id, sum(live_units + stray_units) AS live_units, sum(metered_quantity) AS metered FROM billing_report_windows
           WHERE tenant_id = $1 AND hour >= $3 AND hour < $4 GROUP BY 1, 2),
     r AS (SELECT h.license_id, met.id AS meter_id, sum(h.quantity) AS quantity FROM usage_rollups_hourly h JOIN met ON met.usage_type = h.usage_type
           WHERE h.tenant_id = $1 AND h.hour >= $3 AND h.hour < $4 GROUP BY 1, 2)
     SELECT lic.id AS license_id, met.id AS meter_id, lic.stripe_customer_id AS customer, met.stripe_meter_id, met.event_name,
            met.unit_multiplier::text, met.unit_amount_decimal::text,
            coalesce(w.live_units, 0)::text AS live_units, coalesce(w.metered, 0)::text AS metered, coalesce(r.quantity, 0)::text AS rollup
     FROM lic CROSS JOIN met
     LEFT JOIN w ON w.license_id = lic.id AND w.meter_id = met.id
     LEFT JOIN r ON r.license_id = lic.id AND r.meter_id = met.id
     WHERE w.license_id IS NOT NULL OR r.license_id IS NOT NULL`,
    [connection.tenantId, connection.mode, from, end],
  );
  for (const s of rows) {
    if (!s.stripe_meter_id) continue; // a meter Tally does not know the id of cannot be read back
    outcome.checked += 1;
    const stripeUnits = await deps.gateway.meterTotal(connection.secretKey, s.stripe_meter_id, s.customer, start, end);
    const ledgerUnits = BigInt(s.live_units);
    const multiplier = new Decimal(s.unit_multiplier);
    const rollupUnits = new Decimal(s.rollup).times(multiplier);
    const unreported = !new Decimal(s.rollup).equals(s.metered);
    const difference = BigInt(stripeUnits) - ledgerUnits;
    if (difference === 0n && !unreported) {
      await deps.pool.query(
        `UPDATE billing_reconciliations SET healed = true, stripe_units = $5, ledger_units = $6, rollup_units = $7, difference = 0, checked_at = now()
         WHERE tenant_id = $1 AND license_id = $2 AND meter_id = $3 AND day = $4::date`,
        [connection.tenantId, s.license_id, s.meter_id, start.toISOString().slice(0, 10), stripeUnits, ledgerUnits.toString(), rollupUnits.toFixed()],
      );
      continue;
    }
    outcome.differences += 1;
    await deps.pool.query(
      `INSERT INTO billing_reconciliations (id, tenant_id, license_id, meter_id, day, stripe_units, ledger_units, rollup_units, difference, healed)
       VALUES ($1, $2, $3, $4, $5::date, $6, $7, $8, $9, false)
       ON CONFLICT (tenant_id, license_id, meter_id, day) DO UPDATE SET stripe_units = excluded.stripe_units, ledger_units = excluded.ledger_units,
         rollup_units = excluded.rollup_units, difference = excluded.difference, healed = false, checked_at = now()`,
      [randomUUID(), connection.tenantId, s.license_id, s.meter_id, start.toISOString().slice(0, 10), stripeUnits, ledgerUnits.toString(), rollupUnits.toFixed(), difference.toString()],
    );
    if (difference !== 0n) outcome.healCalls += await healHours(deps, connection, s, start, end);
  }
}

/** Per hour of the day: what Stripe is missing is sent again, what it holds beyond the ledger is credited. */
async function healHours(deps: BillingDeps, connection: OpenConnection, s: DayStream, start: Date, end: Date): Promise<number> {
  const stripe = await deps.gateway.meterHourly(connection.secretKey, s.stripe_meter_id!, s.customer, start, end);
  const { rows: windows } = await deps.pool.query<{ id: string; hour: Date; live_units: string; pending: boolean }>(
    `SELECT w.id, w.hour, (w.live_units + w.stray_units)::text AS live_units, EXISTS (SELECT 1 FROM stripe_usage_reports o WHERE o.tenant_id = w.tenant_id AND o.window_id = w.id AND o.status = 'PENDING') AS pending
     FROM billing_report_windows w WHERE w.tenant_id = $1 AND w.license_id = $2 AND w.meter_id = $3 AND w.hour >= $4 AND w.hour < $5`,
    [connection.tenantId, s.license_id, s.meter_id, start, end],
  );
  const now = nowOf(deps);
  const calls: Record<string, unknown>[] = [];
  const credits: { id: string; units: bigint }[] = [];
  const hours = new Set([...windows.map((w) => w.hour.getTime()), ...stripe.keys()]);
  for (const hourMs of hours) {
    const window = windows.find((w) => w.hour.getTime() === hourMs);
    if (!window || window.pending) continue; // usage Tally never decided, or calls still on their way
    const held = BigInt(stripe.get(hourMs) ?? 0);
    const live = BigInt(window.live_units);
    if (held === live) continue;
    const hour = new Date(hourMs);
    const key = windowKey(connection.tenantId, s.license_id, s.meter_id, hour);
    const base = {
      id: randomUUID(), connection_id: connection.id, license_id: s.license_id, meter_id: s.meter_id, window_id: window.id, hour: hour.toISOString(),
      overage_id: null, revision: 0, quantity_delta: '0', depends_on_id: null,
    };
    const state = `${live}_${held}`;
    if (held < live && hour.getTime() >= now.getTime() - METER_TIMESTAMP_LIMIT_MS) {
      const identifier = `tly_${key}_heal_${state}`;
      calls.push({ ...base, kind: 'meter_event', reason: 'reconcile_heal', identifier, units: (live - held).toString(), amount_cents: null,
        request: { eventName: s.event_name, customer: s.customer, value: (live - held).toString(), timestamp: Math.floor(hourMs / 1000) } });
    } else {
      const units = held - live; // negative: Stripe is short and the hour is too old for a meter event, so charge it
      const cents = centsFor(units, s.unit_amount_decimal === null ? null : new Decimal(s.unit_amount_decimal));
      calls.push({ ...base, kind: 'invoice_item', reason: 'reconcile_credit', identifier: `ii_${key}_heal_${state}`, units: (-units).toString(), amount_cents: cents === null ? null : (-cents).toString(),
        request: { customer: s.customer, currency: connection.currency,
          description: `Usage reconciliation: ${units > 0n ? 'credit' : 'charge'} of ${(units > 0n ? units : -units).toString()} ${s.event_name} units of ${hour.toISOString().slice(0, 13)}:00 UTC`,
          metadata: { tally_license_id: s.license_id, tally_meter_id: s.meter_id, tally_window: hour.toISOString(), tally_reason: 'reconcile' } } });
      if (units > 0n) credits.push({ id: window.id, units });
    }
  }
  const inserted = await insertOutbox(deps.pool, connection.tenantId, calls);
  // Units Stripe holds beyond the ledger stay there (Tally cannot cancel what it did not send): the
  // ledger expects them from now on, and credits them. Counted once: only when the call was new.
  if (inserted === calls.length) {
    for (const c of credits) await deps.pool.query(`UPDATE billing_report_windows SET credited_units = credited_units + $2, stray_units = stray_units + $2 WHERE id = $1`, [c.id, c.units.toString()]);
  }
  return inserted;
}
