import { useTestApp } from '../helpers/harness';
import { aggregateDailyWindow, aggregateHourlyWindow } from '../../src/domain/rollups/aggregate';
import { ensureUsageEventPartitions } from '../../src/domain/usage/partitions';
import { normalizeEvent } from '../../src/domain/usage/ingest';

const HOUR = 3_600_000;
const DAY = 86_400_000;

// Zones that skipped a whole calendar date: analytics.usage over it looped forever (the
// daily period after the day before never ended) and ran the process out of heap.
const SKIPS = [
  { zone: 'Pacific/Apia', before: '2011-12-29', skipped: '2011-12-30', start: '2011-12-29T10:00:00.000Z', jump: '2011-12-30T10:00:00.000Z' },
  { zone: 'Pacific/Fakaofo', before: '2011-12-29', skipped: '2011-12-30', start: '2011-12-29T11:00:00.000Z', jump: '2011-12-30T11:00:00.000Z' },
  { zone: 'Pacific/Kwajalein', before: '1993-08-20', skipped: '1993-08-21', start: '1993-08-20T12:00:00.000Z', jump: '1993-08-21T12:00:00.000Z' },
  { zone: 'Pacific/Kiritimati', before: '1994-12-30', skipped: '1994-12-31', start: '1994-12-30T10:00:00.000Z', jump: '1994-12-31T10:00:00.000Z' },
] as const;

const app = useTestApp({ USAGE_CACHE_TTL_SECONDS: '0' }, { isolatedDatabase: 'skipped_dates' });

beforeAll(async () => {
  await ensureUsageEventPartitions(app.services.db.pool, new Date(Date.UTC(2012, 1, 1)), new Date(Date.UTC(2011, 11, 1)));
}, 180_000);

interface Usage {
  period: { start: string; end: string };
  overview: { totalQuantity: string; eventCount: number };
  timeSeries: { period: string; quantity: string; events: number }[];
}

describe('analytics over a date the zone skipped', () => {
  it.each(SKIPS)('$zone $before to $skipped: 200 with the day before as the only day, daily and hourly', async ({ zone, before, skipped, start, jump }) => {
    const { ownerKey } = await app.createTenant();
    const readKey = (await app.createKey(ownerKey, 'read')).key;
    const ask = (granularity: string, startDate: string = before, endDate: string = skipped) =>
      app.call<Usage>('analytics.usage', { timezone: zone, startDate, endDate, granularity }, readKey, { method: 'GET' });

    const daily = await ask('daily');
    expect(daily.status).toBe(200);
    expect(daily.data.period).toMatchObject({ start, end: jump });
    expect(daily.data.timeSeries).toEqual([{ period: expect.stringMatching(new RegExp(`^${before}T00:00:00[+-]`)), quantity: '0', events: 0 }]);

    const hourly = await ask('hourly');
    expect(hourly.status).toBe(200);
    expect(hourly.data.timeSeries).toHaveLength(24);
    expect(hourly.data.timeSeries.every((p) => p.period.startsWith(before))).toBe(true);

    for (const granularity of ['weekly', 'monthly']) {
      const res = await ask(granularity);
      expect(res.status).toBe(200);
      expect(res.data.timeSeries).toHaveLength(1);
    }
    // The skipped date alone is an empty range: no period at all.
    const alone = await ask('daily', skipped, skipped);
    expect(alone.status).toBe(200);
    expect(alone.data.timeSeries).toEqual([]);
    expect(alone.data.period).toMatchObject({ start: jump, end: jump });
  });

  it('rolls up the last day before the skip of a Pacific/Apia license in the daily window that ends it', async () => {
    const { ownerKey, tenantId } = await app.createTenant();
    const license = await app.createLicense(ownerKey, { timezone: 'Pacific/Apia' });
    // One event an hour from 2011-12-29 00:00 (-10) to 2011-12-31 23:00 (+14): 24 on the 29th, 24 on the 31st.
    const first = Date.parse('2011-12-29T10:00:00Z');
    const events = Array.from({ length: 48 }, (_, i) => {
      const e = normalizeEvent(
        tenantId, 'live',
        { licenseId: license.id, usageType: 'api_call', quantity: '1', occurredAt: new Date(first + i * HOUR + 60_000).toISOString() },
        { maxAgeMs: Number.MAX_SAFE_INTEGER, maxFutureMs: DAY },
        new Date(),
      );
      if ('status' in e) throw new Error(e.message);
      return e;
    });
    expect((await app.services.eventWriter.write(events)).every((o) => o.status === 'accepted')).toBe(true);
    const pool = app.services.db.pool;
    // The daily windows alone (the hourly job would also recompute the days of its late marks).
    for (const date of ['2011-12-29', '2011-12-30', '2011-12-31', '2012-01-01']) await aggregateDailyWindow(pool, new Date(`${date}T00:00:00Z`));

    const { rows } = await pool.query<{ date: string; quantity: string }>(
      `SELECT to_char(date, 'YYYY-MM-DD') AS date, quantity::text FROM usage_rollups_daily WHERE license_id = $1 ORDER BY date`,
      [license.id],
    );
    // The daily window of UTC 2011-12-30 ends both the 29th and the skipped 30th; the 29th was left out.
    expect(rows.map((r) => [r.date, Number(r.quantity)])).toEqual([
      ['2011-12-29', 24],
      ['2011-12-31', 24],
    ]);

    const res = await app.call<Usage>(
      'analytics.usage',
      { licenseId: license.id, startDate: '2011-12-29', endDate: '2011-12-31', granularity: 'daily' },
      ownerKey,
      { method: 'GET' },
    );
    expect(res.status).toBe(200);
    expect(res.data.timeSeries.map((p) => [p.period, p.quantity])).toEqual([
      ['2011-12-29T00:00:00-10:00', '24'],
      ['2011-12-31T00:00:00+14:00', '24'],
    ]);
    expect(res.data.overview.totalQuantity).toBe('48');
    for (let t = first; t < first + 48 * HOUR; t += HOUR) await aggregateHourlyWindow(app.services.rollups, new Date(t));
    const again = await app.call<Usage>('analytics.usage', { licenseId: license.id, startDate: '2011-12-29', endDate: '2011-12-31', granularity: 'daily' }, ownerKey, { method: 'GET' });
    expect(again.data.timeSeries).toEqual(res.data.timeSeries);
  });
});
