import { randomUUID } from 'node:crypto';
import { useFakeStripe, secretKey, webhookSecret, customerId, hourAgo, rollUp } from '../helpers/billing';
import { useTestApp } from '../helpers/harness';
import { connectStripe, disconnectStripe } from '../../src/domain/billing/connections';
import { upsertMeter } from '../../src/domain/billing/links';
import { runUsageReport } from '../../src/domain/billing/run';
import { HOUR_MS, DAY_MS } from '../../src/lib/time';

/**
 * Usage reporting end to end against the fake Stripe: what is rolled up reaches Stripe once
 * per (customer, meter, hour); late events add a revision; decreases cancel and resend inside
 * 24 h and become credits after; fractions carry; faults change nothing; overage fees become
 * invoice items once; one tenant's usage never reaches another's account.
 */

const stripe = useFakeStripe();
const app = useTestApp();

const billing = () => app.services.billing;
const totalsOf = (key: string) => Object.fromEntries(stripe.fake.hourlyTotals(key));

async function track(ownerKey: string, events: Record<string, unknown>[]) {
  const res = await app.call('usage.trackEvents', { events }, ownerKey);
  if (res.status !== 200 || res.data.rejected.length) throw new Error(JSON.stringify(res.body));
}

async function setup(options: { mode?: 'live' | 'test' } = {}) {
  const tenant = await app.createTenant();
  const key = secretKey(options.mode ?? 'live');
  const customer = customerId();
  const license = await app.createLicense(tenant.ownerKey, { stripeCustomerId: customer });
  await connectStripe(billing(), tenant.tenantId, options.mode ?? 'live', { secretKey: key, webhookSecret: webhookSecret(), reportFrom: hourAgo(30) });
  const meter = await upsertMeter(billing(), tenant.tenantId, options.mode ?? 'live', { usageType: 'api_call', eventName: `api_calls_${randomUUID().slice(0, 8)}`, createMeter: true, unitAmountDecimal: '2.5' });
  return { ...tenant, key, customer, license, meter };
}

const at = (hour: Date, minutes = 10) => new Date(hour.getTime() + minutes * 60_000).toISOString();
const hourKey = (customer: string, eventName: string, hour: Date) => `${customer}|${eventName}|${hour.getTime() / 1000}`;

describe('billing.usage.report', () => {
  it('reports each rolled-up hour once, then late events as a new revision', async () => {
    const s = await setup();
    const [h5, h4] = [hourAgo(5), hourAgo(4)];
    await track(s.ownerKey, [
      { licenseId: s.license.id, usageType: 'api_call', quantity: 3, occurredAt: at(h5) },
      { licenseId: s.license.id, usageType: 'api_call', quantity: 2, occurredAt: at(h4) },
      { licenseId: s.license.id, usageType: 'api_call', quantity: 2, occurredAt: at(h4, 20) },
      { licenseId: s.license.id, usageType: 'other', quantity: 9, occurredAt: at(h4) },
    ]);
    await rollUp(app, hourAgo(6), hourAgo(0));
    const first = await runUsageReport(billing(), { tenantId: s.tenantId });
    expect(first).toMatchObject({ windows: 2, sent: 2, failed: 0, pending: 0 });
    expect(totalsOf(s.key)).toEqual({ [hourKey(s.customer, s.meter.eventName, h5)]: 3, [hourKey(s.customer, s.meter.eventName, h4)]: 4 });

    const calls = stripe.fake.counters.requests;
    expect(await runUsageReport(billing(), { tenantId: s.tenantId })).toMatchObject({ windows: 0, sent: 0 });
    expect(stripe.fake.counters.requests).toBe(calls);

    await track(s.ownerKey, [{ licenseId: s.license.id, usageType: 'api_call', quantity: 4, occurredAt: at(h5, 30) }]);
    await rollUp(app, h5, h4);
    expect(await runUsageReport(billing(), { tenantId: s.tenantId })).toMatchObject({ windows: 1, sent: 1 });
    expect(totalsOf(s.key)[hourKey(s.customer, s.meter.eventName, h5)]).toBe(7);
    const journal = await app.prisma.stripeUsageReport.findMany({ where: { tenantId: s.tenantId, hour: h5 }, orderBy: { revision: 'asc' } });
    expect(journal.map((r) => [r.kind, r.reason, r.revision, Number(r.units), r.status])).toEqual([
      ['meter_event', 'initial', 1, 3, 'SENT'],
      ['meter_event', 'increase', 2, 4, 'SENT'],
    ]);
  });

  it('a decrease inside 24 h cancels and resends; after 24 h it is a credit at the unit price', async () => {
    const s = await setup();
    const h3 = hourAgo(3);
    await track(s.ownerKey, [
      { licenseId: s.license.id, usageType: 'api_call', quantity: 5, occurredAt: at(h3), idempotencyKey: 'keep' },
      { licenseId: s.license.id, usageType: 'api_call', quantity: 3, occurredAt: at(h3, 20), idempotencyKey: 'drop-1' },
      { licenseId: s.license.id, usageType: 'api_call', quantity: 1, occurredAt: at(h3, 30), idempotencyKey: 'drop-2' },
    ]);
    await rollUp(app, h3, hourAgo(2));
    await runUsageReport(billing(), { tenantId: s.tenantId });
    const k = hourKey(s.customer, s.meter.eventName, h3);
    expect(totalsOf(s.key)[k]).toBe(9);

    // A recalculation lowers the hour (the raw event is gone): inside 24 h, cancel + resend.
    const drop = async (idem: string) => {
      const ev = await app.services.db.pool.query(`SELECT event_id FROM idempotency_keys WHERE tenant_id = $1 AND key = $2`, [s.tenantId, idem]);
      await app.services.db.pool.query(`DELETE FROM usage_events WHERE tenant_id = $1 AND id = $2`, [s.tenantId, ev.rows[0].event_id]);
      await rollUp(app, h3, hourAgo(2));
    };
    await drop('drop-1');
    const outcome = await runUsageReport(billing(), { tenantId: s.tenantId });
    expect(outcome).toMatchObject({ failed: 0, pending: 0 });
    expect(totalsOf(s.key)[k]).toBe(6);
    expect(stripe.fake.invoiceItems(s.key)).toEqual([]);
    const reasons = (await app.prisma.stripeUsageReport.findMany({ where: { tenantId: s.tenantId }, orderBy: { createdAt: 'asc' } })).map((r) => r.reason);
    expect(reasons).toEqual(['initial', 'decrease_cancel', 'decrease_resend']);

    // 25 hours later (for Stripe and for the ledger's record of when it sent): only a credit can take it back.
    await app.services.db.pool.query(`UPDATE stripe_usage_reports SET sent_at = sent_at - interval '25 hours' WHERE tenant_id = $1`, [s.tenantId]);
    stripe.fake.clockOffsetMs = 25 * HOUR_MS;
    try {
      await drop('drop-2');
      expect(await runUsageReport(billing(), { tenantId: s.tenantId })).toMatchObject({ failed: 0, pending: 0 });
    } finally {
      stripe.fake.clockOffsetMs = 0;
    }
    expect(totalsOf(s.key)[k]).toBe(6);
    const items = stripe.fake.invoiceItems(s.key);
    expect(items).toHaveLength(1);
    expect(items[0]).toMatchObject({ customer: s.customer, amount: -3, currency: 'usd' }); // 1 unit × 2.5 cents, rounded half up
    const window = await app.prisma.billingReportWindow.findFirstOrThrow({ where: { tenantId: s.tenantId, hour: h3 } });
    expect([Number(window.liveUnits) - Number(window.creditedUnits), window.meteredQuantity.toString()]).toEqual([5, '5']);
  });

  it('carries fractions so the units billed sum to the units metered', async () => {
    const s = await setup();
    const meter = await upsertMeter(billing(), s.tenantId, 'live', { usageType: 'tokens', eventName: `ktokens_${randomUUID().slice(0, 8)}`, unitMultiplier: '0.001', createMeter: true });
    const hours = [hourAgo(8), hourAgo(7), hourAgo(6)];
    await track(s.ownerKey, hours.map((h, i) => ({ licenseId: s.license.id, usageType: 'tokens', quantity: [600, 700, 800.5][i], occurredAt: at(h) })));
    await rollUp(app, hourAgo(9), hourAgo(5));
    await runUsageReport(billing(), { tenantId: s.tenantId });
    expect(stripe.fake.summary(s.key, { eventName: meter.eventName })).toBe(2); // floor(2.1005)
    const stream = await app.prisma.billingStream.findFirstOrThrow({ where: { tenantId: s.tenantId, meterId: meter.id } });
    expect(stream.carryUnits.toString()).toBe('0.1005');
  });

  it('stays exact through 500s, timeouts after commit and 429 bursts', async () => {
    const s = await setup();
    const hours = Array.from({ length: 12 }, (_, i) => hourAgo(20 - i));
    await track(s.ownerKey, hours.map((h, i) => ({ licenseId: s.license.id, usageType: 'api_call', quantity: i + 1, occurredAt: at(h) })));
    await rollUp(app, hourAgo(21), hourAgo(5));
    stripe.fake.resetCounters();
    stripe.fake.setFaults({ errorRate: 0.2, timeoutRate: 0.1, timeoutHoldMs: 800, burstRate: 0.05, burstLength: 3, retryAfterSeconds: 0 }, 7);
    try {
      const outcome = await runUsageReport(billing(), { tenantId: s.tenantId });
      expect(outcome).toMatchObject({ failed: 0, pending: 0 });
    } finally {
      stripe.fake.clearFaults();
    }
    expect(stripe.fake.summary(s.key, { customer: s.customer })).toBe(78);
    for (const [i, h] of hours.entries()) expect(totalsOf(s.key)[hourKey(s.customer, s.meter.eventName, h)]).toBe(i + 1);
    const f = stripe.fake.counters.faults;
    expect(f.errors + f.timeouts + f.rateLimited).toBeGreaterThan(0);
  });

  it('bills a final approved overage once, marks it BILLED, and never a waived one', async () => {
    const s = await setup();
    const threshold = await app.prisma.usageThreshold.create({ data: { tenantId: s.tenantId, licenseId: s.license.id, usageType: 'api_call', periodType: 'monthly', limitQuantity: 10, allowOverage: true, overageRateCents: 5 } });
    const base = { tenantId: s.tenantId, licenseId: s.license.id, thresholdId: threshold.id, usageType: 'api_call', periodType: 'monthly' as const, quantity: 4, rateCents: 5, feeCents: 20n, final: true };
    const approved = await app.prisma.usageOverage.create({ data: { ...base, periodStart: new Date(Date.now() - 40 * DAY_MS), periodEnd: new Date(Date.now() - 10 * DAY_MS), status: 'APPROVED' } });
    await app.prisma.usageOverage.create({ data: { ...base, periodStart: new Date(Date.now() - 70 * DAY_MS), periodEnd: new Date(Date.now() - 40 * DAY_MS), status: 'WAIVED' } });
    await runUsageReport(billing(), { tenantId: s.tenantId });
    await runUsageReport(billing(), { tenantId: s.tenantId });
    const items = stripe.fake.invoiceItems(s.key);
    expect(items).toHaveLength(1);
    expect(items[0]).toMatchObject({ customer: s.customer, amount: 20, currency: 'usd', metadata: { tally_overage_id: approved.id } });
    const billed = await app.prisma.usageOverage.findUniqueOrThrow({ where: { id: approved.id } });
    expect([billed.status, billed.stripeInvoiceItemId]).toEqual(['BILLED', items[0]!.id]);
  });

  it("keeps each tenant's usage in its own account, and test licenses out of a live account", async () => {
    const a = await setup();
    const b = await setup();
    const testLicense = await app.createLicense(a.ownerKey, { stripeCustomerId: customerId(), environment: 'test' }).catch(() => null);
    const h = hourAgo(2);
    await track(a.ownerKey, [{ licenseId: a.license.id, usageType: 'api_call', quantity: 11, occurredAt: at(h) }]);
    await track(b.ownerKey, [{ licenseId: b.license.id, usageType: 'api_call', quantity: 13, occurredAt: at(h) }]);
    if (testLicense) {
      await app.services.db.pool.query(`INSERT INTO usage_rollups_hourly (tenant_id, license_id, usage_type, hour, quantity, event_count, max_quantity, distinct_users, error_count, duration_ms_sum)
        VALUES ($1, $2, 'api_call', $3, 17, 1, 17, 0, 0, 0)`, [a.tenantId, testLicense.id, hourAgo(3)]);
    }
    await rollUp(app, h, hourAgo(1));
    await runUsageReport(billing(), {});
    expect(stripe.fake.summary(a.key, {})).toBe(11);
    expect(stripe.fake.summary(b.key, {})).toBe(13);

    await disconnectStripe(billing(), a.tenantId, 'live');
    await track(a.ownerKey, [{ licenseId: a.license.id, usageType: 'api_call', quantity: 1, occurredAt: at(h, 40) }]);
    await rollUp(app, h, hourAgo(1));
    expect(await runUsageReport(billing(), { tenantId: a.tenantId })).toMatchObject({ connections: 0, sent: 0 });
    expect(stripe.fake.summary(a.key, {})).toBe(11);
  });
});
