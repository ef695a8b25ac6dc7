import http from 'node:http';
import fc from 'fast-check';
import { Prisma } from '../../src/generated/prisma/client';
import { TestApp } from '../helpers/harness';
import { createIsolatedDatabase } from '../helpers/isolated-db';
import { aggregateDailyWindow, aggregateHourlyWindow } from '../../src/domain/rollups/aggregate';
import { ensureUsageEventPartitions } from '../../src/domain/usage/partitions';
import { normalizeEvent } from '../../src/domain/usage/ingest';
import { jobHandlers } from '../../jobs/handlers';
import { jobDepsOf } from '../../src/app';
import { hourWindow } from '../../src/domain/jobs/catalog';
import { EXPORT_BATCH_ROWS } from '../../src/domain/analytics/export';
import { FinalDayCache } from '../../src/domain/usage-reader/final-days';
import { formatMicro } from '../../src/lib/micro';
import { usageAnalyticsOutput } from '../../src/server/routers/analytics/usage';

const HOUR = 3_600_000;
const DAY = 86_400_000;
const ZONES = ['UTC', 'Asia/Kolkata', 'America/New_York'] as const;
// Two weeks around the New York spring change (2026-03-08), outside the ingestion window.
const FROM = Date.UTC(2026, 2, 1);
const DAYS = 14;
const NOW = new Date(); // windows of March 2026 have all ended

let db: ReturnType<typeof createIsolatedDatabase>;
let app: TestApp;

beforeAll(async () => {
  db = createIsolatedDatabase('analytics');
  // Exactness is checked uncached here; the cache has its own tests below.
  app = await TestApp.start({ DATABASE_URL: db.url, USAGE_CACHE_TTL_SECONDS: '0' });
  await ensureUsageEventPartitions(app.services.db.pool, new Date(), new Date(Date.UTC(2026, 0, 1)));
});
afterAll(async () => {
  await app.close();
  await db.drop();
});

const pool = () => app.services.db.pool;
const rollups = () => app.services.rollups;

interface Spec {
  license: number;
  usageType: string;
  quantity: string;
  at: number;
  userId?: string;
  statusCode?: number;
  durationMs?: number;
}

async function writeHistoric(tenantId: string, licenseIds: string[], specs: Spec[]) {
  if (specs.length === 0) return;
  const events = specs.map((s) => {
    const e = normalizeEvent(
      tenantId, 'live',
      {
        licenseId: licenseIds[s.license]!,
        usageType: s.usageType,
        quantity: s.quantity,
        occurredAt: new Date(s.at).toISOString(),
        ...(s.userId ? { userId: s.userId } : {}),
        ...(s.statusCode ? { statusCode: s.statusCode } : {}),
        ...(s.durationMs !== undefined ? { durationMs: s.durationMs } : {}),
      } as never,
      { maxAgeMs: Number.MAX_SAFE_INTEGER, maxFutureMs: DAY },
      new Date(),
    );
    if ('status' in e) throw new Error(e.message);
    return e;
  });
  const outcomes = await app.services.eventWriter.write(events);
  if (!outcomes.every((o) => o.status === 'accepted')) throw new Error('events not accepted');
}

/** The same question asked of the raw events in SQL: periods cut by PostgreSQL's date_trunc in the zone, clipped to the range. */
async function rawTruth(args: { tenantId: string; licenseId?: string; usageType?: string; startDate: string; endDate: string; granularity: string; zone: string }) {
  const unit = { hourly: 'hour', daily: 'day', weekly: 'week', monthly: 'month' }[args.granularity]!;
  const { rows } = await pool().query<{ bucket: Date; quantity: string; events: string }>(
    `WITH r AS (SELECT ($5::date)::timestamp AT TIME ZONE $7 AS s, ($6::date + 1)::timestamp AT TIME ZONE $7 AS e)
     SELECT greatest(date_trunc($8, occurred_at, $7), r.s) AS bucket, sum(quantity)::text AS quantity, count(*)::text AS events
       FROM usage_events, r
      WHERE tenant_id = $1 AND ($2::uuid IS NULL OR license_id = $2) AND ($3::text IS NULL OR usage_type = $3)
        AND occurred_at >= r.s AND occurred_at < r.e AND $4::int = 0
      GROUP BY 1 ORDER BY 1`,
    [args.tenantId, args.licenseId ?? null, args.usageType ?? null, 0, args.startDate, args.endDate, args.zone, unit],
  );
  const overview = await pool().query<{ quantity: string | null; events: string; users: string; errors: string }>(
    `SELECT sum(quantity)::text AS quantity, count(*)::text AS events, count(DISTINCT user_id)::text AS users,
            count(*) FILTER (WHERE status_code >= 400)::text AS errors
       FROM usage_events
      WHERE tenant_id = $1 AND ($2::uuid IS NULL OR license_id = $2) AND ($3::text IS NULL OR usage_type = $3)
        AND occurred_at >= ($4::date)::timestamp AT TIME ZONE $6 AND occurred_at < ($5::date + 1)::timestamp AT TIME ZONE $6`,
    [args.tenantId, args.licenseId ?? null, args.usageType ?? null, args.startDate, args.endDate, args.zone],
  );
  return { buckets: new Map(rows.map((r) => [r.bucket.getTime(), r])), overview: overview.rows[0]! };
}

async function usage(key: string, input: Record<string, unknown>) {
  const res = await app.call('analytics.usage', input, key, { method: 'GET' });
  if (res.status !== 200) throw new Error(JSON.stringify(res.body));
  // No run-time output parser on this procedure (meta.answer): every answer must be the documented one, nothing
  // more, its fields in the schema's order (what the parser's copy was).
  expect(JSON.stringify(usageAnalyticsOutput.parse(res.data))).toBe(JSON.stringify(res.data));
  return res.data;
}

const dateOf = (day: number) => new Date(FROM + day * DAY).toISOString().slice(0, 10);
const eq = (a: string | null | undefined, b: string | null | undefined) => new Prisma.Decimal(a ?? 0).equals(b ?? 0);

const specArb = fc.record({
  license: fc.integer({ min: 0, max: 2 }),
  usageType: fc.constantFrom('api_call', 'tokens'),
  quantity: fc.tuple(fc.integer({ min: 0, max: 100_000 }), fc.integer({ min: 0, max: 999_999 })).map(([w, f]) => `${w}.${String(f).padStart(6, '0')}`),
  at: fc.integer({ min: FROM, max: FROM + DAYS * DAY - 1 }),
  userId: fc.option(fc.constantFrom('u1', 'u2', 'u3', 'u4'), { nil: undefined }),
  statusCode: fc.option(fc.constantFrom(200, 404, 500), { nil: undefined }),
  durationMs: fc.option(fc.integer({ min: 0, max: 5000 }), { nil: undefined }),
});

describe('analytics.usage equals SQL over the raw events', () => {
  it('for random events, partly rolled up, with late events, in UTC, +05:30 and a DST zone', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(specArb, { minLength: 1, maxLength: 80 }),
        fc.array(specArb, { maxLength: 10 }),
        fc.array(fc.integer({ min: 0, max: DAYS * 24 - 1 }), { maxLength: 40 }),
        fc.array(fc.integer({ min: -1, max: DAYS }), { maxLength: 6 }),
        fc.record({
          zone: fc.constantFrom(...ZONES),
          granularity: fc.constantFrom('hourly', 'daily', 'weekly', 'monthly'),
          license: fc.option(fc.integer({ min: 0, max: 2 }), { nil: undefined }),
          usageType: fc.option(fc.constantFrom('api_call', 'tokens'), { nil: undefined }),
          first: fc.integer({ min: 0, max: DAYS - 1 }),
          length: fc.integer({ min: 0, max: 6 }),
          explicitZone: fc.boolean(),
        }),
        async (specs, late, rolledHours, rolledDays, q) => {
          const { ownerKey, tenantId } = await app.createTenant();
          const licenses = await Promise.all(ZONES.map((timezone) => app.createLicense(ownerKey, { timezone })));
          const ids = licenses.map((l) => l.id);
          await writeHistoric(tenantId, ids, specs);
          for (const h of new Set(rolledHours)) await aggregateHourlyWindow(rollups(), new Date(FROM + h * HOUR), NOW);
          for (const d of new Set(rolledDays)) await aggregateDailyWindow(pool(), new Date(FROM + d * DAY), NOW);
          await writeHistoric(tenantId, ids, late); // marks their hours: counted at once all the same

          const licenseId = q.license === undefined ? undefined : ids[q.license];
          const zone: string = q.explicitZone || q.license === undefined ? q.zone : ZONES[q.license]!;
          const startDate = dateOf(q.first);
          const endDate = dateOf(Math.min(q.first + q.length, DAYS - 1));
          const input = { licenseId, usageType: q.usageType, startDate, endDate, granularity: q.granularity, ...(q.explicitZone || !licenseId ? { timezone: zone } : {}) };
          const got = await usage(ownerKey, input);
          const truth = await rawTruth({ tenantId, licenseId, usageType: q.usageType, startDate, endDate, granularity: q.granularity, zone });

          expect(got.period.timezone).toBe(zone);
          for (const point of got.timeSeries) {
            const t = truth.buckets.get(Date.parse(point.period));
            expect([point.period, eq(point.quantity, t?.quantity), point.events]).toEqual([point.period, true, Number(t?.events ?? 0)]);
          }
          const labels = new Set(got.timeSeries.map((p: { period: string }) => Date.parse(p.period)));
          for (const key of truth.buckets.keys()) expect(labels.has(key)).toBe(true);
          expect(eq(got.overview.totalQuantity, truth.overview.quantity)).toBe(true);
          expect(got.overview.eventCount).toBe(Number(truth.overview.events));
          expect(got.overview.uniqueUsers).toBe(Number(truth.overview.users));
          expect(got.overview.errorCount).toBe(Number(truth.overview.errors));
        },
      ),
      { numRuns: 25 },
    );
  }, 300_000);
});

describe('analytics.usage periods', () => {
  let ownerKey: string;
  let ids: string[];
  beforeAll(async () => {
    const t = await app.createTenant();
    ownerKey = t.ownerKey;
    ids = (await Promise.all(ZONES.map((timezone) => app.createLicense(ownerKey, { timezone })))).map((l) => l.id);
    // One event of quantity 1 at every half hour of March 2026, all rolled up.
    const specs: Spec[] = [];
    for (let t = FROM; t < Date.UTC(2026, 3, 1); t += HOUR / 2) specs.push({ license: 2, usageType: 'api_call', quantity: '1', at: t });
    await writeHistoric(t.tenantId, ids, specs);
    for (let d = -1; d <= 31; d++) await aggregateDailyWindow(pool(), new Date(FROM + d * DAY), NOW);
    await aggregateHourlyWindow(rollups(), new Date(FROM), NOW); // clears the marks of every hour written
    for (let h = FROM; h < Date.UTC(2026, 3, 1); h += HOUR) await aggregateHourlyWindow(rollups(), new Date(h), NOW);
  }, 120_000);

  it('has 23 hourly points on the spring DST day and 24 elsewhere, each from its rollups', async () => {
    const spring = await usage(ownerKey, { licenseId: ids[2], startDate: '2026-03-08', endDate: '2026-03-08', granularity: 'hourly' });
    expect(spring.timeSeries).toHaveLength(23);
    expect(spring.timeSeries.every((p: { events: number }) => p.events === 2)).toBe(true);
    expect(spring.overview.totalQuantity).toBe('46');
    const kolkata = await usage(ownerKey, { licenseId: ids[2], startDate: '2026-03-08', endDate: '2026-03-08', granularity: 'hourly', timezone: 'Asia/Kolkata' });
    expect(kolkata.timeSeries).toHaveLength(24);
    expect(kolkata.timeSeries[0].period).toBe('2026-03-08T00:00:00+05:30');
    expect(kolkata.overview.totalQuantity).toBe('48');
  });

  it('lists every period of the range, empty ones as zeros', async () => {
    const res = await usage(ownerKey, { licenseId: ids[0], startDate: '2026-02-20', endDate: '2026-03-05', granularity: 'daily' });
    expect(res.timeSeries).toHaveLength(14);
    expect(res.timeSeries.every((p: { quantity: string; events: number }) => p.quantity === '0' && p.events === 0)).toBe(true);
    expect(res.overview).toMatchObject({ totalQuantity: '0', eventCount: 0, errorRate: 0, avgDurationMs: null });
  });

  it('sums weekly and monthly series to the total of the daily one', async () => {
    const range = { licenseId: ids[2], startDate: '2026-02-25', endDate: '2026-03-31' };
    const daily = await usage(ownerKey, { ...range, granularity: 'daily' });
    for (const granularity of ['weekly', 'monthly']) {
      const res = await usage(ownerKey, { ...range, granularity });
      const sum = res.timeSeries.reduce((s: Prisma.Decimal, p: { quantity: string }) => s.plus(p.quantity), new Prisma.Decimal(0));
      expect(sum.toFixed()).toBe(daily.overview.totalQuantity);
      expect(res.overview.totalQuantity).toBe(daily.overview.totalQuantity);
    }
    // every event of March (UTC) falls in New York's Feb 25 .. Mar 31
    expect(daily.overview.totalQuantity).toBe(String(31 * 48));
    expect(daily.timeSeries.find((p: { period: string }) => p.period.startsWith('2026-03-08')).quantity).toBe('46');
  });

  it('counts a late event at once, before any job runs', async () => {
    const range = { licenseId: ids[2], startDate: '2026-03-10', endDate: '2026-03-10', granularity: 'daily' };
    const before = await usage(ownerKey, range);
    const t = await app.prisma.license.findUniqueOrThrow({ where: { id: ids[2] } });
    await writeHistoric(t.tenantId, ids, [{ license: 2, usageType: 'api_call', quantity: '0.25', at: Date.UTC(2026, 2, 10, 15, 7) }]);
    const after = await usage(ownerKey, range);
    expect(new Prisma.Decimal(after.overview.totalQuantity).minus(before.overview.totalQuantity).toFixed()).toBe('0.25');
  });

  it('counts a day that ends at a UTC midnight from hourly rows until the daily window that computes it has run', async () => {
    for (const zone of ['UTC', 'Asia/Kolkata', 'America/New_York']) {
      const t = await app.createTenant();
      const { id } = await app.createLicense(t.ownerKey, { timezone: zone });
      // Days apart from every other test's windows (windows are not per tenant).
      const day = Date.UTC(2026, 0, 10) + ZONES.indexOf(zone as never) * 7 * DAY;
      await writeHistoric(t.tenantId, [id], Array.from({ length: 10 }, (_, i) => ({ license: 0, usageType: 'api_call', quantity: '1.5', at: day + 6 * HOUR + i * HOUR })));
      // As if they had come on time: no late-event marks (folding those in would compute the day's row early).
      await pool().query('DELETE FROM rollup_dirty_hours WHERE license_id = $1', [id]);
      for (let h = day - 2 * DAY; h < day + 3 * DAY; h += HOUR) await aggregateHourlyWindow(rollups(), new Date(h), NOW);
      const date = new Date(day).toISOString().slice(0, 10);
      const events = async () => (await usage(t.ownerKey, { licenseId: id, startDate: date, endDate: date, granularity: 'daily' })).overview.eventCount;
      // The window of the day's own UTC date computes the local days ending during it: not this
      // UTC day (it ends at the next midnight), this Kolkata day (it ends at 18:30 UTC).
      await aggregateDailyWindow(pool(), new Date(day), NOW);
      expect([zone, await events()]).toEqual([zone, 10]);
      await aggregateDailyWindow(pool(), new Date(day + DAY), NOW);
      expect([zone, await events()]).toEqual([zone, 10]);
    }
  });

  it('stays exact after a license moves to another zone (its old daily rows are not used)', async () => {
    const t = await app.createTenant();
    const { id } = await app.createLicense(t.ownerKey, { timezone: 'UTC' });
    const specs: Spec[] = [];
    for (let at = FROM; at < FROM + 5 * DAY; at += HOUR) specs.push({ license: 0, usageType: 'api_call', quantity: '1', at });
    await writeHistoric(t.tenantId, [id], specs);
    for (let d = -1; d <= 6; d++) await aggregateDailyWindow(pool(), new Date(FROM + d * DAY), NOW);
    await aggregateHourlyWindow(rollups(), new Date(FROM + 6 * DAY), NOW);
    expect((await app.call('licenses.update', { id, timezone: 'Asia/Kolkata' }, t.ownerKey)).status).toBe(200);
    const res = await usage(t.ownerKey, { licenseId: id, startDate: '2026-03-02', endDate: '2026-03-03', granularity: 'daily' });
    expect(res.period.timezone).toBe('Asia/Kolkata');
    expect(res.timeSeries.map((p: { events: number }) => p.events)).toEqual([24, 24]);
  });

  it('refuses bad ranges with 400 and another tenant with 404', async () => {
    const base = { licenseId: ids[0], granularity: 'hourly' };
    expect((await app.call('analytics.usage', { ...base, startDate: '2026-01-01', endDate: '2026-04-02' }, ownerKey, { method: 'GET' })).status).toBe(200);
    expect((await app.call('analytics.usage', { ...base, startDate: '2026-01-01', endDate: '2026-04-03' }, ownerKey, { method: 'GET' })).status).toBe(400);
    expect((await app.call('analytics.usage', { ...base, startDate: '2026-01-02', endDate: '2026-01-01' }, ownerKey, { method: 'GET' })).status).toBe(400);
    expect((await app.call('analytics.usage', { ...base, startDate: '2026-02-30', endDate: '2026-03-01' }, ownerKey, { method: 'GET' })).status).toBe(400);
    expect((await app.call('analytics.usage', { ...base, startDate: '2026-01-01', endDate: '2026-01-01', timezone: '+05:30' }, ownerKey, { method: 'GET' })).status).toBe(400);
    const other = await app.createTenant();
    expect((await app.call('analytics.usage', { ...base, startDate: '2026-01-01', endDate: '2026-01-01' }, other.ownerKey, { method: 'GET' })).status).toBe(404);
    // The first and last dates a range may name answer (empty) in every zone; a day past either is a 400.
    for (const timezone of ['UTC', 'Pacific/Kiritimati', 'Pacific/Pago_Pago']) {
      const ask = (startDate: string, endDate: string) =>
        app.call('analytics.usage', { licenseId: ids[0], granularity: 'daily', startDate, endDate, timezone }, ownerKey, { method: 'GET' });
      for (const [startDate, endDate] of [['1970-01-01', '1970-01-02'], ['2999-12-30', '2999-12-31']]) {
        const res = await ask(startDate!, endDate!);
        expect([timezone, startDate, res.status, res.data.overview.totalQuantity]).toEqual([timezone, startDate, 200, '0']);
      }
      for (const [startDate, endDate] of [['1969-12-31', '1970-01-02'], ['2999-12-30', '3000-01-01'], ['0001-01-01', '0001-01-02']]) {
        const res = await ask(startDate!, endDate!);
        expect([timezone, startDate, res.status]).toEqual([timezone, startDate, 400]);
        expect(res.body.error?.message).toMatch(/1970-01-01 to 2999-12-31/);
      }
    }
  });
});

describe('breakdowns, top licenses and the platform view', () => {
  let owner: string;
  let tenantId: string;
  let ids: string[];
  const now = Date.now();
  const hourFloor = (t: number) => Math.floor(t / HOUR) * HOUR;
  const today = new Date(now).toISOString().slice(0, 10);
  const threeDaysAgo = new Date(now - 3 * DAY).toISOString().slice(0, 10);

  beforeAll(async () => {
    const t = await app.createTenant();
    owner = t.ownerKey;
    tenantId = t.tenantId;
    ids = (await Promise.all(['UTC', 'Asia/Kolkata'].map((timezone) => app.createLicense(owner, { timezone })))).map((l) => l.id);
    const platforms = ['ios', 'android', 'web', 'web', 'web', null];
    const events = Array.from({ length: 240 }, (_, i) => ({
      licenseId: ids[i % 3 === 0 ? 1 : 0],
      usageType: i % 4 === 0 ? 'tokens' : 'api_call',
      quantity: `${(i % 7) + 1}.5`,
      occurredAt: new Date(now - 60_000 - ((i * 17 * 60_000) % (3 * DAY))).toISOString(),
      ...(platforms[i % 6] ? { platform: platforms[i % 6] } : {}),
      ...(i % 5 ? { statusCode: [200, 201, 404, 500][i % 4] } : {}),
      sdkVersion: `1.${i % 3}.0`,
    }));
    for (let i = 0; i < events.length; i += 100) {
      const res = await app.call('usage.trackEvents', { events: events.slice(i, i + 100) }, owner);
      expect(res.data.accepted).toBe(Math.min(100, events.length - i));
    }
    // Roll up every ended hour and day so the platform view reads all three sources.
    for (let h = hourFloor(now - 3 * DAY - HOUR); h < hourFloor(now); h += HOUR) await aggregateHourlyWindow(rollups(), new Date(h), new Date(now));
    for (let d = Math.floor(now / DAY) * DAY - 4 * DAY; d < Math.floor(now / DAY) * DAY; d += DAY) await aggregateDailyWindow(pool(), new Date(d), new Date(now));
  }, 120_000);

  const range = () => ({ startDate: threeDaysAgo, endDate: today, timezone: 'UTC' });

  it('breaks usage down by a dimension: top N, the rest as "other", sums equal to SQL', async () => {
    const res = await app.call('analytics.breakdown', { ...range(), by: 'platform', limit: 2 }, owner, { method: 'GET' });
    expect(res.status).toBe(200);
    const { rows } = await pool().query<{ key: string | null; quantity: string; events: string }>(
      `SELECT platform AS key, sum(quantity)::text AS quantity, count(*)::text AS events FROM usage_events WHERE tenant_id = $1 GROUP BY 1 ORDER BY sum(quantity) DESC`,
      [tenantId],
    );
    expect(res.data.items.map((i: { key: string | null }) => i.key)).toEqual(rows.slice(0, 2).map((r) => r.key));
    expect(res.data.other.keys).toBe(rows.length - 2);
    const all = [...res.data.items, res.data.other].reduce((s: Prisma.Decimal, i: { quantity: string }) => s.plus(i.quantity), new Prisma.Decimal(0));
    expect(all.equals(rows.reduce((s, r) => s.plus(r.quantity), new Prisma.Decimal(0)))).toBe(true);
    expect(res.data.total.events).toBe(240);

    const status = await app.call('analytics.breakdown', { ...range(), by: 'statusClass', limit: 10 }, owner, { method: 'GET' });
    expect(status.data.items.map((i: { key: string | null }) => i.key).sort()).toEqual(['2xx', '4xx', '5xx', null].sort());
    const types = await app.call('analytics.breakdown', { ...range(), by: 'usageType' }, owner, { method: 'GET' });
    expect(types.data.items.map((i: { key: string; events: number }) => [i.key, i.events])).toEqual([['api_call', 180], ['tokens', 60]]);
  });

  it('limits a breakdown at 100 and refuses 0 and 101', async () => {
    for (const [limit, status] of [[100, 200], [101, 400], [0, 400], [1, 200]] as const) {
      const res = await app.call('analytics.breakdown', { ...range(), by: 'sdkVersion', limit }, owner, { method: 'GET' });
      expect([limit, res.status]).toEqual([limit, status]);
    }
    expect((await app.call('analytics.breakdown', { ...range(), by: 'continent' }, owner, { method: 'GET' })).status).toBe(400);
  });

  it('ranks a tenant\'s licenses by usage', async () => {
    const res = await app.call('analytics.topLicenses', { ...range(), limit: 1 }, owner, { method: 'GET' });
    expect(res.status).toBe(200);
    const { rows } = await pool().query<{ license_id: string; quantity: string; events: string }>(
      `SELECT license_id, sum(quantity)::text AS quantity, count(*)::text AS events FROM usage_events WHERE tenant_id = $1 GROUP BY 1 ORDER BY sum(quantity) DESC`,
      [tenantId],
    );
    expect(res.data.items).toHaveLength(1);
    expect(res.data.items[0]).toMatchObject({ licenseId: rows[0]!.license_id, events: Number(rows[0]!.events) });
    expect(eq(res.data.items[0].quantity, rows[0]!.quantity)).toBe(true);
  });

  it('exports every event of the range as CSV and JSON, streamed, with the API\'s authentication', async () => {
    const q = new URLSearchParams({ startDate: threeDaysAgo, endDate: today, timezone: 'UTC' });
    const get = (path: string, key: string | null, headers: Record<string, string> = {}) =>
      fetch(`${app.baseUrl}${path}`, { headers: { ...(key ? { authorization: `Bearer ${key}` } : {}), ...headers } });
    const csv = await get(`/api/export/events?${q}&format=csv`, owner);
    expect(csv.status).toBe(200);
    expect(csv.headers.get('content-type')).toMatch(/text\/csv/);
    const lines = (await csv.text()).trim().split('\n');
    expect(lines[0]).toMatch(/^id,license_id,usage_type,quantity,occurred_at/);
    expect(lines.length - 1).toBe(240);
    const json = await get(`/api/export/events?${q}&format=json&licenseId=${ids[1]}`, owner);
    const rows = (await json.json()) as { license_id: string }[];
    const { rows: count } = await pool().query<{ n: string }>('SELECT count(*)::text AS n FROM usage_events WHERE license_id = $1', [ids[1]]);
    expect(rows).toHaveLength(Number(count[0]!.n));
    expect(rows.every((r) => r.license_id === ids[1])).toBe(true);
    const rollups = await get(`/api/export/rollups?${q}&format=json`, owner);
    expect(rollups.status).toBe(200);
    const daily = (await rollups.json()) as { event_count: string }[];
    expect(daily.reduce((s, r) => s + Number(r.event_count), 0)).toBeGreaterThan(0);

    expect((await get(`/api/export/events?${q}`, null)).status).toBe(401);
    const ingest = await app.createKey(owner, 'ingest');
    expect((await get(`/api/export/events?${q}`, ingest.key)).status).toBe(403);
    const other = await app.createTenant();
    expect((await get(`/api/export/events?${q}&licenseId=${ids[0]}`, other.ownerKey)).status).toBe(404);
    expect((await get(`/api/export/events?${q}&format=xml`, owner)).status).toBe(400);
    expect((await get(`/api/export/events?startDate=2026-13-01&endDate=2026-01-01`, owner)).status).toBe(400);
    expect((await get(`/api/export/events?startDate=2023-01-01&endDate=2026-01-01`, owner)).status).toBe(400);
    expect((await get(`/api/export/nothing?${q}`, owner)).status).toBe(404);
    expect((await get(`/api/export/events?${q}`, app.adminKey)).status).toBe(400);
    // Bodies read to the end: an export left unread keeps streaming, and holds the tenant's export slot.
    const asAdmin = await get(`/api/export/events?${q}`, app.adminKey, { 'x-tally-tenant': tenantId });
    expect([asAdmin.status, (await asAdmin.text()).trim().split('\n').length - 1]).toEqual([200, 240]);

    const link = await app.call('analytics.export', { kind: 'rollups', format: 'json', startDate: threeDaysAgo, endDate: today }, owner, { method: 'GET' });
    expect(link.status).toBe(200);
    expect(link.data.url).toMatch(/^\/api\/export\/rollups\?/);
    const linked = await get(link.data.url, owner);
    expect([linked.status, Array.isArray(await linked.json())]).toEqual([200, true]);
  });

  it('writes every field of an export exactly: CSV quoting, nulls, numbers and properties as JSON', async () => {
    const t = await app.createTenant();
    const { id: licenseId } = await app.createLicense(t.ownerKey, { timezone: 'UTC' });
    const tricky = { licenseId, usageType: 'api_call', quantity: '1.5', userId: 'a,"b"\nc\r', route: '/x', statusCode: 500, durationMs: 12, properties: { k: 'v,"w"', n: [1, null] } };
    const plain = { licenseId, usageType: 'tokens', quantity: 2 };
    const res = await app.call('usage.trackEvents', { events: [tricky, plain] }, t.ownerKey);
    expect(res.data.accepted).toBe(2);
    const q = `licenseId=${licenseId}&startDate=${threeDaysAgo}&endDate=${today}&timezone=UTC`;
    const headers = { authorization: `Bearer ${t.ownerKey}` };
    const csv = await (await fetch(`${app.baseUrl}/api/export/events?format=csv&${q}`, { headers })).text();
    // RFC 4180, parsed here: quoted fields may hold commas, doubled quotes and line breaks.
    const records: string[][] = [];
    let field = '';
    let record: string[] = [];
    let quoted = false;
    for (let i = 0; i < csv.length; i++) {
      const c = csv[i]!;
      if (quoted) {
        if (c === '"' && csv[i + 1] === '"') {
          field += '"';
          i += 1;
        } else if (c === '"') quoted = false;
        else field += c;
      } else if (c === '"') quoted = true;
      else if (c === ',' || c === '\n') {
        record.push(field);
        field = '';
        if (c === '\n') {
          records.push(record);
          record = [];
        }
      } else field += c;
    }
    const [header, ...rows] = records;
    const byType = new Map(rows.map((r) => [r[header!.indexOf('usage_type')], Object.fromEntries(header!.map((h, i) => [h, r[i]]))]));
    expect(byType.get('api_call')).toMatchObject({ quantity: '1.5', user_id: tricky.userId, route: '/x', status_code: '500', duration_ms: '12', platform: '' });
    expect(JSON.parse(byType.get('api_call')!.properties!)).toEqual(tricky.properties);
    expect(byType.get('tokens')).toMatchObject({ quantity: '2', user_id: '', status_code: '', properties: '{}' });

    const json = (await (await fetch(`${app.baseUrl}/api/export/events?format=json&${q}`, { headers })).json()) as Record<string, unknown>[];
    const api = json.find((r) => r.usage_type === 'api_call')!;
    expect(api).toMatchObject({ quantity: '1.5', user_id: tricky.userId, status_code: 500, duration_ms: 12, platform: null, properties: tricky.properties });
    expect(Object.keys(api)).toEqual(header);
    expect(json.find((r) => r.usage_type === 'tokens')).toMatchObject({ quantity: '2', status_code: null, properties: {} });
  });

  it('streams a multi-batch export from one snapshot and gives its connection back when the client leaves or stalls', async () => {
    const t = await app.createTenant();
    const { id: licenseId } = await app.createLicense(t.ownerKey, { timezone: 'UTC' });
    // several batches, and megabytes more than socket buffers hold (so a paused client really stalls the export)
    const n = Math.max(EXPORT_BATCH_ROWS * 6, 30_000) + 7;
    await pool().query(
      `INSERT INTO usage_events (id, tenant_id, license_id, usage_type, quantity, occurred_at, payload_hash)
       SELECT gen_random_uuid(), $1, $2, 'api_call', i % 10, now() - interval '1 day' + (i % 3600) * interval '1 second', 'x'
         FROM generate_series(1, $3) AS i`,
      [t.tenantId, licenseId, n],
    );
    const url = (base: string) => `${base}/api/export/events?format=csv&licenseId=${licenseId}&startDate=${threeDaysAgo}&endDate=${today}&timezone=UTC`;
    const body = await (await fetch(url(app.baseUrl), { headers: { authorization: `Bearer ${t.ownerKey}` } })).text();
    const exported = body.trim().split('\n').slice(1).map((line) => line.split(',')[0]!);
    const { rows } = await pool().query<{ id: string }>('SELECT id FROM usage_events WHERE license_id = $1', [licenseId]);
    expect(exported).toHaveLength(n);
    expect(new Set(exported)).toEqual(new Set(rows.map((r) => r.id)));

    // Exports still holding a connection (a cursor mid-way) in this test's database.
    const streaming = async () =>
      Number(
        (
          await pool().query<{ n: string }>(
            `SELECT count(*)::text AS n FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'FETCH % FROM export_rows'`,
          )
        ).rows[0]!.n,
      );
    const until = async (want: number) => {
      for (let i = 0; i < 100 && (await streaming()) !== want; i++) await new Promise((r) => setTimeout(r, 50));
      return streaming();
    };
    // A client that reads a first chunk, then stops reading: the export waits mid-stream.
    const open = (base: string) =>
      new Promise<{ req: http.ClientRequest; res: http.IncomingMessage }>((resolve, reject) => {
        const req = http.get(url(base), { headers: { authorization: `Bearer ${t.ownerKey}` } }, (res) => {
          res.once('data', () => {
            res.pause();
            resolve({ req, res });
          });
        });
        req.on('error', reject);
      });
    const gone = await open(app.baseUrl);
    expect(await until(1)).toBe(1);
    gone.req.destroy();
    expect(await until(0)).toBe(0);

    const strict = await TestApp.start({ DATABASE_URL: db.url, USAGE_CACHE_TTL_SECONDS: '0', EXPORT_STALL_TIMEOUT_MS: '300' });
    try {
      const stalled = await open(strict.baseUrl);
      const closed = new Promise<boolean>((resolve) => stalled.res.on('close', () => resolve(stalled.res.complete)));
      expect(await until(1)).toBe(1);
      expect(await until(0)).toBe(0);
      stalled.res.resume();
      expect(await closed).toBe(false); // cut off: the client never mistakes it for a whole file
    } finally {
      await strict.close();
      // written straight into hours already rolled up (no late marks): not for the views below
      await pool().query('DELETE FROM usage_events WHERE license_id = $1', [licenseId]);
    }
  });

  it('gives admins the platform view, with events per day equal to the raw events', async () => {
    const res = await app.call('analytics.platform', { days: 7 }, app.adminKey, { method: 'GET' });
    expect(res.status).toBe(200);
    const first = new Date(Math.floor(now / DAY) * DAY - 6 * DAY).toISOString().slice(0, 10);
    const { rows } = await pool().query<{ n: string; tenants: string }>(
      `SELECT count(*)::text AS n, (SELECT count(*) FROM tenants)::text AS tenants FROM usage_events e JOIN licenses l ON l.id = e.license_id
        WHERE (e.occurred_at AT TIME ZONE l.timezone)::date >= $1::date`,
      [first],
    );
    expect(res.data.events).toBe(Number(rows[0]!.n));
    expect(res.data.tenants).toBe(Number(rows[0]!.tenants));
    expect(res.data.eventsPerDay).toHaveLength(7);
    // Per license-local date, the +05:30 license's days cut inside UTC hours.
    const perDay = await pool().query<{ date: string; n: string }>(
      `SELECT to_char((e.occurred_at AT TIME ZONE l.timezone)::date, 'YYYY-MM-DD') AS date, count(*)::text AS n
         FROM usage_events e JOIN licenses l ON l.id = e.license_id
        WHERE (e.occurred_at AT TIME ZONE l.timezone)::date >= $1::date GROUP BY 1`,
      [first],
    );
    const expected = new Map(perDay.rows.map((r) => [r.date, Number(r.n)]));
    expect(res.data.eventsPerDay).toEqual(
      res.data.eventsPerDay.map((d: { date: string }) => ({ date: d.date, events: expected.get(d.date) ?? 0 })),
    );
    expect(res.data.licenses.activeLast30Days).toBeGreaterThanOrEqual(2);
    const perTenant = await pool().query<{ tenant_id: string; n: string }>(
      `SELECT e.tenant_id, count(*)::text AS n FROM usage_events e JOIN licenses l ON l.id = e.license_id
        WHERE (e.occurred_at AT TIME ZONE l.timezone)::date >= $1::date GROUP BY 1 ORDER BY count(*) DESC, e.tenant_id`,
      [first],
    );
    expect(res.data.topTenants.map((t: { tenantId: string; events: number }) => [t.tenantId, t.events])).toEqual(
      perTenant.rows.slice(0, res.data.topTenants.length).map((r) => [r.tenant_id, Number(r.n)]),
    );
    expect((await app.call('analytics.platform', { days: 91 }, app.adminKey, { method: 'GET' })).status).toBe(400);
    expect((await app.call('analytics.platform', { days: 90 }, app.adminKey, { method: 'GET' })).status).toBe(200);
    expect((await app.call('analytics.platform', {}, owner, { method: 'GET' })).status).toBe(403);
  });
});

describe('analytics cache', () => {
  let cached: TestApp;
  beforeAll(async () => {
    cached = await TestApp.start({ DATABASE_URL: db.url, USAGE_CACHE_TTL_SECONDS: '300' });
  });
  afterAll(() => cached.close());

  const counter = async (result: 'hit' | 'miss') => {
    const text = await (await fetch(`${cached.baseUrl}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith(`tally_analytics_cache_requests_total{view="usage",result="${result}"}`));
    return Number(line?.split(' ')[1] ?? 0);
  };
  const deps = () => jobDepsOf(cached.services);
  const ctx = { jobId: 'test', attempt: 1, maxAttempts: 1, reportProgress: async () => undefined };

  it('answers again from Redis, counts hits and misses, and drops answers when late events or a recalculation change rollups', async () => {
    const t = await cached.createTenant();
    const { id } = await cached.createLicense(t.ownerKey, { timezone: 'UTC' });
    // Ten days ago: inside the retention horizon, so a recalculation recomputes it.
    const day = Math.floor(Date.now() / DAY) * DAY - 10 * DAY;
    const date = new Date(day).toISOString().slice(0, 10);
    const input = { licenseId: id, startDate: date, endDate: date, granularity: 'daily' };
    const read = async () => {
      const { data } = await cached.call('analytics.usage', input, t.ownerKey, { method: 'GET' });
      expect(JSON.stringify(usageAnalyticsOutput.parse(data))).toBe(JSON.stringify(data)); // a cached answer is sent as the text Redis holds
      return data.overview.totalQuantity;
    };
    const redisValue = async () => {
      const keys = await cached.services.redis.keys(`${cached.services.env.REDIS_KEY_PREFIX}analytics:{${t.tenantId}}:*`);
      const answers = keys.filter((k) => !k.endsWith(':gen'));
      expect(answers).toHaveLength(1);
      return cached.services.redis.get(answers[0]!);
    };
    const [hits, misses] = [await counter('hit'), await counter('miss')];
    expect(await read()).toBe('0');
    expect(await redisValue()).toMatch(/^\d+:\d+\n~$/); // asked once: a marker, not the answer
    expect(await read()).toBe('0');
    expect(await redisValue()).toMatch(/^\d+:\d+\n\{"period"/); // asked again within the TTL: the answer
    expect(await read()).toBe('0');
    expect([(await counter('hit')) - hits, (await counter('miss')) - misses]).toEqual([1, 2]);

    const late = day + 10 * HOUR + 15 * 60_000;
    await writeHistoric(t.tenantId, [id], [{ license: 0, usageType: 'api_call', quantity: '2', at: late }]);
    expect(await read()).toBe('0'); // cached until the rollups change
    await jobHandlers['usage.aggregate.hourly'](deps(), { window: hourWindow(new Date(day + 11 * HOUR)) }, ctx);
    expect(await read()).toBe('2');

    await pool().query(`UPDATE usage_events SET quantity = 5 WHERE license_id = $1`, [id]); // a correction only a backfill folds in
    await jobHandlers['usage.recalculate'](deps(), { tenantId: t.tenantId, licenseId: id, startDate: date, endDate: date }, ctx);
    expect(await read()).toBe('5');
  });

  it('answers from the final days kept in the process, exactly, until the generation changes', async () => {
    const t = await cached.createTenant();
    const zone = 'Asia/Kolkata';
    const { id } = await cached.createLicense(t.ownerKey, { timezone: zone });
    const start = Math.floor(Date.now() / DAY) * DAY - 12 * DAY;
    const specs: Spec[] = Array.from({ length: 300 }, (_, i) => ({
      license: 0,
      usageType: i % 3 ? 'api_call' : 'tokens',
      quantity: `${i % 17}.${String((i * 7919) % 1_000_000).padStart(6, '0')}`,
      at: start + ((i * 2_654_435) % (10 * DAY)),
      userId: `u${i % 5}`,
      statusCode: i % 7 ? 200 : 500,
    }));
    await writeHistoric(t.tenantId, [id], specs);
    const now = new Date();
    for (let h = start; h < start + 11 * DAY; h += HOUR) await aggregateHourlyWindow(rollups(), new Date(h), now);
    for (let d = start - DAY; d < start + 11 * DAY; d += DAY) await aggregateDailyWindow(pool(), new Date(d), now);

    const date = (at: number) => new Date(at).toISOString().slice(0, 10);
    const ask = async (from: number, to: number, granularity: string) =>
      (await cached.call('analytics.usage', { licenseId: id, startDate: date(start + from * DAY), endDate: date(start + to * DAY), granularity }, t.ownerKey, { method: 'GET' })).data;
    const check = async (from: number, to: number, granularity: string) => {
      const got = await ask(from, to, granularity);
      const truth = await rawTruth({ tenantId: t.tenantId, licenseId: id, startDate: date(start + from * DAY), endDate: date(start + to * DAY), granularity, zone });
      expect([granularity, from, to, eq(got.overview.totalQuantity, truth.overview.quantity), got.overview.eventCount, got.overview.uniqueUsers, got.overview.errorCount]).toEqual([
        granularity, from, to, true, Number(truth.overview.events), Number(truth.overview.users), Number(truth.overview.errors),
      ]);
      for (const p of got.timeSeries) {
        const b = truth.buckets.get(Date.parse(p.period));
        expect([p.period, eq(p.quantity, b?.quantity), p.events]).toEqual([p.period, true, Number(b?.events ?? 0)]);
      }
    };
    const ranges: [number, number, string][] = [[1, 9, 'daily'], [0, 11, 'daily'], [2, 5, 'weekly'], [1, 10, 'monthly'], [3, 4, 'hourly'], [2, 8, 'daily']];
    for (const r of ranges) await check(...r);

    // A final day's rollup changed behind the cache's back: a new range still shows what the process holds...
    const day = date(start + 5 * DAY);
    const before = (await ask(5, 5, 'weekly')).overview.totalQuantity;
    await pool().query(`UPDATE usage_rollups_daily SET quantity = quantity + 1000 WHERE license_id = $1 AND date = $2 AND usage_type = 'api_call'`, [id, day]);
    expect((await ask(4, 6, 'weekly')).timeSeries.length).toBeGreaterThan(0);
    expect((await ask(5, 5, 'monthly')).overview.totalQuantity).toBe(before);
    // ...until the generation changes: then it reads the day again.
    await cached.services.analyticsCache.invalidate([t.tenantId]);
    expect(new Prisma.Decimal((await ask(5, 5, 'daily')).overview.totalQuantity).minus(before).toFixed()).toBe('1000');
    // A recalculation recomputes the day from the raw events and drops the tenant's generation: exact again.
    await jobHandlers['usage.recalculate'](deps(), { tenantId: t.tenantId, licenseId: id, startDate: date(start), endDate: date(start + 11 * DAY) }, ctx);
    for (const r of ranges) await check(...r);

    // A late event in a final day counts once the hourly job folds it in (it drops the tenant's generation).
    const late = start + 4 * DAY + 5 * HOUR + 17 * 60_000;
    await writeHistoric(t.tenantId, [id], [{ license: 0, usageType: 'api_call', quantity: '1000.5', at: late, userId: 'u9' }]);
    await jobHandlers['usage.aggregate.hourly'](deps(), { window: hourWindow(new Date(Math.floor(Date.now() / HOUR) * HOUR - HOUR)) }, ctx);
    for (const r of ranges) await check(...r);
  });

  it('plans from the coverage kept in the process, checked in the same statement: one round trip, exact when the facts moved', async () => {
    const t = await cached.createTenant();
    const zone = 'America/New_York';
    const { id } = await cached.createLicense(t.ownerKey, { timezone: zone });
    // Windows are not per tenant: these days are apart from the other tests' (their windows done here only).
    const start = Math.floor(Date.now() / DAY) * DAY - 40 * DAY;
    const specs: Spec[] = Array.from({ length: 240 }, (_, i) => ({
      license: 0,
      usageType: i % 4 ? 'api_call' : 'tokens',
      quantity: `${i % 13}.${String((i * 104_729) % 1_000_000).padStart(6, '0')}`,
      at: start + ((i * 3_456_789) % (15 * DAY)),
      userId: `u${i % 6}`,
    }));
    await writeHistoric(t.tenantId, [id], specs);
    const now = new Date();
    const jobs = cached.services.rollups; // its invalidations reach this app's generations
    // Days 0..9 rolled up (hourly and daily windows), the rest raw.
    for (let h = start; h < start + 10 * DAY; h += HOUR) await aggregateHourlyWindow(jobs, new Date(h), now);
    for (let d = start - DAY; d < start + 10 * DAY; d += DAY) await aggregateDailyWindow(pool(), new Date(d), now);

    const analyticsPool = cached.services.db.pool;
    const named: string[] = [];
    const query = analyticsPool.query.bind(analyticsPool) as (...args: unknown[]) => unknown;
    const spy = jest.spyOn(analyticsPool, 'query').mockImplementation(((config: unknown, ...rest: unknown[]) => {
      const name = (config as { name?: string } | null)?.name;
      if (name?.startsWith('analytics.')) named.push(name);
      return query(config, ...rest);
    }) as never);
    const date = (at: number) => new Date(at).toISOString().slice(0, 10);
    /** The answer equals SQL over the raw events; returns how many statements it took (the final-day cache's own reads aside). */
    const check = async (from: number, to: number, granularity: string) => {
      named.length = 0;
      const input = { licenseId: id, startDate: date(start + from * DAY), endDate: date(start + to * DAY), granularity };
      const got = (await cached.call('analytics.usage', input, t.ownerKey, { method: 'GET' })).data;
      const statements = named.filter((n) => n !== 'analytics.final-days').length;
      const truth = await rawTruth({ tenantId: t.tenantId, licenseId: id, startDate: input.startDate, endDate: input.endDate, granularity, zone });
      expect([from, to, eq(got.overview.totalQuantity, truth.overview.quantity), got.overview.eventCount, got.overview.uniqueUsers]).toEqual([
        from, to, true, Number(truth.overview.events), Number(truth.overview.users),
      ]);
      for (const p of got.timeSeries) {
        const b = truth.buckets.get(Date.parse(p.period));
        expect([p.period, eq(p.quantity, b?.quantity), p.events]).toEqual([p.period, true, Number(b?.events ?? 0)]);
      }
      return statements;
    };
    try {
      // The first question reads the coverage around it (and the final days), then the sums.
      expect(await check(0, 13, 'daily')).toBe(2);
      // Other ranges near it: sums, distinct users and the coverage check in one statement.
      expect(await check(1, 12, 'daily')).toBe(1);
      expect(await check(2, 14, 'weekly')).toBe(1);
      expect(await check(3, 11, 'hourly')).toBe(1);
      // A refused range reads nothing (an unknown license too) and leaves what was kept as it was.
      named.length = 0;
      for (const [licenseId, startDate, endDate, percentiles] of [
        [id, date(start + 5 * DAY), date(start + 4 * DAY), false],
        [id, date(start), date(start + 100 * DAY), true],
        ['00000000-0000-4000-8000-000000000000', date(start + 5 * DAY), date(start + 4 * DAY), false],
      ] as const) {
        const refused = await cached.call('analytics.usage', { licenseId, startDate, endDate, granularity: 'daily', percentiles }, t.ownerKey, { method: 'GET' });
        expect([refused.status, refused.body.error?.message]).toEqual([400, expect.stringContaining('endDate')]);
      }
      expect(named).toEqual([]);
      expect(await check(1, 12, 'daily')).toBe(1);

      // A late event in a final day (its daily row does not hold it): the check sees the new mark,
      // and the answer is made again from what it read.
      await writeHistoric(t.tenantId, [id], [{ license: 0, usageType: 'api_call', quantity: '1000.25', at: start + 5 * DAY + 10 * HOUR + 7 * 60_000, userId: 'late' }]);
      expect(await check(1, 13, 'daily')).toBe(2);
      expect(await check(0, 12, 'monthly')).toBe(2); // the stale coverage was dropped: read around again
      expect(await check(2, 13, 'daily')).toBe(1);
      // The hourly job folds the late event in and drops the tenant's generation: everything kept is read again.
      for (let h = start + 10 * DAY; h < start + 12 * DAY; h += HOUR) await aggregateHourlyWindow(jobs, new Date(h), now);
      expect(await check(0, 14, 'daily')).toBe(2);
      expect(await check(1, 14, 'daily')).toBe(1);
      // A window done since the coverage was kept (no new generation): the check sees it, the answer is made again.
      await aggregateDailyWindow(pool(), new Date(start + 10 * DAY), now);
      expect(await check(0, 14, 'weekly')).toBe(2);
      expect(await check(1, 13, 'daily')).toBe(2); // read around again, then the sums
      expect(await check(3, 14, 'daily')).toBe(1);
      // Far from what was kept: read around it again.
      expect(await check(-150, -100, 'daily')).toBe(2);
    } finally {
      spy.mockRestore();
    }
  });

  it('keeps the final-day cache within its bound, and whole for every read, whatever the interleaving', async () => {
    const t = await cached.createTenant();
    const ids = [(await cached.createLicense(t.ownerKey)).id, (await cached.createLicense(t.ownerKey)).id];
    const dates = ['2026-10-01', '2026-10-02', '2026-10-03', '2026-10-04'];
    for (const [i, id] of ids.entries()) {
      await pool().query(
        `INSERT INTO usage_rollups_daily (tenant_id, license_id, usage_type, date, timezone, quantity, event_count, max_quantity, distinct_users, error_count, duration_ms_sum)
         SELECT $1, $2, 'api_call', d::date, 'UTC', $3::numeric + extract(day FROM d), 1, 1, 1, 0, 0 FROM unnest($4::date[]) AS d`,
        [t.tenantId, id, i * 100, dates],
      );
    }
    const cache = new FinalDayCache(5); // fewer days than two licenses' four
    const read = (i: number, generation: string, some = dates) =>
      cache.read(pool(), { tenantId: t.tenantId, licenseId: ids[i]!, zone: 'UTC' }, generation, some).then((days) =>
        some.map((d) => formatMicro(BigInt(days.get(d)!.get('api_call')!.quantity))),
      );
    const want = (i: number, some = dates) => some.map((d) => String(i * 100 + Number(d.slice(8))));
    expect(await read(0, 'g1')).toEqual(want(0));
    expect(await read(1, 'g1')).toEqual(want(1)); // past the bound: starts over, this read whole
    expect(await read(0, 'g1', dates.slice(1))).toEqual(want(0, dates.slice(1)));
    // two generations of one license at once, and two reads of the same missing days at once
    const [a, b, c] = await Promise.all([read(0, 'g1'), read(0, 'g2'), read(0, 'g2')]);
    expect([a, b, c]).toEqual([want(0), want(0), want(0)]);
    // past the bound with days this read already holds and days it must fetch: it keeps them all
    const small = new FinalDayCache(3);
    const readSmall = (some: string[]) =>
      small.read(pool(), { tenantId: t.tenantId, licenseId: ids[0]!, zone: 'UTC' }, 'g1', some).then((days) => some.map((d) => formatMicro(BigInt(days.get(d)!.get('api_call')!.quantity))));
    expect(await readSmall(dates.slice(0, 2))).toEqual(want(0, dates.slice(0, 2)));
    expect(await readSmall(dates)).toEqual(want(0));
  });

  it('drops a tenant\'s answers when a license moves to another zone or is deleted', async () => {
    const t = await cached.createTenant();
    const { id } = await cached.createLicense(t.ownerKey, { timezone: 'UTC' });
    const date = new Date(Date.now() - 3 * DAY).toISOString().slice(0, 10);
    const input = { licenseId: id, startDate: date, endDate: date, granularity: 'daily' };
    const read = () => cached.call('analytics.usage', input, t.ownerKey, { method: 'GET' });
    expect((await read()).data.period.timezone).toBe('UTC');
    expect((await read()).data.period.timezone).toBe('UTC'); // now from the cache
    expect((await cached.call('licenses.update', { id, timezone: 'Asia/Kolkata' }, t.ownerKey)).status).toBe(200);
    expect((await read()).data.period.timezone).toBe('Asia/Kolkata');
    expect((await cached.call('licenses.delete', { id }, t.ownerKey)).status).toBe(200);
    expect((await read()).status).toBe(404);
  });
});
