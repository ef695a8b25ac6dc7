/**
 * Billing benchmark: 1,000 licenses × 4 meters × 24 hours (96,000 windows) reported to a fake
 * Stripe (tests/helpers/fake-stripe.ts, in this process) answering every call after 20 ms,
 * with Tally configured for 1,000 requests/s per account. Measured: wall time (deciding, then
 * sending), Stripe calls per window (target ≤ 1.05 without faults), throughput against the
 * configured limit (target ≥ 90%), and the same with 20% of calls failing with 500s (target:
 * Stripe's totals exact, ≤ 1.5× the calls).
 *
 * Sizes: BENCH_BILLING_LICENSES (1,000), BENCH_BILLING_METERS (4), BENCH_BILLING_HOURS (24),
 * BENCH_BILLING_DELAY_MS (20), BENCH_BILLING_RPS (1,000), BENCH_BILLING_CONCURRENCY (64),
 * BENCH_BILLING_FAULT_RATE (0.2).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { loadEnv } from '../src/env';
import { createLogger } from '../src/lib/logger';
import { closeServices, createServices, prepareData } from '../src/app';
import { connectStripe } from '../src/domain/billing/connections';
import { decideUsageReports } from '../src/domain/billing/report';
import { sendOutbox } from '../src/domain/billing/outbox';
import { openConnection } from '../src/domain/billing/connections';
import { FakeStripe } from '../tests/helpers/fake-stripe';
import { type BenchContext, type BenchReport, type Figure, intFromEnv, round } from './lib';

const HOUR = 3_600_000;

interface Config {
  licenses: number;
  meters: number;
  hours: number;
  delayMs: number;
  rps: number;
  concurrency: number;
  faultRate: number;
}

export function billingConfigFromEnv(): Config {
  return {
    licenses: intFromEnv('BENCH_BILLING_LICENSES', 1_000),
    meters: intFromEnv('BENCH_BILLING_METERS', 4),
    hours: intFromEnv('BENCH_BILLING_HOURS', 24),
    delayMs: intFromEnv('BENCH_BILLING_DELAY_MS', 20),
    rps: intFromEnv('BENCH_BILLING_RPS', 1_000),
    concurrency: intFromEnv('BENCH_BILLING_CONCURRENCY', 64),
    faultRate: Number(process.env.BENCH_BILLING_FAULT_RATE ?? 0.2),
  };
}

interface RunFigures {
  windows: number;
  calls: number;
  decideSeconds: number;
  sendSeconds: number;
  wallSeconds: number;
  requestsPerSecond: number;
  exact: boolean;
  stripeTotal: number;
  tallyTotal: number;
  faults: FakeStripe['counters']['faults'];
  counters: unknown;
}

export async function runBillingBench(ctx: BenchContext, config: Config): Promise<BenchReport> {
  const fake = await FakeStripe.start();
  const env = loadEnv({
    ...process.env,
    DATABASE_URL: ctx.databaseUrl,
    LOG_LEVEL: 'silent',
    REDIS_KEY_PREFIX: `bench:${ctx.runId}:billing:`,
    BILLING_ENCRYPTION_KEY: randomBytes(32).toString('hex'),
    STRIPE_API_BASE: fake.baseUrl,
    BILLING_STRIPE_RPS: String(config.rps),
    BILLING_STRIPE_CONCURRENCY: String(config.concurrency),
    BILLING_STRIPE_TIMEOUT_MS: '5000',
    BILLING_RETRY_BASE_MS: '50',
    BILLING_SEND_BUDGET_MS: '3600000',
    DB_POOL_SIZE: '10',
  });
  const services = await createServices(env, createLogger('silent'));
  await prepareData(services);
  const errors: string[] = [];
  try {
    const clean = await runOnce(services, fake, config, 0);
    const faulty = await runOnce(services, fake, config, config.faultRate);
    if (!clean.exact || !faulty.exact) errors.push(`Stripe totals differ from Tally's: clean ${clean.stripeTotal}/${clean.tallyTotal}, faulty ${faulty.stripeTotal}/${faulty.tallyTotal}`);
    const figures: Figure[] = [
      { what: 'windows reported', value: clean.windows, unit: 'windows' },
      { what: 'wall time, no faults (decide + send)', value: round(clean.wallSeconds, 1), unit: 's', baseline: `decide ${round(clean.decideSeconds, 1)} s, send ${round(clean.sendSeconds, 1)} s` },
      { what: 'Stripe calls per window, no faults', value: round(clean.calls / clean.windows, 3), unit: 'calls', digits: 3, target: { value: 1.05, better: 'lower' } },
      {
        what: `send throughput vs ${config.rps} req/s limit, no faults`,
        value: round((clean.requestsPerSecond / config.rps) * 100, 1),
        unit: '%',
        target: { value: 90, better: 'higher' },
        baseline: `${round(clean.requestsPerSecond, 0)} req/s`,
      },
      { what: `Stripe totals exact, ${config.faultRate * 100}% 500s`, value: faulty.exact ? 1 : 0, unit: 'bool', target: { value: 1, better: 'higher' } },
      {
        what: `Stripe calls per window, ${config.faultRate * 100}% 500s`,
        value: round(faulty.calls / faulty.windows, 3),
        unit: 'calls',
        digits: 3,
        target: { value: 1.5, better: 'lower' },
        baseline: `no faults: ${round(clean.calls / clean.windows, 3)}`,
      },
      {
        what: `wall time, ${config.faultRate * 100}% 500s`,
        value: round(faulty.wallSeconds, 1),
        unit: 's',
        baseline: `no faults: ${round(clean.wallSeconds, 1)} s; ${round(faulty.requestsPerSecond, 0)} req/s`,
      },
    ];
    return { name: 'billing', figures, phases: [], config: { ...config }, extra: { clean, faulty, errors } };
  } finally {
    await closeServices(services);
    await fake.close();
  }
}

async function runOnce(services: Awaited<ReturnType<typeof createServices>>, fake: FakeStripe, config: Config, faultRate: number): Promise<RunFigures> {
  const pool = services.db.pool;
  const tenantId = randomUUID();
  await pool.query(`INSERT INTO tenants (id, name, slug, updated_at) VALUES ($1, 'bench billing', $2, now())`, [tenantId, `bench-billing-${tenantId.slice(0, 8)}`]);
  const plan = await pool.query<{ id: string }>(`SELECT id FROM plans WHERE code = 'enterprise'`);
  await pool.query(
    `INSERT INTO licenses (id, tenant_id, name, plan_id, billing_anchor, stripe_customer_id, updated_at)
     SELECT gen_random_uuid(), $1, 'bench ' || i, $2, now(), 'cus_bench' || i, now() FROM generate_series(1, $3) i`,
    [tenantId, plan.rows[0]!.id, config.licenses],
  );
  const usageTypes = Array.from({ length: config.meters }, (_, i) => `bench_meter_${i}`);
  for (const usageType of usageTypes) {
    await pool.query(
      `INSERT INTO billing_meters (id, tenant_id, mode, usage_type, event_name, stripe_meter_id, unit_amount_decimal, updated_at)
       VALUES (gen_random_uuid(), $1, 'live', $2, $2, NULL, 1, now())`,
      [tenantId, usageType],
    );
  }
  const lastHour = Math.floor(Date.now() / HOUR) * HOUR - HOUR;
  const firstHour = lastHour - (config.hours - 1) * HOUR;
  await pool.query(
    `INSERT INTO usage_rollups_hourly (tenant_id, license_id, usage_type, hour, quantity, event_count, max_quantity, distinct_users, error_count, duration_ms_sum)
     SELECT $1, l.id, u, h, 1 + floor(random() * 100), 1, 1, 0, 0, 0
     FROM licenses l CROSS JOIN unnest($2::text[]) u CROSS JOIN generate_series($3::timestamptz, $4::timestamptz, interval '1 hour') h
     WHERE l.tenant_id = $1`,
    [tenantId, usageTypes, new Date(firstHour), new Date(lastHour)],
  );
  const key = `sk_live_bench${randomBytes(8).toString('hex')}`;
  await connectStripe(services.billing, tenantId, 'live', { secretKey: key, webhookSecret: `whsec_${randomBytes(12).toString('hex')}`, reportFrom: new Date(firstHour) });
  const connection = (await openConnection(services.billing, { tenantId, mode: 'live' }))!;

  fake.resetCounters();
  fake.setFaults({ delayMs: config.delayMs, errorRate: faultRate }, 42);
  const started = performance.now();
  const decided = await decideUsageReports(services.billing, connection);
  const decidedAt = performance.now();
  const sent = await sendOutbox(services.billing, connection);
  const finished = performance.now();
  fake.clearFaults();
  const calls = fake.counters.requests;
  const stripeTotal = fake.summary(key, {});
  const tally = await pool.query<{ total: string }>(`SELECT sum(quantity)::bigint::text AS total FROM usage_rollups_hourly WHERE tenant_id = $1`, [tenantId]);
  const tallyTotal = Number(tally.rows[0]!.total);
  const sendSeconds = (finished - decidedAt) / 1000;
  return {
    windows: decided.windows,
    calls,
    decideSeconds: (decidedAt - started) / 1000,
    sendSeconds,
    wallSeconds: (finished - started) / 1000,
    requestsPerSecond: calls / sendSeconds,
    exact: stripeTotal === tallyTotal && sent.pending === 0 && sent.failed === 0,
    stripeTotal,
    tallyTotal,
    faults: { ...fake.counters.faults },
    counters: JSON.parse(JSON.stringify(fake.counters)) as unknown,
  };
}
