import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import Decimal from 'decimal.js';
import { inTransaction } from '../../lib/transaction';
import { nowOf, type BillingDeps } from './deps';
import type { OpenConnection } from './connections';
import { decideWindow, windowKey, type LiveEvent, type PlannedCall } from './ledger-math';

/**
 * Deciding what Stripe must be told: per (license with a customer, mapped meter, UTC hour)
 * whose rolled-up quantity differs from what the ledger accounted for, the ledger row and the
 * Stripe calls (outbox rows) are written in one transaction, under the lock of the license's
 * and meter's stream (which holds the carried fraction). Re-running it changes nothing once
 * the ledger matches the rollups, so every run (hourly, on demand, after a crash) is safe.
 * A window with a call still in the outbox waits for it: its next decision needs to know
 * which of its meter events Stripe holds.
 */

interface Candidate {
  license_id: string;
  meter_id: string;
  hour: Date;
  rollup: string;
}

interface StreamInfo {
  customer: string;
  eventName: string;
  multiplier: Decimal;
  unitAmount: Decimal | null;
}

const STREAMS_PER_TRANSACTION = 500;

/** Candidate windows of a connection, optionally for some streams only (`license|meter` pairs). */
async function candidates(client: pg.Pool | pg.PoolClient, connection: OpenConnection, streams?: { licenses: string[]; meters: string[] }): Promise<Candidate[]> {
  const { rows } = await client.query<Candidate>(
    `WITH lic AS (
       SELECT id FROM licenses WHERE tenant_id = $1 AND environment = $2::api_key_environment AND stripe_customer_id IS NOT NULL
     ), met AS (
       SELECT id, usage_type FROM billing_meters WHERE tenant_id = $1 AND mode = $2::api_key_environment
     ), r AS (
       SELECT h.license_id, met.id AS meter_id, h.hour, h.quantity
       FROM usage_rollups_hourly h JOIN met ON met.usage_type = h.usage_type JOIN lic ON lic.id = h.license_id
       WHERE h.tenant_id = $1 AND h.hour >= $3
     ), w AS (
       SELECT w.id, w.license_id, w.meter_id, w.hour, w.metered_quantity
       FROM billing_report_windows w JOIN met ON met.id = w.meter_id JOIN lic ON lic.id = w.license_id
       WHERE w.tenant_id = $1 AND w.hour >= $3
     )
     SELECT coalesce(r.license_id, w.license_id) AS license_id, coalesce(r.meter_id, w.meter_id) AS meter_id,
            coalesce(r.hour, w.hour) AS hour, coalesce(r.quantity, 0)::text AS rollup
     FROM r FULL JOIN w ON w.license_id = r.license_id AND w.meter_id = r.meter_id AND w.hour = r.hour
     WHERE coalesce(r.quantity, 0) <> coalesce(w.metered_quantity, 0)
       AND (w.id IS NULL OR NOT EXISTS (
         SELECT 1 FROM stripe_usage_reports o WHERE o.tenant_id = $1 AND o.window_id = w.id AND o.status = 'PENDING'))
       AND ($4::uuid[] IS NULL OR (coalesce(r.license_id, w.license_id), coalesce(r.meter_id, w.meter_id)) IN (
         SELECT * FROM unnest($4::uuid[], $5::uuid[])))
     ORDER BY 1, 2, 3`,
    [connection.tenantId, connection.mode, connection.reportFrom, streams?.licenses ?? null, streams?.meters ?? null],
  );
  return rows;
}

export interface DecideOutcome {
  windows: number;
  calls: number;
}

/** Decides every outstanding window of one connection. */
export async function decideUsageReports(deps: Pick<BillingDeps, 'pool' | 'now'>, connection: OpenConnection): Promise<DecideOutcome> {
  const all = await candidates(deps.pool, connection);
  const streams = [...new Set(all.map((c) => `${c.license_id}|${c.meter_id}`))];
  let windows = 0;
  let calls = 0;
  for (let i = 0; i < streams.length; i += STREAMS_PER_TRANSACTION) {
    const batch = streams.slice(i, i + STREAMS_PER_TRANSACTION).map((s) => s.split('|') as [string, string]);
    const outcome = await inTransaction(deps.pool, {}, (client) => decideStreams(client, connection, batch, nowOf(deps)));
    windows += outcome.windows;
    calls += outcome.calls;
  }
  return { windows, calls };
}

async function decideStreams(client: pg.PoolClient, connection: OpenConnection, streams: [string, string][], now: Date): Promise<DecideOutcome> {
  const tenantId = connection.tenantId;
  const licenses = streams.map((s) => s[0]);
  const meters = streams.map((s) => s[1]);
  await client.query(
    `INSERT INTO billing_streams (tenant_id, license_id, meter_id) SELECT $1, * FROM unnest($2::uuid[], $3::uuid[]) ON CONFLICT DO NOTHING`,
    [tenantId, licenses, meters],
  );
  // The stream lock: concurrent runs decide a license's meter one at a time, in one order.
  const locked = await client.query<{ license_id: string; meter_id: string; carry_units: string }>(
    `SELECT license_id, meter_id, carry_units::text FROM billing_streams
     WHERE tenant_id = $1 AND (license_id, meter_id) IN (SELECT * FROM unnest($2::uuid[], $3::uuid[]))
     ORDER BY license_id, meter_id FOR UPDATE`,
    [tenantId, licenses, meters],
  );
  const carries = new Map(locked.rows.map((r) => [`${r.license_id}|${r.meter_id}`, new Decimal(r.carry_units)]));
  // Read again under the lock: another run may have decided some of these windows meanwhile.
  const fresh = await candidates(client, connection, { licenses, meters });
  if (fresh.length === 0) return { windows: 0, calls: 0 };

  const info = await client.query<{ license_id: string; meter_id: string; customer: string; event_name: string; unit_multiplier: string; unit_amount_decimal: string | null }>(
    `SELECT l.id AS license_id, m.id AS meter_id, l.stripe_customer_id AS customer, m.event_name, m.unit_multiplier::text, m.unit_amount_decimal::text
     FROM unnest($2::uuid[], $3::uuid[]) AS s(license_id, meter_id)
     JOIN licenses l ON l.id = s.license_id AND l.tenant_id = $1 JOIN billing_meters m ON m.id = s.meter_id AND m.tenant_id = $1`,
    [tenantId, licenses, meters],
  );
  const streamInfo = new Map<string, StreamInfo>(
    info.rows.map((r) => [
      `${r.license_id}|${r.meter_id}`,
      { customer: r.customer, eventName: r.event_name, multiplier: new Decimal(r.unit_multiplier), unitAmount: r.unit_amount_decimal === null ? null : new Decimal(r.unit_amount_decimal) },
    ]),
  );

  const hours = fresh.map((c) => c.hour);
  const existing = await client.query<{
    id: string; license_id: string; meter_id: string; hour: Date; metered_quantity: string; live_units: string; credited_units: string; invoiced_units: string; revision: number;
    stripe_invoice_id: string | null;
  }>(
    `SELECT w.id, w.license_id, w.meter_id, w.hour, w.metered_quantity::text, w.live_units, w.credited_units, w.invoiced_units, w.revision,
            w.stripe_invoice_id
     FROM billing_report_windows w
     WHERE w.tenant_id = $1 AND (w.license_id, w.meter_id, w.hour) IN (SELECT * FROM unnest($2::uuid[], $3::uuid[], $4::timestamptz[]))
     FOR UPDATE`,
    [tenantId, fresh.map((c) => c.license_id), fresh.map((c) => c.meter_id), hours],
  );
  const windowOf = new Map(existing.rows.map((w) => [`${w.license_id}|${w.meter_id}|${w.hour.toISOString()}`, w]));
  // The meter events Stripe holds for windows that may go down: sent and not cancelled.
  const live = await client.query<{ window_id: string; identifier: string; sent_at: Date }>(
    `SELECT e.window_id, e.identifier, e.sent_at FROM stripe_usage_reports e
     WHERE e.tenant_id = $1 AND e.window_id = ANY($2::uuid[]) AND e.kind = 'meter_event' AND e.status = 'SENT'
       AND NOT EXISTS (SELECT 1 FROM stripe_usage_reports c WHERE c.tenant_id = $1 AND c.identifier = 'cx_' || e.identifier)
     ORDER BY e.created_at`,
    [tenantId, existing.rows.map((w) => w.id)],
  );
  const liveOf = new Map<string, LiveEvent[]>();
  for (const e of live.rows) liveOf.set(e.window_id, [...(liveOf.get(e.window_id) ?? []), { identifier: e.identifier, sentAt: e.sent_at }]);

  const windowRows: Record<string, unknown>[] = [];
  const outboxRows: Record<string, unknown>[] = [];
  for (const c of fresh) {
    const streamKey = `${c.license_id}|${c.meter_id}`;
    const stream = streamInfo.get(streamKey);
    if (!stream) continue;
    const row = windowOf.get(`${streamKey}|${c.hour.toISOString()}`);
    const windowId = row?.id ?? randomUUID();
    const decision = decideWindow(
      { tenantId, licenseId: c.license_id, meterId: c.meter_id },
      {
        hour: c.hour,
        meteredQuantity: new Decimal(row?.metered_quantity ?? 0),
        liveUnits: BigInt(row?.live_units ?? 0),
        creditedUnits: BigInt(row?.credited_units ?? 0),
        invoicedUnits: BigInt(row?.invoiced_units ?? 0),
        revision: row?.revision ?? 0,
        liveEvents: row ? (liveOf.get(row.id) ?? []) : [],
        invoiced: row?.stripe_invoice_id != null,
      },
      new Decimal(c.rollup),
      stream.multiplier,
      carries.get(streamKey) ?? new Decimal(0),
      stream.unitAmount,
      now,
    );
    carries.set(streamKey, decision.carry);
    windowRows.push({
      id: windowId,
      license_id: c.license_id,
      meter_id: c.meter_id,
      hour: c.hour.toISOString(),
      metered_quantity: decision.next.meteredQuantity.toFixed(),
      live_units: decision.next.liveUnits.toString(),
      credited_units: decision.next.creditedUnits.toString(),
      invoiced_units: decision.next.invoicedUnits.toString(),
      revision: decision.next.revision,
    });
    const quantityDelta = new Decimal(c.rollup).minus(row?.metered_quantity ?? 0).toFixed();
    const ids = decision.calls.map(() => randomUUID());
    decision.calls.forEach((call, index) => {
      outboxRows.push(outboxRow(connection, call, {
        id: ids[index]!,
        dependsOn: call.after === null ? null : ids[call.after]!,
        windowId,
        licenseId: c.license_id,
        meterId: c.meter_id,
        hour: c.hour,
        stream,
        quantityDelta: index === 0 ? quantityDelta : '0',
      }));
    });
  }
  if (windowRows.length > 0) {
    await client.query(
      `INSERT INTO billing_report_windows (id, tenant_id, license_id, meter_id, hour, metered_quantity, live_units, credited_units, invoiced_units, revision, updated_at)
       SELECT x.id, $1, x.license_id, x.meter_id, x.hour, x.metered_quantity, x.live_units, x.credited_units, x.invoiced_units, x.revision, now()
       FROM json_to_recordset($2::json) AS x(id uuid, license_id uuid, meter_id uuid, hour timestamptz, metered_quantity numeric, live_units bigint, credited_units bigint, invoiced_units bigint, revision int)
       ON CONFLICT (tenant_id, license_id, meter_id, hour) DO UPDATE SET
         metered_quantity = excluded.metered_quantity, live_units = excluded.live_units, credited_units = excluded.credited_units,
         invoiced_units = excluded.invoiced_units, revision = excluded.revision, updated_at = now()`,
      [tenantId, JSON.stringify(windowRows)],
    );
  }
  await insertOutbox(client, tenantId, outboxRows);
  await client.query(
    `UPDATE billing_streams s SET carry_units = x.carry FROM unnest($2::uuid[], $3::uuid[], $4::numeric[]) AS x(license_id, meter_id, carry)
     WHERE s.tenant_id = $1 AND s.license_id = x.license_id AND s.meter_id = x.meter_id`,
    [tenantId, [...carries.keys()].map((k) => k.split('|')[0]), [...carries.keys()].map((k) => k.split('|')[1]), [...carries.values()].map((v) => v.toFixed())],
  );
  return { windows: windowRows.length, calls: outboxRows.length };
}

function outboxRow(
  connection: OpenConnection,
  call: PlannedCall,
  at: { id: string; dependsOn: string | null; windowId: string; licenseId: string; meterId: string; hour: Date; stream: StreamInfo; quantityDelta: string },
): Record<string, unknown> {
  const key = windowKey(connection.tenantId, at.licenseId, at.meterId, at.hour);
  let identifier: string;
  let request: Record<string, unknown>;
  switch (call.kind) {
    case 'meter_event':
      identifier = call.eventIdentifier!;
      request = { eventName: at.stream.eventName, customer: at.stream.customer, value: call.units.toString(), timestamp: Math.floor(at.hour.getTime() / 1000) };
      break;
    case 'meter_event_cancel':
      identifier = `cx_${call.eventIdentifier!}`;
      request = { eventName: at.stream.eventName, identifier: call.eventIdentifier };
      break;
    case 'invoice_item':
      identifier = `ii_${key}_r${call.revision}`;
      request = {
        customer: at.stream.customer,
        currency: connection.currency,
        description:
          call.reason === 'decrease_credit'
            ? `Usage correction: ${(-call.units).toString()} ${at.stream.eventName} units of ${at.hour.toISOString().slice(0, 13)}:00 UTC credited`
            : `Late usage: ${call.units.toString()} ${at.stream.eventName} units of ${at.hour.toISOString().slice(0, 13)}:00 UTC`,
        metadata: { tally_license_id: at.licenseId, tally_meter_id: at.meterId, tally_window: at.hour.toISOString(), tally_revision: String(call.revision), tally_reason: call.reason },
      };
      break;
  }
  return {
    id: at.id,
    connection_id: connection.id,
    kind: call.kind,
    reason: call.reason,
    license_id: at.licenseId,
    meter_id: at.meterId,
    window_id: at.windowId,
    hour: at.hour.toISOString(),
    overage_id: null,
    revision: call.revision,
    identifier,
    units: call.units.toString(),
    amount_cents: call.amountCents === null ? null : call.amountCents.toString(),
    quantity_delta: at.quantityDelta,
    request,
    depends_on_id: at.dependsOn,
  };
}

/** Writes outbox rows; a row whose identifier exists (the same decision made twice) is left as it is. */
export async function insertOutbox(client: pg.PoolClient | pg.Pool, tenantId: string, rows: Record<string, unknown>[]): Promise<number> {
  if (rows.length === 0) return 0;
  const result = await client.query(
    `INSERT INTO stripe_usage_reports (id, tenant_id, connection_id, kind, reason, license_id, meter_id, window_id, hour, overage_id, revision, identifier, units, amount_cents, quantity_delta, request, depends_on_id)
     SELECT x.id, $1, x.connection_id, x.kind, x.reason, x.license_id, x.meter_id, x.window_id, x.hour, x.overage_id, x.revision, x.identifier, x.units, x.amount_cents, x.quantity_delta, x.request, x.depends_on_id
     FROM json_to_recordset($2::json) AS x(id uuid, connection_id uuid, kind text, reason text, license_id uuid, meter_id uuid, window_id uuid, hour timestamptz, overage_id uuid,
       revision int, identifier text, units bigint, amount_cents bigint, quantity_delta numeric, request jsonb, depends_on_id uuid)
     ON CONFLICT (tenant_id, identifier) DO NOTHING`,
    [tenantId, JSON.stringify(rows)],
  );
  return result.rowCount ?? 0;
}

/**
 * Final, approved overage fees of licenses with a customer become invoice items, once each:
 * the outbox identifier (and so the Idempotency-Key) is derived from the overage id.
 */
export async function decideOverageFees(deps: Pick<BillingDeps, 'pool'>, connection: OpenConnection): Promise<number> {
  const { rows } = await deps.pool.query<{ id: string; license_id: string; customer: string; usage_type: string; period_start: Date; period_end: Date; fee_cents: string; quantity: string }>(
    `SELECT o.id, o.license_id, l.stripe_customer_id AS customer, o.usage_type, o.period_start, o.period_end, o.fee_cents, o.quantity::text
     FROM usage_overages o JOIN licenses l ON l.id = o.license_id AND l.tenant_id = o.tenant_id
     WHERE o.tenant_id = $1 AND l.environment = $2::api_key_environment AND l.stripe_customer_id IS NOT NULL
       AND o.status = 'APPROVED' AND o.final AND o.fee_cents > 0
       AND NOT EXISTS (SELECT 1 FROM stripe_usage_reports r WHERE r.tenant_id = $1 AND r.identifier = 'ov_' || o.id::text)`,
    [connection.tenantId, connection.mode],
  );
  return insertOutbox(
    deps.pool,
    connection.tenantId,
    rows.map((o) => ({
      id: randomUUID(),
      connection_id: connection.id,
      kind: 'invoice_item',
      reason: 'overage_fee',
      license_id: o.license_id,
      meter_id: null,
      window_id: null,
      hour: null,
      overage_id: o.id,
      revision: 0,
      identifier: `ov_${o.id}`,
      units: '0',
      amount_cents: o.fee_cents,
      quantity_delta: o.quantity,
      request: {
        customer: o.customer,
        currency: connection.currency,
        description: `Overage: ${o.quantity} ${o.usage_type} beyond the limit, ${o.period_start.toISOString().slice(0, 10)} to ${o.period_end.toISOString().slice(0, 10)}`,
        metadata: { tally_overage_id: o.id, tally_license_id: o.license_id, tally_usage_type: o.usage_type },
      },
      depends_on_id: null,
    })),
  );
}
