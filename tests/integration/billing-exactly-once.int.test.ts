import { spawn } from 'node:child_process';
import path from 'node:path';
import fc from 'fast-check';
import { useFakeStripe, secretKey, webhookSecret, customerId, hourAgo, rollUp, rollupTotals } from '../helpers/billing';
import { useTestApp } from '../helpers/harness';
import { connectStripe } from '../../src/domain/billing/connections';
import { upsertMeter } from '../../src/domain/billing/links';
import { runUsageReport } from '../../src/domain/billing/run';

/**
 * The promise: every quantity Tally rolled up is in Stripe exactly once. For random events,
 * late events, recalculations that lower hours, and fault schedules (500s, timeouts after
 * commit, 429 bursts), once the jobs have run to quiescence Stripe's total per (customer,
 * meter, hour) equals Tally's rollup, no invoice item exists twice, and every ledger call is
 * settled. And a worker SIGKILLed in the middle of a run leaves nothing a restart cannot finish exactly.
 */

const stripe = useFakeStripe();
const app = useTestApp();

async function tenantWithBilling(licenses: number) {
  const tenant = await app.createTenant();
  const key = secretKey();
  const customers = Array.from({ length: licenses }, () => customerId());
  const ids: string[] = [];
  for (const c of customers) ids.push((await app.createLicense(tenant.ownerKey, { stripeCustomerId: c })).id);
  await connectStripe(app.services.billing, tenant.tenantId, 'live', { secretKey: key, webhookSecret: webhookSecret(), reportFrom: hourAgo(30) });
  await upsertMeter(app.services.billing, tenant.tenantId, 'live', { usageType: 'api_call', eventName: 'api_call', createMeter: true, unitAmountDecimal: '1' });
  return { ...tenant, key, customers, licenses: ids };
}

async function track(ownerKey: string, events: Record<string, unknown>[]) {
  for (let i = 0; i < events.length; i += 1000) {
    const res = await app.call('usage.trackEvents', { events: events.slice(i, i + 1000) }, ownerKey);
    if (res.status !== 200 || res.data.rejected.length) throw new Error(JSON.stringify(res.body).slice(0, 500));
  }
}

/** Stripe's live totals against Tally's rollups, in Tally's key format. */
async function expectExact(t: { tenantId: string; key: string }) {
  const tally = await rollupTotals(app, t.tenantId);
  const stripeTotals = new Map<string, string>();
  for (const [k, v] of stripe.fake.hourlyTotals(t.key)) if (v !== 0) stripeTotals.set(k.replace('|api_call|', '|api_call|'), String(v));
  expect(Object.fromEntries(stripeTotals)).toEqual(Object.fromEntries(tally));
  const unsettled = await app.prisma.stripeUsageReport.count({ where: { tenantId: t.tenantId, status: { not: 'SENT' } } });
  expect(unsettled).toBe(0);
  const items = stripe.fake.invoiceItems(t.key);
  expect(new Set(items.map((i) => i.idempotencyKey)).size).toBe(items.length);
}

async function toQuiescence(tenantId: string) {
  for (let i = 0; i < 5; i++) {
    const outcome = await runUsageReport(app.services.billing, { tenantId });
    if (outcome.windows === 0 && outcome.pending === 0 && outcome.sent === 0) return;
  }
  throw new Error('billing did not settle');
}

const stepArb = fc.record({
  events: fc.array(fc.record({ license: fc.nat(1), hoursAgo: fc.integer({ min: 1, max: 8 }), quantity: fc.integer({ min: 0, max: 20 }) }), { maxLength: 12 }),
  dropShare: fc.constantFrom(0, 0, 0.3),
  faults: fc.record({
    errorRate: fc.constantFrom(0, 0.2),
    timeoutRate: fc.constantFrom(0, 0.1),
    burstRate: fc.constantFrom(0, 0.05),
  }),
  seed: fc.nat(),
});

it('Stripe equals the rollups per (customer, meter, hour) after any events, corrections and faults', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(stepArb, { minLength: 1, maxLength: 3 }), async (steps) => {
      const t = await tenantWithBilling(2);
      let n = 0;
      for (const step of steps) {
        await track(t.ownerKey, step.events.map((e) => ({
          licenseId: t.licenses[e.license], usageType: 'api_call', quantity: e.quantity,
          occurredAt: new Date(hourAgo(e.hoursAgo).getTime() + 60_000 + (n++ % 50) * 1000).toISOString(),
        })));
        if (step.dropShare > 0) {
          // A recalculation that lowers hours: some raw events are gone.
          await app.services.db.pool.query(`DELETE FROM usage_events WHERE tenant_id = $1 AND random() < $2`, [t.tenantId, step.dropShare]);
        }
        await rollUp(app, hourAgo(9), hourAgo(0));
        stripe.fake.setFaults({ ...step.faults, timeoutHoldMs: 600, burstLength: 3, retryAfterSeconds: 0 }, step.seed);
        try {
          await runUsageReport(app.services.billing, { tenantId: t.tenantId });
        } finally {
          stripe.fake.clearFaults();
        }
      }
      await toQuiescence(t.tenantId);
      await expectExact(t);
    }),
    { numRuns: Number(process.env.BILLING_PROPERTY_RUNS ?? 12) },
  );
}, 240_000);

it('a worker SIGKILLed in the middle of a run leaves nothing a restart cannot finish exactly', async () => {
  const t = await tenantWithBilling(20);
  const events = t.licenses.flatMap((licenseId, i) =>
    Array.from({ length: 12 }, (_, h) => ({ licenseId, usageType: 'api_call', quantity: i + h + 1, occurredAt: new Date(hourAgo(h + 1).getTime() + 60_000).toISOString() })),
  );
  await track(t.ownerKey, events);
  await rollUp(app, hourAgo(13), hourAgo(0));
  stripe.fake.setFaults({ delayMs: 15, timeoutRate: 0.05, timeoutHoldMs: 600 }, 3);
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(__dirname, '..', 'helpers', 'billing-child.ts'), t.tenantId], {
    env: { ...process.env, BILLING_STRIPE_RPS: '200', BILLING_STRIPE_CONCURRENCY: '4', REDIS_KEY_PREFIX: `${app.services.env.REDIS_KEY_PREFIX}child:` },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  try {
    // Kill it once Stripe has taken part of the run, but not all of it.
    const deadline = Date.now() + 60_000;
    while (stripe.fake.summary(t.key, {}) < 200 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    child.kill('SIGKILL');
    await exited;
  } finally {
    stripe.fake.clearFaults();
  }
  const partial = stripe.fake.summary(t.key, {});
  const expected = events.reduce((sum, e) => sum + e.quantity, 0);
  expect(partial).toBeGreaterThan(0);
  expect(partial).toBeLessThan(expected);
  // The restarted worker: the killed run's claims run out, and everything goes out exactly once.
  await toQuiescence(t.tenantId);
  expect(stripe.fake.summary(t.key, {})).toBe(expected);
  await expectExact(t);
}, 120_000);
