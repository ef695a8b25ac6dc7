import fc from 'fast-check';
import { useTestApp } from '../helpers/harness';
import { ensureUsageEventPartitions } from '../../src/domain/usage/partitions';
import { normalizeEvent } from '../../src/domain/usage/ingest';
import { MAX_PERCENTILE_RANGE_DAYS } from '../../src/domain/analytics/usage-analytics';
import { usageAnalyticsOutput } from '../../src/server/routers/analytics/usage';

const DAY = 86_400_000;
const app = useTestApp({ USAGE_CACHE_TTL_SECONDS: '0' }, { isolatedDatabase: 'geo' });
const pool = () => app.services.db.pool;

/** Stable in the GeoLite2 data: Google's resolvers (US), RIPE NCC (NL), the University of Tokyo and WIDE (JP). */
const PUBLIC: readonly [string, string][] = [
  ['8.8.8.8', 'US'],
  ['2001:4860:4860::8888', 'US'],
  ['193.0.6.139', 'NL'],
  ['2001:67c:2e8:22::c100:68b', 'NL'],
  ['133.11.0.1', 'JP'],
  ['2001:200::1', 'JP'],
];
const PRIVATE = ['10.0.0.1', '192.168.1.20', 'fe80::1', 'fd00::5', '::ffff:127.0.0.1'];

describe('country of an event', () => {
  it('is a column of usage_events and of every partition of it', async () => {
    const { rows } = await pool().query<{ table: string; type: string | null }>(
      `SELECT c.relname AS table, format_type(a.atttypid, a.atttypmod) AS type
         FROM pg_class c LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'country' AND NOT a.attisdropped
        WHERE c.oid = 'usage_events'::regclass OR c.oid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = 'usage_events'::regclass)`,
    );
    expect(rows.length).toBeGreaterThan(1);
    for (const r of rows) expect([r.table, r.type]).toEqual([r.table, 'character(2)']);
  });

  it('is looked up from ipAddress at ingestion (IPv4 and IPv6), null for non-public and missing addresses, and breaks usage down', async () => {
    const { ownerKey, tenantId } = await app.createTenant();
    const license = await app.createLicense(ownerKey);
    const events = [
      ...PUBLIC.map(([ip], i) => ({ licenseId: license.id, usageType: 'api_call', quantity: i + 1, ipAddress: ip, userId: `u${i}` })),
      ...PRIVATE.map((ip) => ({ licenseId: license.id, usageType: 'api_call', quantity: 10, ipAddress: ip })),
      { licenseId: license.id, usageType: 'api_call', quantity: 100 }, // the caller's address: loopback here
    ];
    const batch = await app.call('usage.trackEvents', { events }, ownerKey);
    expect(batch.data.accepted).toBe(events.length);
    // One event alone goes through the group committer.
    const single = await app.call('usage.trackEvent', { licenseId: license.id, usageType: 'api_call', quantity: 1000, ipAddress: '193.0.6.139' }, ownerKey);
    expect(single.status).toBe(200);

    const { rows } = await pool().query<{ ip_address: string | null; country: string | null }>(
      'SELECT ip_address, country FROM usage_events WHERE tenant_id = $1 ORDER BY quantity',
      [tenantId],
    );
    const byAddress = new Map(rows.map((r) => [r.ip_address, r.country]));
    for (const [ip, country] of PUBLIC) expect([ip, byAddress.get(ip)]).toEqual([ip, country]);
    for (const ip of PRIVATE) expect([ip, byAddress.get(ip)]).toEqual([ip, null]);
    expect(rows.filter((r) => r.country === null)).toHaveLength(PRIVATE.length + 1);

    const today = new Date().toISOString().slice(0, 10);
    const res = await app.call(
      'analytics.breakdown',
      { licenseId: license.id, startDate: today, endDate: today, timezone: 'UTC', by: 'country', limit: 2 },
      ownerKey,
      { method: 'GET' },
    );
    expect(res.status).toBe(200);
    // NL 3 + 4 + 1000, null 5 × 10 + 100, JP 5 + 6, US 1 + 2
    expect(res.data.items).toEqual([
      { key: 'NL', quantity: '1007', events: 3, share: expect.any(Number) },
      { key: null, quantity: '150', events: 6, share: expect.any(Number) },
    ]);
    expect(res.data.other).toMatchObject({ keys: 2, quantity: '14', events: 4 });
    expect(res.data.total).toEqual({ quantity: '1171', events: 13 });

    // The personal-data export shows it; erasing the user removes it with the address.
    const exported = await app.call('privacy.exportUser', { userId: 'u2' }, ownerKey);
    expect(exported.data.licenses[0].events[0]).toMatchObject({ ipAddress: '193.0.6.139', country: 'NL' });
    expect((await app.call('privacy.eraseUser', { userId: 'u2' }, ownerKey)).data.events).toBe(1);
    const erased = await pool().query('SELECT ip_address, country FROM usage_events WHERE tenant_id = $1 AND quantity = 3', [tenantId]);
    expect(erased.rows).toEqual([{ ip_address: null, country: null }]);
  });
});

/** Events of a license at given times with given durations (null: none), written as ingestion writes them. */
async function writeEvents(tenantId: string, licenseId: string, specs: { at: number; durationMs: number | null; usageType?: string }[]) {
  const events = specs.map((s) => {
    const e = normalizeEvent(
      tenantId, 'live',
      {
        licenseId,
        usageType: s.usageType ?? 'api_call',
        quantity: '1',
        occurredAt: new Date(s.at).toISOString(),
        ...(s.durationMs === null ? {} : { durationMs: s.durationMs }),
      },
      { maxAgeMs: Number.MAX_SAFE_INTEGER, maxFutureMs: DAY },
      new Date(),
    );
    if ('status' in e) throw new Error(e.message);
    return e;
  });
  for (let i = 0; i < events.length; i += 1000) {
    const outcomes = await app.services.eventWriter.write(events.slice(i, i + 1000));
    if (!outcomes.every((o) => o.status === 'accepted')) throw new Error('events not accepted');
  }
}

interface Percentiles {
  p50DurationMs: number | null;
  p95DurationMs: number | null;
  p99DurationMs: number | null;
}

/** PostgreSQL's percentile_cont over the raw events, per local day in the zone and over the range: the definition. */
async function sqlPercentiles(licenseId: string, startDate: string, endDate: string, zone: string, usageType?: string) {
  const { rows } = await pool().query<{ day: string | null; p50: string | null; p95: string | null; p99: string | null }>(
    `SELECT to_char((occurred_at AT TIME ZONE $4)::date, 'YYYY-MM-DD') AS day,
            round(percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms)::numeric, 3)::text AS p50,
            round(percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms)::numeric, 3)::text AS p95,
            round(percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_ms)::numeric, 3)::text AS p99
       FROM usage_events
      WHERE license_id = $1 AND duration_ms IS NOT NULL AND ($5::text IS NULL OR usage_type = $5)
        AND (occurred_at AT TIME ZONE $4)::date BETWEEN $2::date AND $3::date
      GROUP BY GROUPING SETS ((1), ())`,
    [licenseId, startDate, endDate, zone, usageType ?? null],
  );
  const num = (v: string | null) => (v === null ? null : Number(v)); // the grand total of no rows is NULL
  const of = (r: { p50: string | null; p95: string | null; p99: string | null }): Percentiles => ({ p50DurationMs: num(r.p50), p95DurationMs: num(r.p95), p99DurationMs: num(r.p99) });
  const none: Percentiles = { p50DurationMs: null, p95DurationMs: null, p99DurationMs: null };
  const overall = rows.find((r) => r.day === null);
  return { overall: overall ? of(overall) : none, perDay: new Map(rows.filter((r) => r.day !== null).map((r) => [r.day!, of(r)])), none };
}

describe('response-time percentiles', () => {
  const FROM = Date.UTC(2026, 10, 2); // inside retention, before today
  const DAYS = 4;
  const startDate = '2026-11-02';
  const endDate = '2026-11-05';

  beforeAll(async () => {
    await ensureUsageEventPartitions(pool(), new Date(), new Date(FROM));
  });

  it('equal percentile_cont over the raw events, per day and over the range, for any durations', async () => {
    const { ownerKey, tenantId } = await app.createTenant();
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.record({
            at: fc.integer({ min: FROM - DAY, max: FROM + (DAYS + 1) * DAY - 1 }), // a day either side of the range too
            durationMs: fc.option(fc.oneof(fc.integer({ min: 0, max: 2_000 }), fc.integer({ min: 0, max: 2_147_483_647 })), { nil: null, freq: 5 }),
            usageType: fc.constantFrom('api_call', 'tokens'),
          }),
          { minLength: 0, maxLength: 120 },
        ),
        fc.constantFrom('UTC', 'Asia/Kolkata', 'America/New_York'),
        fc.constantFrom(undefined, 'tokens'),
        async (specs, timezone, usageType) => {
          const license = await app.createLicense(ownerKey, { timezone });
          await writeEvents(tenantId, license.id, specs);
          const res = await app.call(
            'analytics.usage',
            { licenseId: license.id, startDate, endDate, granularity: 'daily', percentiles: true, ...(usageType ? { usageType } : {}) },
            ownerKey,
            { method: 'GET' },
          );
          expect(res.status).toBe(200);
          expect(JSON.stringify(usageAnalyticsOutput.parse(res.data))).toBe(JSON.stringify(res.data)); // the documented answer, nothing more (meta.answer)
          const truth = await sqlPercentiles(license.id, startDate, endDate, timezone, usageType);
          const pick = (x: Percentiles) => ({ p50DurationMs: x.p50DurationMs, p95DurationMs: x.p95DurationMs, p99DurationMs: x.p99DurationMs });
          expect(pick(res.data.overview)).toEqual(truth.overall);
          expect(res.data.timeSeries).toHaveLength(DAYS);
          for (const entry of res.data.timeSeries) {
            expect([entry.period, pick(entry)]).toEqual([entry.period, truth.perDay.get(entry.period.slice(0, 10)) ?? truth.none]);
          }
        },
      ),
      { numRuns: 15 },
    );
  }, 180_000);

  it('cut hours, weeks and months the way the series does', async () => {
    const { ownerKey, tenantId } = await app.createTenant();
    const license = await app.createLicense(ownerKey, { timezone: 'UTC' });
    // Hour h of Nov 2 holds durations h, h + 10, h + 20; Nov 3 holds 1000.
    await writeEvents(tenantId, license.id, [
      ...Array.from({ length: 24 * 3 }, (_, i) => ({ at: FROM + (i % 24) * 3_600_000 + 60_000, durationMs: (i % 24) + 10 * Math.floor(i / 24) })),
      { at: FROM + DAY + 5_000, durationMs: 1000 },
    ]);
    const hourly = await app.call('analytics.usage', { licenseId: license.id, startDate, endDate: startDate, granularity: 'hourly', percentiles: true }, ownerKey, { method: 'GET' });
    expect(hourly.data.timeSeries).toHaveLength(24);
    // Three values h, h + 10, h + 20: p50 = h + 10, p95 = h + 19, p99 = h + 19.8 (interpolated).
    hourly.data.timeSeries.forEach((e: Percentiles, h: number) =>
      expect(e).toMatchObject({ p50DurationMs: h + 10, p95DurationMs: h + 19, p99DurationMs: Math.round((h + 19.8) * 1000) / 1000 }),
    );
    const monthly = await app.call('analytics.usage', { licenseId: license.id, startDate, endDate, granularity: 'monthly', percentiles: true }, ownerKey, { method: 'GET' });
    const truth = await sqlPercentiles(license.id, startDate, endDate, 'UTC');
    expect(monthly.data.timeSeries).toEqual([expect.objectContaining(truth.overall)]);
    expect(monthly.data.overview).toMatchObject(truth.overall);
  });

  it('are opt-in, and bounded to a range of 92 days', async () => {
    const { ownerKey, tenantId } = await app.createTenant();
    const license = await app.createLicense(ownerKey, { timezone: 'UTC' });
    await writeEvents(tenantId, license.id, [{ at: FROM + 1000, durationMs: 40 }]);
    const base = { licenseId: license.id, startDate, endDate, granularity: 'daily' };
    const plain = await app.call('analytics.usage', base, ownerKey, { method: 'GET' });
    expect(plain.status).toBe(200);
    expect(plain.data.overview).not.toHaveProperty('p50DurationMs');
    expect(plain.data.timeSeries[0]).not.toHaveProperty('p50DurationMs');
    expect((await app.call('analytics.usage', { ...base, percentiles: false }, ownerKey, { method: 'GET' })).data).toEqual(plain.data);
    const asked = await app.call('analytics.usage', { ...base, percentiles: true }, ownerKey, { method: 'GET' });
    expect(asked.data.overview).toMatchObject({ avgDurationMs: 40, p50DurationMs: 40, p95DurationMs: 40, p99DurationMs: 40 });
    expect(asked.data.timeSeries[1]).toMatchObject({ events: 0, p50DurationMs: null, p95DurationMs: null, p99DurationMs: null });

    expect(MAX_PERCENTILE_RANGE_DAYS).toBe(92);
    const within = { ...base, startDate: '2026-08-06', endDate: '2026-11-05', percentiles: true }; // 92 days
    expect((await app.call('analytics.usage', within, ownerKey, { method: 'GET' })).status).toBe(200);
    const beyond = await app.call('analytics.usage', { ...within, startDate: '2026-08-05' }, ownerKey, { method: 'GET' });
    expect(beyond.status).toBe(400);
    expect(beyond.body.error?.message).toMatch(/at most 92 days/);
    // Without percentiles the daily range stays what it was.
    expect((await app.call('analytics.usage', { ...within, startDate: '2026-08-05', percentiles: undefined }, ownerKey, { method: 'GET' })).status).toBe(200);
    expect((await app.call('analytics.usage', { ...base, percentiles: 'yes' }, ownerKey, { method: 'GET' })).status).toBe(400);
  });
});

describe('the platform view', () => {
  it('adds countries and per-day response times from raw events when asked, equal to SQL', async () => {
    const { ownerKey } = await app.createTenant();
    const license = await app.createLicense(ownerKey, { timezone: 'Asia/Kolkata' });
    const events = [
      ...PUBLIC.map(([ip], i) => ({ licenseId: license.id, usageType: 'api_call', ipAddress: ip, durationMs: 10 * (i + 1) })),
      { licenseId: license.id, usageType: 'api_call', ipAddress: '10.1.2.3', durationMs: 7 },
      { licenseId: license.id, usageType: 'api_call', occurredAt: new Date(Date.now() - 2 * DAY).toISOString(), durationMs: 300 },
    ];
    expect((await app.call('usage.trackEvents', { events }, ownerKey)).data.accepted).toBe(events.length);

    const plain = await app.call('analytics.platform', { days: 7 }, app.adminKey, { method: 'GET' });
    expect(plain.status).toBe(200);
    expect(plain.data).not.toHaveProperty('countries');
    expect(plain.data).not.toHaveProperty('responseTimes');

    const res = await app.call('analytics.platform', { days: 7, top: 3, countries: true, percentiles: true }, app.adminKey, { method: 'GET' });
    expect(res.status).toBe(200);
    const first = new Date(Math.floor(Date.now() / DAY) * DAY - 6 * DAY).toISOString().slice(0, 10);
    const last = new Date().toISOString().slice(0, 10);
    const local = `(e.occurred_at AT TIME ZONE l.timezone)::date`;
    const countries = await pool().query<{ country: string | null; n: string }>(
      `SELECT e.country, count(*)::text AS n FROM usage_events e JOIN licenses l ON l.id = e.license_id
        WHERE ${local} BETWEEN $1::date AND $2::date GROUP BY 1 ORDER BY count(*) DESC, 1 NULLS LAST LIMIT 3`,
      [first, last],
    );
    expect(res.data.countries).toEqual(countries.rows.map((r) => ({ country: r.country, events: Number(r.n) })));
    expect(res.data.countries.some((c: { country: string | null }) => c.country !== null)).toBe(true);
    const perDay = await pool().query<{ date: string; n: string; p50: string; p95: string; p99: string }>(
      `SELECT to_char(${local}, 'YYYY-MM-DD') AS date, count(*)::text AS n,
              round(percentile_cont(0.5) WITHIN GROUP (ORDER BY e.duration_ms)::numeric, 3)::text AS p50,
              round(percentile_cont(0.95) WITHIN GROUP (ORDER BY e.duration_ms)::numeric, 3)::text AS p95,
              round(percentile_cont(0.99) WITHIN GROUP (ORDER BY e.duration_ms)::numeric, 3)::text AS p99
         FROM usage_events e JOIN licenses l ON l.id = e.license_id
        WHERE e.duration_ms IS NOT NULL AND ${local} BETWEEN $1::date AND $2::date GROUP BY 1 ORDER BY 1`,
      [first, last],
    );
    expect(perDay.rows.length).toBeGreaterThan(0);
    expect(res.data.responseTimes).toEqual(
      perDay.rows.map((r) => ({ date: r.date, events: Number(r.n), p50DurationMs: Number(r.p50), p95DurationMs: Number(r.p95), p99DurationMs: Number(r.p99) })),
    );
    expect((await app.call('analytics.platform', { countries: 1 }, app.adminKey, { method: 'GET' })).status).toBe(400);
    expect((await app.call('analytics.platform', { countries: true }, ownerKey, { method: 'GET' })).status).toBe(403);
  });
});
