import { Prisma } from '../../src/generated/prisma/client';
import { TestApp } from '../helpers/harness';
import { createIsolatedDatabase } from '../helpers/isolated-db';
import { startReceiver } from '../helpers/receiver';
import { startTestWorkers } from '../helpers/workers';
import { normalizeEvent } from '../../src/domain/usage/ingest';
import { ensureUsageEventPartitions } from '../../src/domain/usage/partitions';
import { aggregateDailyWindow } from '../../src/domain/rollups/aggregate';
import { localDateOf } from '../../src/domain/analytics/buckets';
import { periodContaining } from '../../src/domain/periods';
import { loadLicenseLimits } from '../../src/domain/quotas/limits';
import { evaluateClosedPeriods, forecastLicense } from '../../src/domain/forecasts/daily-forecasts';
import { sendForecastBreachAlerts } from '../../src/domain/forecasts/breach-alerts';
import { verifySignature } from '../../src/domain/webhooks/signing';
import { SCHEDULE } from '../../src/domain/jobs/schedule';

const DAY = 86_400_000;
const HOUR = 3_600_000;

let db: ReturnType<typeof createIsolatedDatabase>;
let app: TestApp;
let workers: Awaited<ReturnType<typeof startTestWorkers>>;

// The daily job forecasts every license of the database: this file gets one of its own.
beforeAll(async () => {
  db = createIsolatedDatabase('forecasts');
  app = await TestApp.start({ DATABASE_URL: db.url, WEBHOOK_RETRY_BASE_MS: '20', USAGE_CACHE_TTL_SECONDS: '0', WEBHOOK_ALLOWED_HOSTS: '127.0.0.1' });
  await ensureUsageEventPartitions(app.services.db.pool, new Date(), new Date(Date.now() - 70 * DAY));
  workers = await startTestWorkers(app);
});
afterAll(async () => {
  await workers.close();
  await app.close();
  await db.drop();
});

/** Events stored through the ingestion writer, with occurredAt wherever the test needs it. */
async function writeEvents(tenantId: string, events: { licenseId: string; usageType: string; quantity: number; at: number }[]) {
  const normalized = events.map((e) => {
    const n = normalizeEvent(
      tenantId, 'live',
      { licenseId: e.licenseId, usageType: e.usageType, quantity: String(e.quantity), occurredAt: new Date(e.at).toISOString() } as never,
      { maxAgeMs: Number.MAX_SAFE_INTEGER, maxFutureMs: 0 },
      new Date(),
    );
    if ('status' in n) throw new Error(n.message);
    return n;
  });
  const outcomes = await app.services.eventWriter.write(normalized);
  if (!outcomes.every((o) => o.status === 'accepted')) throw new Error('events not accepted');
}

/** Two events of 6 on each of the `days` local days before today, at 09:00 and 15:00 in `tz` (12 a day), and today's that have happened. */
function steadyHistory(licenseId: string, usageType: string, days: number, localMidnightToday: number) {
  const events: { licenseId: string; usageType: string; quantity: number; at: number }[] = [];
  for (let d = -days; d <= 0; d++) {
    for (const hour of [9, 15]) {
      const at = localMidnightToday + d * DAY + hour * HOUR;
      if (at < Date.now() - 60_000) events.push({ licenseId, usageType, quantity: 6, at });
    }
  }
  return events;
}

async function rawSum(licenseId: string, usageType: string, from: Date, to: Date): Promise<Prisma.Decimal> {
  const { rows } = await app.services.db.pool.query<{ s: string | null }>(
    `SELECT sum(quantity)::text AS s FROM usage_events WHERE license_id = $1 AND usage_type = $2 AND occurred_at >= $3 AND occurred_at < $4`,
    [licenseId, usageType, from, to],
  );
  return new Prisma.Decimal(rows[0]?.s ?? 0);
}

async function triggerAndWait(name: 'usage.forecast.daily' | 'usage.forecast.alerts') {
  const res = await app.call('jobs.trigger', { name }, app.adminKey);
  expect(res.status).toBe(200);
  return (await workers.finished(res.data.jobId)) as Record<string, number>;
}

const KOLKATA = 'Asia/Kolkata';
let owner: string;
let tenantId: string;
let hookSecret: string;
let receiver: Awaited<ReturnType<typeof startReceiver>>;
let breaching: string; // monthly threshold the forecast crosses
let planned: string; // starter plan: daily and monthly plan limits, not crossed
let crossed: string; // already over its limit: no forecast alert

describe('usage.forecast.daily and usage.forecast.alerts', () => {
  beforeAll(async () => {
    receiver = await startReceiver();
    const t = await app.createTenant();
    owner = t.ownerKey;
    tenantId = t.tenantId;
    const hook = await app.call('webhooks.create', { url: receiver.url, events: ['usage.forecast.breach'] }, owner);
    hookSecret = hook.data.secret;

    const anchor = new Date(Date.now() - 2 * DAY).toISOString();
    breaching = (await app.createLicense(owner, { timezone: KOLKATA, billingAnchor: anchor })).id;
    planned = (await app.createLicense(owner, { timezone: KOLKATA, billingAnchor: anchor, plan: 'starter' })).id;
    crossed = (await app.createLicense(owner, { timezone: KOLKATA, billingAnchor: anchor })).id;
    const threshold = (licenseId: string, usageType: string, limitQuantity: number) =>
      app.call('thresholds.create', { licenseId, usageType, periodType: 'monthly', limitQuantity, allowOverage: true }, owner);
    expect((await threshold(breaching, 'api_call', 240)).status).toBe(200);
    expect((await threshold(breaching, 'export', 1_000_000)).status).toBe(200);
    expect((await threshold(crossed, 'api_call', 10)).status).toBe(200);

    const today = periodContaining('daily', new Date(), KOLKATA).start.getTime();
    await writeEvents(tenantId, [
      ...steadyHistory(breaching, 'api_call', 30, today),
      ...steadyHistory(breaching, 'export', 30, today),
      ...steadyHistory(planned, 'api_call', 30, today),
      ...steadyHistory(crossed, 'api_call', 30, today),
    ]);
    // some days come from daily rollups, the rest from raw events: the forecast reads both the same
    for (let d = 3; d <= 10; d++) await aggregateDailyWindow(app.services.db.pool, new Date(Math.floor((Date.now() - d * DAY) / DAY) * DAY));
  });
  afterAll(() => receiver.close());

  it('are scheduled at 03:00 and 09:00 UTC for the date they run on', () => {
    const daily = SCHEDULE.find((e) => e.job === 'usage.forecast.daily')!;
    const alerts = SCHEDULE.find((e) => e.job === 'usage.forecast.alerts')!;
    expect([daily.cron, alerts.cron]).toEqual(['0 3 * * *', '0 9 * * *']);
    expect(daily.windowAt(new Date('2026-11-23T03:00:00Z'))).toBe('2026-11-23');
  });

  it('forecasts each limited usage type from its events: the period total, an interval and the breach date', async () => {
    const result = await triggerAndWait('usage.forecast.daily');
    // breaching: api_call and export (monthly); planned: api_call daily and monthly; crossed: api_call monthly
    expect(result).toMatchObject({ licenses: 3, forecasts: 5 });

    const res = await app.call('forecasts.get', { licenseId: breaching, usageType: 'api_call' }, owner, { method: 'GET' });
    expect(res.status).toBe(200);
    const f = res.data;
    expect(f).toMatchObject({ periodType: 'monthly', limit: '240', limitSource: 'threshold', method: 'holt_winters', historyDays: 30, timezone: KOLKATA });
    for (const key of ['periodStart', 'periodEnd', 'usedSoFar', 'predictedTotal', 'lower', 'upper', 'limit', 'breachAt', 'method', 'generatedAt']) {
      expect(f).toHaveProperty(key);
    }
    const asOf = new Date(f.asOf);
    const periodStart = new Date(f.periodStart);
    const periodEnd = new Date(f.periodEnd);
    expect(periodContaining('monthly', asOf, KOLKATA, new Date(Date.now() - 2 * DAY)).start).toEqual(periodStart);
    // used so far is exact: every event of the period up to the cut-off
    expect(f.usedSoFar).toBe((await rawSum(breaching, 'api_call', periodStart, asOf)).toFixed());
    // 12 a day, every day: the rest of the period is 12 per remaining day (Kolkata days are all 24 h)
    const expected = new Prisma.Decimal(f.usedSoFar).plus((12 * (periodEnd.getTime() - asOf.getTime())) / DAY);
    expect(Math.abs(Number(f.predictedTotal) - expected.toNumber())).toBeLessThan(0.01);
    expect(Number(f.lower)).toBeLessThanOrEqual(Number(f.predictedTotal));
    expect(Number(f.upper)).toBeGreaterThanOrEqual(Number(f.predictedTotal));
    expect(Number(f.lower)).toBeGreaterThanOrEqual(Number(f.usedSoFar));
    // 240 is reached on the day the running total gets there
    const daysToLimit = (240 - Number(f.usedSoFar)) / 12;
    expect(f.breachAt).toBe(localDateOf(asOf.getTime() + daysToLimit * DAY - 1, KOLKATA));
    expect(f.breachAt <= localDateOf(periodEnd.getTime() - 1, KOLKATA)).toBe(true);

    const roomy = await app.call('forecasts.get', { licenseId: breaching, usageType: 'export' }, owner, { method: 'GET' });
    expect(roomy.data).toMatchObject({ breachAt: null, limit: '1000000', predictedTotal: f.predictedTotal });

    // plan limits: the monthly forecast by default, the daily one on request
    const monthly = await app.call('forecasts.get', { licenseId: planned, usageType: 'api_call' }, owner, { method: 'GET' });
    expect(monthly.data).toMatchObject({ periodType: 'monthly', limit: '1000', limitSource: 'plan', thresholdId: null, breachAt: null });
    const daily = await app.call('forecasts.get', { licenseId: planned, usageType: 'api_call', periodType: 'daily' }, owner, { method: 'GET' });
    expect(daily.data).toMatchObject({ periodType: 'daily', limit: '34', breachAt: null });
    const dayStart = new Date(daily.data.periodStart);
    const dayEnd = new Date(daily.data.periodEnd);
    expect(dayEnd.getTime() - dayStart.getTime()).toBe(DAY);
    expect(daily.data.usedSoFar).toBe((await rawSum(planned, 'api_call', dayStart, new Date(daily.data.asOf))).toFixed());
    const restOfToday = (12 * (dayEnd.getTime() - new Date(daily.data.asOf).getTime())) / DAY;
    expect(Math.abs(Number(daily.data.predictedTotal) - (Number(daily.data.usedSoFar) + restOfToday))).toBeLessThan(0.01);

    const list = await app.call('forecasts.list', { current: true, limit: 2 }, owner, { method: 'GET' });
    expect(list.data.items).toHaveLength(2);
    const next = await app.call('forecasts.list', { current: true, limit: 10, cursor: list.data.nextCursor }, owner, { method: 'GET' });
    expect(next.data.items).toHaveLength(3);
    expect(next.data.nextCursor).toBeNull();
    const breachingOnes = await app.call('forecasts.list', { breaching: true }, owner, { method: 'GET' });
    expect(breachingOnes.data.items.map((i: any) => i.licenseId).sort()).toEqual([breaching, crossed].sort());
  });

  it('sends usage.forecast.breach once per limit and period, signed, however often the jobs run', async () => {
    expect(await triggerAndWait('usage.forecast.alerts')).toMatchObject({ sent: 1 });
    expect(await triggerAndWait('usage.forecast.alerts')).toMatchObject({ sent: 0 });
    await triggerAndWait('usage.forecast.daily');
    expect(await triggerAndWait('usage.forecast.alerts')).toMatchObject({ sent: 0 });

    const alerts = await app.prisma.usageForecastAlert.findMany({ where: { tenantId } });
    expect(alerts.map((a) => [a.licenseId, a.usageType, a.periodType, a.limitQuantity.toFixed()])).toEqual([[breaching, 'api_call', 'monthly', '240']]);

    const deliveries = await app.call('webhooks.deliveries', { limit: 100 }, owner, { method: 'GET' });
    expect(deliveries.data.items).toHaveLength(1);
    await workers.finished(`webhooks.deliver@${deliveries.data.items[0].id}`);
    expect(receiver.received).toHaveLength(1);
    const [delivery] = receiver.received;
    expect(verifySignature(String(delivery!.headers['tally-signature']), delivery!.body, hookSecret)).toBe(true);
    const forecast = (await app.call('forecasts.get', { licenseId: breaching, usageType: 'api_call' }, owner, { method: 'GET' })).data;
    const body = JSON.parse(delivery!.body);
    expect(body).toMatchObject({
      id: alerts[0]!.id,
      type: 'usage.forecast.breach',
      data: {
        licenseId: breaching,
        usageType: 'api_call',
        periodType: 'monthly',
        periodStart: forecast.periodStart,
        limit: '240',
        source: 'threshold',
        breachAt: forecast.breachAt,
        method: 'holt_winters',
      },
    });
  });

  it('skips a limit raised since the forecast was made', async () => {
    const other = (await app.createLicense(owner, { timezone: KOLKATA })).id;
    const created = await app.call('thresholds.create', { licenseId: other, usageType: 'api_call', periodType: 'monthly', limitQuantity: 50, allowOverage: true }, owner);
    const today = periodContaining('daily', new Date(), KOLKATA).start.getTime();
    // yesterday and today only: run-rate at 12 a day, 50 reached within the month that began today
    await writeEvents(tenantId, steadyHistory(other, 'api_call', 1, today));
    await triggerAndWait('usage.forecast.daily');
    const before = (await app.call('forecasts.get', { licenseId: other, usageType: 'api_call' }, owner, { method: 'GET' })).data;
    expect(before).toMatchObject({ method: 'run_rate', historyDays: 1, limit: '50' });
    expect(before.breachAt).not.toBeNull();

    expect((await app.call('thresholds.update', { id: created.data.id, limitQuantity: 10_000 }, owner)).status).toBe(200);
    expect(await triggerAndWait('usage.forecast.alerts')).toMatchObject({ candidates: 1, sent: 0 });
    expect(await app.prisma.usageForecastAlert.count({ where: { licenseId: other } })).toBe(0);
  });

  it('sends, on the next run and once, an alert whose publication failed', async () => {
    // Whatever else is due goes now, so this license's alert is the failing run's only one.
    await triggerAndWait('usage.forecast.daily');
    await triggerAndWait('usage.forecast.alerts');
    const license = (await app.createLicense(owner, { timezone: KOLKATA })).id;
    const created = await app.call('thresholds.create', { licenseId: license, usageType: 'api_call', periodType: 'monthly', limitQuantity: 50, allowOverage: true }, owner);
    expect(created.status).toBe(200);
    const today = periodContaining('daily', new Date(), KOLKATA).start.getTime();
    await writeEvents(tenantId, steadyHistory(license, 'api_call', 1, today));
    await triggerAndWait('usage.forecast.daily');

    // The delivery row is written, then queueing its job fails (Redis gone): the run fails.
    const webhooks = { prisma: app.prisma, retryBaseMs: 20, jobs: { enqueue: () => Promise.reject(new Error('Redis went away')) } };
    await expect(
      sendForecastBreachAlerts({ pool: app.services.db.pool, prisma: app.prisma, webhooks: webhooks as never }, new Date()),
    ).rejects.toThrow('Redis went away');
    expect(await app.prisma.usageForecastAlert.count({ where: { licenseId: license } })).toBe(0); // not claimed

    expect(await triggerAndWait('usage.forecast.alerts')).toMatchObject({ sent: 1 });
    expect(await triggerAndWait('usage.forecast.alerts')).toMatchObject({ sent: 0 });
    const alert = await app.prisma.usageForecastAlert.findFirstOrThrow({ where: { licenseId: license } });
    const deliveries = await app.prisma.webhookDelivery.findMany({ where: { tenantId, eventId: alert.id } });
    expect(deliveries).toHaveLength(1);
    await workers.finished(`webhooks.deliver@${deliveries[0]!.id}`);
    expect(receiver.received.filter((r) => JSON.parse(r.body).id === alert.id)).toHaveLength(1);
  });
});

describe('forecast accuracy', () => {
  it('keeps the forecast made closest to the middle of a period and records its error once the period closes', async () => {
    const t = await app.createTenant();
    const license = (await app.createLicense(t.ownerKey, { timezone: 'UTC' })).id;
    await app.call('thresholds.create', { licenseId: license, usageType: 'api_call', periodType: 'weekly', limitQuantity: 1000 }, t.ownerKey);
    // last week (Monday to Monday, UTC): 10 a day for 24 days before it and its first four days, then 20 a day
    const lastWeek = periodContaining('weekly', new Date(Date.now() - 7 * DAY), 'UTC');
    const start = lastWeek.start.getTime();
    const events = [];
    for (let d = -24; d <= 6; d++) events.push({ licenseId: license, usageType: 'api_call', quantity: d <= 3 ? 10 : 20, at: start + d * DAY + 6 * HOUR });
    await writeEvents(t.tenantId, events);

    const limits = (await loadLicenseLimits(app.prisma, t.tenantId, license))!;
    const deps = { pool: app.services.db.pool, prisma: app.prisma };
    for (const offset of [1 * DAY, 3.5 * DAY, 6 * DAY]) expect(await forecastLicense(deps, limits, new Date(start + offset))).toBe(1);
    // a re-run with an earlier cut-off changes nothing
    expect(await forecastLicense(deps, limits, new Date(start + 2 * DAY))).toBe(0);

    const row = await app.prisma.usageForecast.findFirstOrThrow({ where: { licenseId: license, periodStart: lastWeek.start } });
    expect(row.asOf).toEqual(new Date(start + 6 * DAY));
    expect(row.midAsOf).toEqual(new Date(start + 3.5 * DAY));
    // at the middle: 40 used (Monday to Thursday 06:00), half of Thursday (5) and three days (30) to come
    expect(row.midPredictedTotal!.toFixed()).toBe('75');
    expect(row.midMethod).toBe('holt_winters');
    expect(row.evaluatedAt).toBeNull();

    expect(await evaluateClosedPeriods(app.services.db.pool, new Date())).toBe(1);
    expect(await evaluateClosedPeriods(app.services.db.pool, new Date())).toBe(0);
    const evaluated = await app.prisma.usageForecast.findFirstOrThrow({ where: { id: row.id } });
    expect(evaluated.actualTotal!.toFixed()).toBe('100');
    expect(evaluated.absolutePercentageError!.toFixed()).toBe('25');

    const accuracy = await app.call('forecasts.accuracy', { licenseId: license }, t.ownerKey, { method: 'GET' });
    expect(accuracy.status).toBe(200);
    expect(accuracy.data).toEqual({
      periods: 1,
      mape: '25',
      byPeriodType: [{ periodType: 'weekly', periods: 1, mape: '25' }],
      byMethod: [{ method: 'holt_winters', periods: 1, mape: '25' }],
    });
    expect((await app.call('analytics.forecastAccuracy', { licenseId: license }, t.ownerKey, { method: 'GET' })).data).toEqual(accuracy.data);
    const closed = await app.call('forecasts.list', { licenseId: license, current: false }, t.ownerKey, { method: 'GET' });
    expect(closed.data.items).toHaveLength(1);
    expect(closed.data.items[0].accuracy).toMatchObject({ midPeriodForecast: '75', actualTotal: '100', absolutePercentageError: '25' });
    // another tenant sees none of it
    expect((await app.call('forecasts.accuracy', {}, owner, { method: 'GET' })).data.periods).toBe(0);
  });
});

describe('bad requests', () => {
  it('answers 400 for bad input and 404 for what is not there, never 500', async () => {
    const get = (input: unknown, key = owner) => app.call('forecasts.get', input, key, { method: 'GET' });
    const foreign = await app.createTenant();
    const foreignLicense = (await app.createLicense(foreign.ownerKey)).id;
    expect((await get({ licenseId: 'nope', usageType: 'api_call' })).status).toBe(400);
    expect((await get({ licenseId: breaching, usageType: 'Not A Type' })).status).toBe(400);
    expect((await get({ licenseId: breaching, usageType: 'api_call', periodType: 'yearly' })).status).toBe(400);
    expect((await get({ licenseId: breaching, usageType: 'api_call', extra: 1 })).status).toBe(400);
    expect((await get({ licenseId: breaching })).status).toBe(400);
    expect((await get({ licenseId: foreignLicense, usageType: 'api_call' })).status).toBe(404);
    expect((await get({ licenseId: breaching, usageType: 'never_limited' })).status).toBe(404);
    expect((await get({ licenseId: breaching, usageType: 'api_call', periodType: 'daily' })).status).toBe(404);
    expect((await app.call('forecasts.list', { cursor: 'garbage' }, owner, { method: 'GET' })).status).toBe(400);
    expect((await app.call('forecasts.list', { limit: 0 }, owner, { method: 'GET' })).status).toBe(400);
    expect((await app.call('forecasts.accuracy', { since: 'yesterday' }, owner, { method: 'GET' })).status).toBe(400);
    expect((await app.call('forecasts.accuracy', { licenseId: foreignLicense }, owner, { method: 'GET' })).status).toBe(404);
    const future = new Date(Date.now() + 2 * DAY).toISOString().slice(0, 10);
    expect((await app.call('jobs.trigger', { name: 'usage.forecast.daily', window: future }, app.adminKey)).status).toBe(400);
    expect((await app.call('jobs.trigger', { name: 'usage.forecast.alerts', window: '2026-02-30' }, app.adminKey)).status).toBe(400);
  });
});

describe('a day of 23 hours', () => {
  it('forecasts the rest of today by the length of the local day', async () => {
    await ensureUsageEventPartitions(app.services.db.pool, new Date(), new Date(Date.UTC(2026, 1, 1)));
    const t = await app.createTenant();
    const license = (await app.createLicense(t.ownerKey, { timezone: 'America/New_York' })).id;
    await app.call('thresholds.create', { licenseId: license, usageType: 'api_call', periodType: 'daily', limitQuantity: 30 }, t.ownerKey);
    // one unit every hour from 2026-02-20 00:00 EST to noon EDT on 2026-03-08, the day clocks skip 02:00
    const asOf = new Date('2026-03-08T12:00:00-04:00');
    const events = [];
    for (let at = Date.parse('2026-02-20T00:00:00-05:00'); at < asOf.getTime(); at += HOUR) {
      events.push({ licenseId: license, usageType: 'api_call', quantity: 1, at });
    }
    await writeEvents(t.tenantId, events);
    const limits = (await loadLicenseLimits(app.prisma, t.tenantId, license))!;
    expect(await forecastLicense({ pool: app.services.db.pool, prisma: app.prisma }, limits, asOf)).toBe(1);

    const row = await app.prisma.usageForecast.findFirstOrThrow({ where: { licenseId: license } });
    expect([row.periodStart.toISOString(), row.periodEnd.toISOString()]).toEqual(['2026-03-08T05:00:00.000Z', '2026-03-09T04:00:00.000Z']);
    expect(row.method).toBe('holt'); // 16 complete days of 24
    // 11 hours have passed (midnight to noon, less the skipped hour): 11 used, 12 of 23 hours to come at 24 a day
    expect(row.usedSoFar.toFixed()).toBe('11');
    expect(row.predictedTotal.toFixed()).toBe((11 + (24 * 12) / 23).toFixed(6));
    expect(row.breachAt).toBeNull();
  });
});
