import Decimal from 'decimal.js';
import { AppError } from '../../lib/errors';
import { DAY_MS } from '../../lib/time';
import { periodContaining } from '../periods';
import type { BillingDeps } from './deps';
import { connectionIdOf, listConnections } from './connections';
import type { BillingMode } from './connections';

/** What billing looks like for a tenant: connected, how far behind, what failed, last reconciliation. */
export async function billingHealth(deps: Pick<BillingDeps, 'prisma' | 'pool' | 'box'>, tenantId: string, environment: BillingMode) {
  // A key sees the billing of its own environment only: the Stripe account of that mode and its calls.
  const connections = (await listConnections(deps, tenantId)).filter((c) => c.mode === environment);
  const connectionId = connectionIdOf(tenantId, environment);
  const { rows: [outbox] } = await deps.pool.query<{ pending: string; failed: string; oldest: Date | null; last_sent: Date | null }>(
    `SELECT count(*) FILTER (WHERE status = 'PENDING') AS pending, count(*) FILTER (WHERE status = 'FAILED') AS failed,
            min(hour) FILTER (WHERE status = 'PENDING') AS oldest, max(sent_at) AS last_sent
     FROM stripe_usage_reports WHERE tenant_id = $1 AND connection_id = $2`,
    [tenantId, connectionId],
  );
  const failures = await deps.prisma.stripeUsageReport.findMany({
    where: { tenantId, connectionId, status: 'FAILED' },
    orderBy: { createdAt: 'desc' },
    take: 20,
  });
  const { rows: [reconciliation] } = await deps.pool.query<{ open: string }>(
    `SELECT count(*) FILTER (WHERE NOT r.healed) AS open
       FROM billing_reconciliations r JOIN licenses l ON l.id = r.license_id AND l.tenant_id = r.tenant_id
      WHERE r.tenant_id = $1 AND l.environment = $2::api_key_environment`,
    [tenantId, environment],
  );
  const reconciled = await deps.prisma.billingConnection.findUnique({ where: { id: connectionId }, select: { tenantId: true, lastReconciledAt: true } });
  const meterErrors = await deps.prisma.stripeWebhookEvent.findMany({
    where: { tenantId, livemode: environment === 'live', type: 'billing.meter.error_report_triggered' },
    orderBy: { receivedAt: 'desc' },
    take: 5,
  });
  const meterErrorCount = await deps.prisma.stripeWebhookEvent.count({ where: { tenantId, livemode: environment === 'live', type: 'billing.meter.error_report_triggered' } });
  return {
    enabled: deps.box !== null,
    connected: connections.length > 0,
    connections,
    lastReportAt: outbox?.last_sent?.toISOString() ?? null,
    backlog: Number(outbox?.pending ?? 0),
    oldestUnreportedWindow: outbox?.oldest?.toISOString() ?? null,
    failedCount: Number(outbox?.failed ?? 0),
    failures: failures.map((f) => ({
      id: f.id,
      kind: f.kind,
      reason: f.reason,
      licenseId: f.licenseId,
      overageId: f.overageId,
      hour: f.hour?.toISOString() ?? null,
      identifier: f.identifier,
      attempts: f.attempts,
      lastError: f.lastError,
      createdAt: f.createdAt.toISOString(),
    })),
    // The last full reconciliation of this tenant's account of this environment (null: never, or not connected).
    lastReconciliationAt: reconciled?.tenantId === tenantId ? (reconciled.lastReconciledAt?.toISOString() ?? null) : null,
    openDifferences: Number(reconciliation?.open ?? 0),
    meterErrorReports: {
      count: meterErrorCount,
      recent: meterErrors.map((e) => ({ eventId: e.eventId, receivedAt: e.receivedAt.toISOString(), detail: e.detail })),
    },
  };
}

async function licenseOf(deps: Pick<BillingDeps, 'prisma'>, tenantId: string, environment: BillingMode, licenseId: string) {
  const license = await deps.prisma.license.findFirst({ where: { id: licenseId, tenantId, environment, deletedAt: null } });
  if (!license) throw new AppError('NOT_FOUND', 'license not found');
  return license;
}

/**
 * Per mapped usage type for the license's billing period (monthly, from its billing anchor, in
 * its time zone): quantity metered, units in Stripe, units still to report, the unit price and
 * amount in cents, overage fees, and the estimated total.
 */
export async function billingUsageSummary(deps: Pick<BillingDeps, 'prisma' | 'pool'>, tenantId: string, environment: BillingMode, args: { licenseId: string; periodStart?: Date }) {
  const license = await licenseOf(deps, tenantId, environment, args.licenseId);
  const period = periodContaining('monthly', args.periodStart ?? new Date(), license.timezone, license.billingAnchor);
  const { rows } = await deps.pool.query<{
    usage_type: string; event_name: string; unit_multiplier: string; unit_amount_decimal: string | null; quantity: string; live: string; credited: string; invoiced: string; metered: string;
  }>(
    `SELECT m.usage_type, m.event_name, m.unit_multiplier::text, m.unit_amount_decimal::text,
            coalesce((SELECT sum(quantity) FROM usage_rollups_hourly h WHERE h.tenant_id = $1 AND h.license_id = $2 AND h.usage_type = m.usage_type AND h.hour >= $4 AND h.hour < $5), 0)::text AS quantity,
            coalesce(sum(w.live_units), 0)::text AS live, coalesce(sum(w.credited_units), 0)::text AS credited, coalesce(sum(w.invoiced_units + w.stray_units), 0)::text AS invoiced,
            coalesce(sum(w.metered_quantity), 0)::text AS metered
     FROM billing_meters m
     LEFT JOIN billing_report_windows w ON w.tenant_id = m.tenant_id AND w.meter_id = m.id AND w.license_id = $2 AND w.hour >= $4 AND w.hour < $5
     WHERE m.tenant_id = $1 AND m.mode = $3::api_key_environment
     GROUP BY m.id ORDER BY m.usage_type`,
    [tenantId, license.id, license.environment, period.start, period.end],
  );
  const overages = await deps.prisma.usageOverage.findMany({
    where: { tenantId, licenseId: license.id, status: { in: ['APPROVED', 'BILLED'] }, periodStart: { lt: period.end }, periodEnd: { gt: period.start } },
  });
  const usageTypes = rows.map((r) => {
    const reported = BigInt(r.live) + BigInt(r.invoiced) - BigInt(r.credited);
    const metered = new Decimal(r.quantity).times(r.unit_multiplier);
    const pending = Decimal.max(0, metered.floor().minus(reported.toString()));
    const amountCents = r.unit_amount_decimal === null ? null : new Decimal(reported.toString()).plus(pending).times(r.unit_amount_decimal).toDecimalPlaces(0, Decimal.ROUND_HALF_UP).toNumber();
    const fees = overages.filter((o) => o.usageType === r.usage_type).reduce((sum, o) => sum + Number(o.feeCents), 0);
    return {
      usageType: r.usage_type,
      eventName: r.event_name,
      quantity: new Decimal(r.quantity).toFixed(),
      unitMultiplier: new Decimal(r.unit_multiplier).toFixed(),
      reportedUnits: reported.toString(),
      pendingUnits: pending.toFixed(),
      unitAmountDecimal: r.unit_amount_decimal === null ? null : new Decimal(r.unit_amount_decimal).toFixed(),
      amountCents,
      overageFeesCents: fees,
    };
  });
  const overageFeesCents = overages.reduce((sum, o) => sum + Number(o.feeCents), 0);
  return {
    licenseId: license.id,
    periodStart: period.start.toISOString(),
    periodEnd: period.end.toISOString(),
    usageTypes,
    overageFeesCents,
    estimatedTotalCents: usageTypes.reduce((sum, u) => sum + (u.amountCents ?? 0), 0) + overageFeesCents,
  };
}

const MAX_REPORT_DAYS = 93;

/** Per UTC day and mapped usage type: quantity rolled up, units reported, credited, invoiced, calls pending. */
export async function billingUsageReport(deps: Pick<BillingDeps, 'prisma' | 'pool'>, tenantId: string, environment: BillingMode, args: { licenseId: string; from: Date; to: Date }) {
  if (args.to <= args.from) throw new AppError('BAD_REQUEST', 'to: must be after from');
  if (args.to.getTime() - args.from.getTime() > MAX_REPORT_DAYS * DAY_MS) throw new AppError('BAD_REQUEST', `to: at most ${MAX_REPORT_DAYS} days after from`);
  const license = await licenseOf(deps, tenantId, environment, args.licenseId);
  const { rows } = await deps.pool.query<{ day: string; usage_type: string; quantity: string; live: string; credited: string; invoiced: string; pending: string }>(
    `WITH m AS (SELECT id, usage_type FROM billing_meters WHERE tenant_id = $1 AND mode = $3::api_key_environment),
     r AS (SELECT date_trunc('day', h.hour AT TIME ZONE 'UTC') AS day, h.usage_type, sum(h.quantity) AS quantity FROM usage_rollups_hourly h
           WHERE h.tenant_id = $1 AND h.license_id = $2 AND h.hour >= $4 AND h.hour < $5 AND h.usage_type IN (SELECT usage_type FROM m) GROUP BY 1, 2),
     w AS (SELECT date_trunc('day', w.hour AT TIME ZONE 'UTC') AS day, m.usage_type, sum(w.live_units) AS live, sum(w.credited_units) AS credited, sum(w.invoiced_units) AS invoiced,
             sum((SELECT count(*) FROM stripe_usage_reports o WHERE o.tenant_id = $1 AND o.window_id = w.id AND o.status = 'PENDING')) AS pending
           FROM billing_report_windows w JOIN m ON m.id = w.meter_id
           WHERE w.tenant_id = $1 AND w.license_id = $2 AND w.hour >= $4 AND w.hour < $5 GROUP BY 1, 2)
     SELECT to_char(coalesce(r.day, w.day), 'YYYY-MM-DD') AS day, coalesce(r.usage_type, w.usage_type) AS usage_type,
            coalesce(r.quantity, 0)::text AS quantity, coalesce(w.live, 0)::text AS live, coalesce(w.credited, 0)::text AS credited,
            coalesce(w.invoiced, 0)::text AS invoiced, coalesce(w.pending, 0)::text AS pending
     FROM r FULL JOIN w ON w.day = r.day AND w.usage_type = r.usage_type ORDER BY 1, 2`,
    [tenantId, license.id, license.environment, args.from, args.to],
  );
  return {
    licenseId: license.id,
    days: rows.map((r) => ({
      day: r.day,
      usageType: r.usage_type,
      quantity: new Decimal(r.quantity).toFixed(),
      reportedUnits: r.live,
      creditedUnits: r.credited,
      invoicedUnits: r.invoiced,
      pendingCalls: Number(r.pending),
    })),
  };
}

/** Reconciliation differences of a date range (UTC days), newest first, at most 1,000. */
export async function listReconciliation(deps: Pick<BillingDeps, 'prisma'>, tenantId: string, environment: BillingMode, args: { licenseId?: string; from: Date; to: Date }) {
  if (args.to < args.from) throw new AppError('BAD_REQUEST', 'to: must not be before from');
  if (args.to.getTime() - args.from.getTime() > 366 * DAY_MS) throw new AppError('BAD_REQUEST', 'to: at most 366 days after from');
  const rows = await deps.prisma.billingReconciliation.findMany({
    where: {
      tenantId,
      licenseId: { in: (await deps.prisma.license.findMany({ where: { tenantId, environment, ...(args.licenseId ? { id: args.licenseId } : {}) }, select: { id: true } })).map((l) => l.id) },
      day: { gte: args.from, lte: args.to },
    },
    orderBy: [{ day: 'desc' }, { licenseId: 'asc' }],
    take: 1000,
  });
  return {
    items: rows.map((r) => ({
      licenseId: r.licenseId,
      meterId: r.meterId,
      day: r.day.toISOString().slice(0, 10),
      stripeUnits: r.stripeUnits.toString(),
      ledgerUnits: r.ledgerUnits.toString(),
      rollupUnits: r.rollupUnits.toString(),
      difference: r.difference.toString(),
      healed: r.healed,
      checkedAt: r.checkedAt.toISOString(),
    })),
  };
}
