import { randomUUID } from 'node:crypto';
import { useFakeStripe, secretKey, webhookSecret, customerId, hourAgo, rollUp, ENCRYPTION_KEY } from '../helpers/billing';
import { useTestApp } from '../helpers/harness';
import { connectStripe } from '../../src/domain/billing/connections';
import { runUsageReport } from '../../src/domain/billing/run';
import { reconcileDay } from '../../src/domain/billing/reconcile';
import { loadEnv } from '../../src/env';
import { DAY_MS } from '../../src/lib/time';

/**
 * The billing API over HTTP: connecting (secrets sealed, never answered), customers and meters
 * created in Stripe, Stripe's signed webhooks (bad signature, replay, unknown tenant and
 * customer, old signatures, size limit), reconciliation finding and healing a difference, and
 * the read side.
 */

const stripe = useFakeStripe();
const app = useTestApp({ BILLING_WEBHOOK_MAX_BYTES: '4096' });

async function connected(mode: 'live' | 'test' = 'live', reportFromHoursAgo = 30) {
  const live = await app.createTenant();
  // A Stripe account of one mode is connected with a key of that environment.
  const owner = mode === 'live' ? live.ownerKey : (await app.call('apiKeys.create', { name: 'test owner', role: 'owner', environment: 'test' }, live.ownerKey)).data.key;
  const tenant = { ...live, ownerKey: owner as string, liveOwnerKey: live.ownerKey };
  const key = secretKey(mode);
  const whsec = webhookSecret();
  const res = await app.call('billing.connect', { secretKey: key, webhookSecret: whsec, reportFrom: hourAgo(reportFromHoursAgo).toISOString() }, tenant.ownerKey);
  expect(res.status).toBe(200);
  return { ...tenant, key, whsec, connection: res.data };
}

const hook = (tenantId: string) => `${app.baseUrl}/api/stripe/webhook/${tenantId}`;

describe('billing.connect', () => {
  it('connects an account of the key\'s own environment only: test licenses never reach a live account, nor live ones a test account', async () => {
    const t = await app.createTenant();
    const refused = await app.call('billing.connect', { secretKey: secretKey('test'), webhookSecret: webhookSecret() }, t.ownerKey);
    expect([refused.status, refused.body.error?.data.issues?.[0]?.path]).toEqual([400, ['secretKey']]);
    expect(await app.prisma.billingConnection.count({ where: { tenantId: t.tenantId } })).toBe(0);
    const test = await connected('test');
    const health = await app.call('billing.health', {}, test.ownerKey, { method: 'GET' });
    expect(health.data.connections.map((c: { mode: string }) => c.mode)).toEqual(['test']);
    // the live side of the same tenant has no account connected and sees none
    const liveHealth = await app.call('billing.health', {}, test.liveOwnerKey, { method: 'GET' });
    expect([liveHealth.status, liveHealth.data.connected, liveHealth.data.connections]).toEqual([200, false, []]);
    const other = await app.call('billing.disconnect', { mode: 'live' }, test.ownerKey);
    expect([other.status, other.body.error?.data.issues?.[0]?.path]).toEqual([400, ['mode']]);
    expect(await app.prisma.billingConnection.count({ where: { tenantId: test.tenantId } })).toBe(1);
  });

  it('stores the secrets sealed and never answers them', async () => {
    const t = await connected('test');
    expect(t.connection).toMatchObject({ mode: 'test', keyHint: t.key.slice(-4), currency: 'usd', webhookPath: `/api/stripe/webhook/${t.tenantId}` });
    expect(JSON.stringify(t.connection)).not.toContain(t.key);
    const row = await app.prisma.billingConnection.findFirstOrThrow({ where: { tenantId: t.tenantId } });
    expect(row.secretKeyCipher).not.toContain(t.key.slice(8));
    expect(row.webhookSecretCipher).not.toContain(t.whsec.slice(6));
    const health = await app.call('billing.health', {}, t.ownerKey, { method: 'GET' });
    expect(health.status).toBe(200);
    expect(JSON.stringify(health.body)).not.toContain(t.key);
    const audit = await app.prisma.auditLog.findMany({ where: { tenantId: t.tenantId, action: 'billing.connect' } });
    expect(audit).toHaveLength(1);
    expect(JSON.stringify(audit)).not.toContain(t.key);
  });

  it('refuses bad keys, and connecting when the server has no encryption key', async () => {
    const t = await app.createTenant();
    for (const secret of ['pk_test_abcdefgh', 'sk_prod_abcdefgh', 'sk_test_short', `sk_test_${'a'.repeat(248)}`]) {
      const res = await app.call('billing.connect', { secretKey: secret, webhookSecret: webhookSecret() }, t.ownerKey);
      expect(res.status).toBe(400);
    }
    expect((await app.call('billing.connect', { secretKey: `sk_live_${'a'.repeat(247)}`, webhookSecret: webhookSecret() }, t.ownerKey)).status).toBe(200);
    const old = await app.call('billing.connect', { secretKey: secretKey(), webhookSecret: webhookSecret(), reportFrom: new Date(Date.now() - 35 * DAY_MS).toISOString() }, t.ownerKey);
    expect(old.status).toBe(400);
    await expect(connectStripe({ ...app.services.billing, box: null }, t.tenantId, 'live', { secretKey: secretKey(), webhookSecret: webhookSecret() })).rejects.toMatchObject({ code: 'BAD_REQUEST' });
    expect(() => loadEnv({ BILLING_ENCRYPTION_KEY: 'not-a-key' })).toThrow(/BILLING_ENCRYPTION_KEY/);
    expect(() => loadEnv({ BILLING_ENCRYPTION_KEY: 'a'.repeat(63) })).toThrow(/BILLING_ENCRYPTION_KEY/);
    expect(loadEnv({ BILLING_ENCRYPTION_KEY: ENCRYPTION_KEY }).BILLING_ENCRYPTION_KEY).toBe(ENCRYPTION_KEY);
    expect(loadEnv({ BILLING_ENCRYPTION_KEY: Buffer.alloc(32, 7).toString('base64') }).BILLING_ENCRYPTION_KEY).toBeDefined();
  });

  it('creates customers and meters in Stripe, reads the unit price, and links them', async () => {
    const t = await connected();
    const license = await app.createLicense(t.ownerKey, { name: 'Acme' });
    const created = await app.call('billing.createCustomer', { licenseId: license.id, email: 'billing@acme.test' }, t.ownerKey);
    expect(created.status).toBe(200);
    expect(stripe.fake.account(t.key).customers.get(created.data.stripeCustomerId)).toMatchObject({ name: 'Acme', metadata: { tally_license_id: license.id } });
    expect((await app.call('licenses.get', { id: license.id }, t.ownerKey, { method: 'GET' })).data.stripeCustomerId).toBe(created.data.stripeCustomerId);
    expect((await app.call('billing.createCustomer', { licenseId: license.id }, t.ownerKey)).status).toBe(409);

    stripe.fake.addPrice(t.key, { id: 'price_calls', unitAmountDecimal: '0.25' });
    const meter = await app.call('billing.meters.upsert', { usageType: 'api_call', eventName: 'calls', createMeter: true, stripePriceId: 'price_calls' }, t.ownerKey);
    expect(meter.status).toBe(200);
    expect(meter.data).toMatchObject({ mode: 'live', unitAmountDecimal: '0.25', unitMultiplier: '1', stripeMeterId: expect.stringMatching(/^mtr_/) });
    expect(stripe.fake.account(t.key).meters.get(meter.data.stripeMeterId)).toMatchObject({ event_name: 'calls' });
    const missing = await app.call('billing.meters.upsert', { usageType: 'x', eventName: 'x', stripePriceId: 'price_nope' }, t.ownerKey);
    expect([missing.status, missing.body.error?.message]).toEqual([400, expect.stringContaining('Stripe refused')]);
    const bad = await app.call('billing.meters.upsert', { usageType: 'x', eventName: 'x', unitMultiplier: '0' }, t.ownerKey);
    expect(bad.status).toBe(400);
    const list = await app.call('billing.meters.list', {}, t.ownerKey, { method: 'GET' });
    expect(list.data.items.map((m: { usageType: string }) => m.usageType)).toEqual(['api_call']);
    // Not connected in test mode: a test license's customer cannot be made.
    const testLicense = await app.createLicense(t.ownerKey, { environment: 'test' }).catch(() => null);
    if (testLicense) expect((await app.call('billing.createCustomer', { licenseId: testLicense.id }, t.ownerKey)).status).toBe(409);
  });
});

describe('POST /api/stripe/webhook/:tenantId', () => {
  it('refuses unsigned, wrongly signed, stale and oversized bodies, and unknown tenants, writing nothing', async () => {
    const t = await connected();
    const event = { id: 'evt_1', type: 'customer.subscription.updated', data: { object: { customer: 'cus_x', status: 'active', items: { data: [] } } } };
    const wrong = await stripe.fake.sendWebhook(hook(t.tenantId), webhookSecret(), event);
    expect([wrong.status, wrong.body]).toEqual([400, expect.stringContaining('signature verification failed')]);
    const stale = await stripe.fake.sendWebhook(hook(t.tenantId), t.whsec, event, { timestamp: Math.floor(Date.now() / 1000) - 301 });
    expect(stale.status).toBe(400);
    const unsigned = await fetch(hook(t.tenantId), { method: 'POST', body: JSON.stringify(event) });
    expect(unsigned.status).toBe(400);
    const unknown = await stripe.fake.sendWebhook(`${app.baseUrl}/api/stripe/webhook/00000000-0000-4000-8000-000000000000`, t.whsec, event);
    expect(unknown.status).toBe(400);
    expect((await stripe.fake.sendWebhook(`${app.baseUrl}/api/stripe/webhook/nope`, t.whsec, event)).status).toBe(400);
    const big = await stripe.fake.sendWebhook(hook(t.tenantId), t.whsec, { ...event, padding: 'x'.repeat(4096) });
    expect(big.status).toBe(413);
    expect(await app.prisma.stripeWebhookEvent.count({ where: { tenantId: t.tenantId } })).toBe(0);
    const justFits = await stripe.fake.sendWebhook(hook(t.tenantId), t.whsec, { ...event, padding: 'x'.repeat(3500) });
    expect(justFits.status).toBe(200);
    expect((await fetch(hook(t.tenantId))).status).toBe(405);
  });

  it('maps subscriptions to plan and status once per event; unknown customers change nothing', async () => {
    const t = await connected();
    const customer = customerId();
    const license = await app.createLicense(t.ownerKey, { stripeCustomerId: customer, plan: 'starter' });
    expect((await app.call('billing.planPrices.set', { stripePriceId: 'price_pro', plan: 'professional' }, t.ownerKey)).status).toBe(200);
    const track = () => app.call('usage.trackEvent', { licenseId: license.id, usageType: 'api_call' }, t.ownerKey);
    expect((await track()).status).toBe(200); // the license is cached now
    const event = { id: 'evt_sub_1', type: 'customer.subscription.updated', data: { object: { customer, status: 'past_due', items: { data: [{ price: { id: 'price_pro' } }] } } } };
    const first = await stripe.fake.sendWebhook(hook(t.tenantId), t.whsec, event);
    expect([first.status, JSON.parse(first.body)]).toEqual([200, expect.objectContaining({ outcome: 'license_updated', duplicate: false })]);
    const after = await app.call('licenses.get', { id: license.id }, t.ownerKey, { method: 'GET' });
    expect([after.data.plan, after.data.status]).toEqual(['professional', 'SUSPENDED']);
    // the webhook dropped the cached license: its events are refused at once
    const refused = await track();
    expect([refused.status, refused.body.error?.message]).toEqual([422, expect.stringMatching(/SUSPENDED/)]);

    await app.call('licenses.setStatus', { id: license.id, status: 'ACTIVE' }, t.ownerKey);
    const replay = await stripe.fake.sendWebhook(hook(t.tenantId), t.whsec, event);
    expect(JSON.parse(replay.body)).toMatchObject({ duplicate: true });
    expect((await app.call('licenses.get', { id: license.id }, t.ownerKey, { method: 'GET' })).data.status).toBe('ACTIVE');

    const stranger = await stripe.fake.sendWebhook(hook(t.tenantId), t.whsec, { ...event, id: 'evt_sub_2', data: { object: { ...event.data.object, customer: 'cus_unknown' } } });
    expect(JSON.parse(stranger.body)).toMatchObject({ outcome: 'unknown_customer' });
    expect((await app.call('licenses.get', { id: license.id }, t.ownerKey, { method: 'GET' })).data).toMatchObject({ plan: 'professional', status: 'ACTIVE' });

    const deleted = await stripe.fake.sendWebhook(hook(t.tenantId), t.whsec, { id: 'evt_sub_3', type: 'customer.subscription.deleted', data: { object: { customer, status: 'canceled', items: { data: [] } } } });
    expect(deleted.status).toBe(200);
    expect((await app.call('licenses.get', { id: license.id }, t.ownerKey, { method: 'GET' })).data.status).toBe('EXPIRED');
    expect((await track()).status).toBe(422);
  });

  it('records which invoice took windows and overages, and surfaces meter error reports in health', async () => {
    const t = await connected();
    const customer = customerId();
    const license = await app.createLicense(t.ownerKey, { stripeCustomerId: customer });
    await app.call('billing.meters.upsert', { usageType: 'api_call', eventName: 'calls', createMeter: true, unitAmountDecimal: '1' }, t.ownerKey);
    const h = hourAgo(3);
    await app.call('usage.trackEvents', { events: [{ licenseId: license.id, usageType: 'api_call', quantity: 2, occurredAt: new Date(h.getTime() + 60_000).toISOString() }] }, t.ownerKey);
    await rollUp(app, h, hourAgo(2));
    await runUsageReport(app.services.billing, { tenantId: t.tenantId });
    const invoice = {
      id: 'evt_inv_1',
      type: 'invoice.finalized',
      data: { object: { id: 'in_123', customer, period_start: Math.floor(h.getTime() / 1000) - 3600, period_end: Math.floor(Date.now() / 1000), lines: { data: [] } } },
    };
    expect(JSON.parse((await stripe.fake.sendWebhook(hook(t.tenantId), t.whsec, invoice)).body)).toMatchObject({ outcome: 'invoice_recorded', detail: { windows: 1 } });
    expect((await app.prisma.billingReportWindow.findFirstOrThrow({ where: { tenantId: t.tenantId } })).stripeInvoiceId).toBe('in_123');
    // a late event of that hour: a meter event now would fall in a period already billed, so it is an invoice item
    await app.call('usage.trackEvents', { events: [{ licenseId: license.id, usageType: 'api_call', quantity: 3, occurredAt: new Date(h.getTime() + 120_000).toISOString() }] }, t.ownerKey);
    await rollUp(app, h, hourAgo(2));
    await runUsageReport(app.services.billing, { tenantId: t.tenantId });
    expect(stripe.fake.summary(t.key, { customer })).toBe(2);
    expect(stripe.fake.invoiceItems(t.key).map((i) => [i.customer, i.amount])).toEqual([[customer, 3]]);

    const meterError = { id: 'evt_me_1', type: 'billing.meter.error_report_triggered', data: { object: { meter: 'mtr_1', reason: { error_count: 3, error_types: [{ code: 'no_meter' }] } } } };
    await stripe.fake.sendWebhook(hook(t.tenantId), t.whsec, meterError);
    const health = await app.call('billing.health', {}, t.ownerKey, { method: 'GET' });
    expect(health.data).toMatchObject({ connected: true, backlog: 0, failedCount: 0, meterErrorReports: { count: 1 } });
    expect(health.data.lastReportAt).not.toBeNull();
  });
});

describe('billing.reconcile and the read side', () => {
  it("billing.health's lastReconciliationAt is the tenant's own account's last reconciliation, per environment, not the platform job's", async () => {
    const t = await connected('live');
    const other = await connected('live');
    const lastOf = async (key: string) => {
      const health = await app.call('billing.health', {}, key, { method: 'GET' });
      expect(health.status).toBe(200);
      return health.data.lastReconciliationAt as string | null;
    };
    // the platform-wide job completed (for other tenants): not this tenant's reconciliation
    await app.prisma.jobRun.create({
      data: { jobId: `billing-reconcile-${randomUUID()}`, name: 'billing.reconcile', status: 'completed', finishedAt: new Date(), window: '2026-01-01' },
    });
    expect(await lastOf(t.ownerKey)).toBeNull();

    const day = new Date(Math.floor((Date.now() - DAY_MS) / DAY_MS) * DAY_MS);
    const startedAt = Date.now();
    await reconcileDay(app.services.billing, day, { tenantId: other.tenantId });
    expect(await lastOf(t.ownerKey)).toBeNull();
    const otherAt = await lastOf(other.ownerKey);
    expect(Date.parse(otherAt!)).toBeGreaterThanOrEqual(startedAt - 1_000);

    await reconcileDay(app.services.billing, day, { tenantId: t.tenantId });
    const liveAt = await lastOf(t.ownerKey);
    expect(Date.parse(liveAt!)).toBeGreaterThanOrEqual(Date.parse(otherAt!));
    // the tenant's test account, connected after that run, has never been reconciled
    const testOwner = (await app.call('apiKeys.create', { name: 'test owner', role: 'owner', environment: 'test' }, t.ownerKey)).data.key as string;
    expect((await app.call('billing.connect', { secretKey: secretKey('test'), webhookSecret: webhookSecret() }, testOwner)).status).toBe(200);
    expect(await lastOf(testOwner)).toBeNull();
    expect(await lastOf(t.ownerKey)).toBe(liveAt);
    await reconcileDay(app.services.billing, day, { tenantId: t.tenantId });
    expect(await lastOf(testOwner)).not.toBeNull();
  });

  it('finds a day where Stripe and the ledger differ, counts it, heals it, then finds none', async () => {
    // Reported from before yesterday's start (at most 48 h ago): with 30 h, yesterday's 10:00 and
    // 11:00 UTC fell before it whenever the test ran after 16:00 UTC.
    const t = await connected('live', 49);
    const customer = customerId();
    const license = await app.createLicense(t.ownerKey, { stripeCustomerId: customer });
    await app.call('billing.meters.upsert', { usageType: 'api_call', eventName: 'recon', createMeter: true, unitAmountDecimal: '10' }, t.ownerKey);
    const day = new Date(Math.floor((Date.now() - DAY_MS) / DAY_MS) * DAY_MS);
    const hours = [new Date(day.getTime() + 10 * 3_600_000), new Date(day.getTime() + 11 * 3_600_000)];
    await app.call('usage.trackEvents', { events: hours.map((h) => ({ licenseId: license.id, usageType: 'api_call', quantity: 5, occurredAt: new Date(h.getTime() + 60_000).toISOString() })) }, t.ownerKey);
    await rollUp(app, day, new Date(day.getTime() + DAY_MS));
    await runUsageReport(app.services.billing, { tenantId: t.tenantId });
    // Stripe loses one hour's event, and one event arrives Tally never decided.
    const events = [...stripe.fake.account(t.key).meterEvents.values()];
    events[0]!.cancelled = true;
    stripe.fake.account(t.key).meterEvents.set('stray', { ...events[1]!, identifier: 'stray', value: 2, cancelled: false });

    const metricsBefore = await app.services.metrics.registry.getSingleMetricAsString('tally_billing_reconciliation_differences_total');
    const found = await reconcileDay(app.services.billing, day, { tenantId: t.tenantId });
    expect(found).toMatchObject({ checked: 1, differences: 1, healCalls: 2 });
    expect(await app.services.metrics.registry.getSingleMetricAsString('tally_billing_reconciliation_differences_total')).not.toBe(metricsBefore);
    const listed = await app.call('billing.reconciliation', { licenseId: license.id, from: day.toISOString().slice(0, 10), to: day.toISOString().slice(0, 10) }, t.ownerKey, { method: 'GET' });
    expect(listed.data.items).toEqual([expect.objectContaining({ stripeUnits: '7', ledgerUnits: '10', difference: '-3', healed: false })]);
    // Reconciling the same state again plans nothing new.
    expect(await reconcileDay(app.services.billing, day, { tenantId: t.tenantId })).toMatchObject({ healCalls: 0 });

    await runUsageReport(app.services.billing, { tenantId: t.tenantId });
    expect(stripe.fake.summary(t.key, { customer })).toBe(12); // 5 resent + the stray 2 still counted by Stripe…
    expect(stripe.fake.invoiceItems(t.key)).toEqual([expect.objectContaining({ amount: -20 })]); // …and credited
    expect(await reconcileDay(app.services.billing, day, { tenantId: t.tenantId })).toMatchObject({ checked: 1, differences: 0 });
    const healed = await app.call('billing.reconciliation', { from: day.toISOString().slice(0, 10), to: day.toISOString().slice(0, 10) }, t.ownerKey, { method: 'GET' });
    expect(healed.data.items).toEqual([expect.objectContaining({ difference: '0', healed: true })]);

    const summary = await app.call('billing.usageSummary', { licenseId: license.id, periodStart: day.toISOString() }, t.ownerKey, { method: 'GET' });
    expect(summary.status).toBe(200);
    const report = await app.call('billing.usageReport', { licenseId: license.id, from: day.toISOString(), to: new Date(day.getTime() + DAY_MS).toISOString() }, t.ownerKey, { method: 'GET' });
    expect(report.data.days).toEqual([expect.objectContaining({ usageType: 'api_call', quantity: '10', reportedUnits: '10', creditedUnits: '2' })]);
    const tooLong = await app.call('billing.usageReport', { licenseId: license.id, from: day.toISOString(), to: new Date(day.getTime() + 94 * DAY_MS).toISOString() }, t.ownerKey, { method: 'GET' });
    expect(tooLong.status).toBe(400);
    const justFits = await app.call('billing.usageReport', { licenseId: license.id, from: day.toISOString(), to: new Date(day.getTime() + 93 * DAY_MS).toISOString() }, t.ownerKey, { method: 'GET' });
    expect(justFits.status).toBe(200);
  });
});
