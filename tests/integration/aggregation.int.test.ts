import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import { useTestApp } from '../helpers/harness';
import { rollupDifferences } from '../helpers/rollup-check';
import { aggregateDailyWindow, aggregateHourlyWindow } from '../../src/domain/rollups/aggregate';
import { ensureUsageEventPartitions } from '../../src/domain/usage/partitions';
import { normalizeEvent } from '../../src/domain/usage/ingest';

const HOUR = 3_600_000;
const DAY = 86_400_000;
const ZONES = ['UTC', 'Asia/Kolkata', 'America/New_York'];

const app = useTestApp({}, { isolatedDatabase: 'aggregation' });

const pool = () => app.services.db.pool;
const rollups = () => app.services.rollups;
const hourFloor = (t: number) => Math.floor(t / HOUR) * HOUR;
const dayFloor = (t: number) => Math.floor(t / DAY) * DAY;

/** What the schedule would have run by now for these hours: each hourly window, then each ended daily window. */
async function runScheduledWindows(hours: Iterable<number>, now: number) {
  for (const h of [...new Set(hours)].sort()) await aggregateHourlyWindow(rollups(), new Date(h), new Date(now));
  const days = new Set([...hours].map((h) => dayFloor(h)));
  for (const d of [...days].sort()) {
    // local days of a UTC date D end on D or D + 1
    for (const day of [d - DAY, d, d + DAY]) {
      if (day + DAY <= now) await aggregateDailyWindow(pool(), new Date(day), new Date(now));
    }
  }
}

async function track(ownerKey: string, events: unknown[]) {
  const res = await app.call('usage.trackEvents', { events }, ownerKey);
  if (res.status !== 200) throw new Error(JSON.stringify(res.body));
  return res.data as { accepted: number; duplicates: number; rejected: unknown[] };
}

const eventArb = fc.record({
  license: fc.integer({ min: 0, max: 2 }),
  usageType: fc.constantFrom('api_call', 'tokens', 'storage.gb'),
  whole: fc.integer({ min: 0, max: 1_000_000 }),
  fraction: fc.integer({ min: 0, max: 999_999 }),
  hoursAgo: fc.integer({ min: 1, max: 80 }),
  msIntoHour: fc.integer({ min: 0, max: HOUR - 1 }),
  userId: fc.constantFrom(null, 'u1', 'u2', 'u3'),
  statusCode: fc.constantFrom(null, 200, 201, 399, 400, 404, 500),
  durationMs: fc.option(fc.integer({ min: 0, max: 60_000 }), { nil: null }),
  key: fc.option(fc.integer({ min: 0, max: 30 }), { nil: null }),
  late: fc.boolean(),
});

describe('rollups equal a from-scratch GROUP BY of the raw events', () => {
  it('for any events, duplicates, arrival order, batch split and late arrival', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(eventArb, { minLength: 1, maxLength: 60 }),
        fc.array(fc.nat(), { minLength: 60, maxLength: 60 }),
        fc.array(fc.integer({ min: 1, max: 25 }), { minLength: 1, maxLength: 10 }),
        fc.array(fc.nat({ max: 59 }), { maxLength: 15 }),
        async (specs, orderKeys, splits, repeats) => {
          const { ownerKey } = await app.createTenant();
          const licenses = await Promise.all(ZONES.map((timezone) => app.createLicense(ownerKey, { timezone })));
          const now = Date.now();
          const runId = randomUUID().slice(0, 8);
          const events = specs.map((s) => ({
            licenseId: licenses[s.license]!.id,
            usageType: s.usageType,
            quantity: `${s.whole}.${String(s.fraction).padStart(6, '0')}`,
            occurredAt: new Date(hourFloor(now) - s.hoursAgo * HOUR + s.msIntoHour).toISOString(),
            ...(s.userId ? { userId: s.userId } : {}),
            ...(s.statusCode ? { statusCode: s.statusCode } : {}),
            ...(s.durationMs !== null ? { durationMs: s.durationMs } : {}),
            ...(s.key !== null ? { idempotencyKey: `${runId}-${s.key}` } : {}),
          }));
          // Repeats resend earlier events (duplicates); a reused key with another payload is refused.
          const sent = [...events, ...repeats.filter((i) => i < events.length).map((i) => events[i]!)];
          const order = sent.map((e, i) => ({ e, i, k: orderKeys[i % orderKeys.length]! })).sort((a, b) => a.k - b.k || a.i - b.i);
          const onTime = order.filter(({ i }) => !specs[i % specs.length]!.late).map(({ e }) => e);
          const late = order.filter(({ i }) => specs[i % specs.length]!.late).map(({ e }) => e);

          const sendInBatches = async (list: unknown[]) => {
            for (let at = 0, s = 0; at < list.length; s++) {
              const size = splits[s % splits.length]!;
              await track(ownerKey, list.slice(at, at + size));
              at += size;
            }
          };
          await sendInBatches(onTime);
          const hours = specs.map((s) => hourFloor(now) - s.hoursAgo * HOUR);
          await runScheduledWindows(hours, now);
          // Late events land in windows already rolled up; the next hourly run fixes them.
          await sendInBatches(late);
          await aggregateHourlyWindow(rollups(), new Date(hourFloor(now) - HOUR), new Date(now));

          const diff = await rollupDifferences(
            pool(),
            licenses.map((l) => l.id),
            { hoursBefore: new Date(hourFloor(now)), daysEndedBefore: new Date(dayFloor(now)) },
          );
          expect(diff).toEqual({ hourly: [], daily: [] });
        },
      ),
      { numRuns: 12 },
    );
  }, 240_000);
});

describe('late events', () => {
  it('mark their window and the next hourly run recomputes it (hourly and daily)', async () => {
    const { ownerKey } = await app.createTenant();
    const { id: licenseId } = await app.createLicense(ownerKey, { timezone: 'Asia/Kolkata' });
    const now = Date.now();
    const hour = hourFloor(now) - 30 * HOUR;
    await track(ownerKey, [{ licenseId, usageType: 'api_call', quantity: 2, occurredAt: new Date(hour + 1000).toISOString() }]);
    await runScheduledWindows([hour], now);
    const before = await app.prisma.usageRollupHourly.findFirstOrThrow({ where: { licenseId, hour: new Date(hour) } });
    expect(before.quantity.toFixed()).toBe('2');

    await track(ownerKey, [{ licenseId, usageType: 'api_call', quantity: 3.5, occurredAt: new Date(hour + 2000).toISOString() }]);
    expect(await app.prisma.rollupDirtyHour.count({ where: { licenseId } })).toBe(1);
    const stale = await app.prisma.usageRollupHourly.findFirstOrThrow({ where: { licenseId, hour: new Date(hour) } });
    expect(stale.quantity.toFixed()).toBe('2');

    await aggregateHourlyWindow(rollups(), new Date(hourFloor(now) - HOUR), new Date(now));
    const fixed = await app.prisma.usageRollupHourly.findFirstOrThrow({ where: { licenseId, hour: new Date(hour) } });
    expect(fixed.quantity.toFixed()).toBe('5.5');
    expect(fixed.eventCount).toBe(2n);
    expect(await app.prisma.rollupDirtyHour.count({ where: { licenseId } })).toBe(0);
    const diff = await rollupDifferences(pool(), [licenseId], {
      hoursBefore: new Date(hourFloor(now)),
      daysEndedBefore: new Date(dayFloor(now)),
    });
    expect(diff).toEqual({ hourly: [], daily: [] });
  });

  it('refuses to roll up an hour that has not ended', async () => {
    // Half an hour before its end (in the last two minutes of an hour the run is allowed: late marks cover it).
    const now = hourFloor(Date.now()) - 30 * 60_000;
    await expect(aggregateHourlyWindow(rollups(), new Date(hourFloor(now)), new Date(now))).rejects.toThrow(/not ended/);
    await expect(aggregateHourlyWindow(rollups(), new Date(hourFloor(now)), new Date(hourFloor(now) + HOUR - 121_000))).rejects.toThrow(/not ended/);
  });
});

describe('daily rollups in the license time zone', () => {
  // Written straight through the event writer: these dates are older than the ingestion window.
  async function writeHistoric(licenseId: string, tenantId: string, instants: number[]) {
    await ensureUsageEventPartitions(pool(), new Date(), new Date(Date.UTC(2026, 2, 1)));
    const events = instants.map((t, i) => {
      const e = normalizeEvent(
        tenantId, 'live',
        { licenseId, usageType: 'api_call', quantity: String(i + 1), occurredAt: new Date(t).toISOString() } as never,
        { maxAgeMs: Number.MAX_SAFE_INTEGER, maxFutureMs: DAY },
        new Date(),
      );
      if ('status' in e) throw new Error(e.message);
      return e;
    });
    const outcomes = await app.services.eventWriter.write(events);
    expect(outcomes.every((o) => o.status === 'accepted')).toBe(true);
  }

  it.each([
    ['UTC', 24, 24],
    ['Asia/Kolkata', 24, 24],
    ['America/New_York', 23, 25],
  ])('cuts days at local midnight in %s (spring day %i h, autumn day %i h) and sums to the range total', async (timezone, springHours, autumnHours) => {
    const { ownerKey, tenantId } = await app.createTenant();
    const { id: licenseId } = await app.createLicense(ownerKey, { timezone });
    // Events every 30 minutes across the 2026 DST changes in New York (Mar 8, Nov 1).
    const ranges = [
      [Date.UTC(2026, 2, 6), Date.UTC(2026, 2, 11)],
      [Date.UTC(2026, 9, 30), Date.UTC(2026, 10, 4)],
    ];
    const instants = ranges.flatMap(([a, b]) => Array.from({ length: (b! - a!) / (HOUR / 2) }, (_, i) => a! + i * (HOUR / 2)));
    await writeHistoric(licenseId, tenantId, instants);
    const days = new Set(instants.map((t) => dayFloor(t)));
    const late = Math.max(...instants) + 3 * DAY;
    for (const d of [...days, Math.min(...days) - DAY, Math.max(...days) + DAY].sort()) {
      await aggregateDailyWindow(pool(), new Date(d), new Date(late));
    }
    for (const h of new Set(instants.map(hourFloor))) await aggregateHourlyWindow(rollups(), new Date(h), new Date(late));

    const rows = await app.prisma.usageRollupDaily.findMany({ where: { licenseId }, orderBy: { date: 'asc' } });
    const total = instants.reduce((sum, _, i) => sum + i + 1, 0);
    expect(rows.reduce((sum, r) => sum + Number(r.quantity), 0)).toBe(total);
    expect(rows.reduce((sum, r) => sum + Number(r.eventCount), 0)).toBe(instants.length);
    const hourlyTotal = await app.prisma.usageRollupHourly.aggregate({ where: { licenseId }, _sum: { quantity: true } });
    expect(hourlyTotal._sum.quantity?.toFixed()).toBe(String(total));

    const count = (date: string) => Number(rows.find((r) => r.date.toISOString().startsWith(date))?.eventCount ?? 0);
    expect(count('2026-03-08')).toBe(springHours * 2); // two events per hour of the local day
    expect(count('2026-11-01')).toBe(autumnHours * 2);
    expect(count('2026-03-09')).toBe(48);
    expect(rows.every((r) => r.timezone === timezone)).toBe(true);
    const diff = await rollupDifferences(pool(), [licenseId], { hoursBefore: new Date(late), daysEndedBefore: new Date(late) });
    expect(diff).toEqual({ hourly: [], daily: [] });
  });
});

describe('usage.current', () => {
  it('shows a new event at once, and the same totals after the hours are rolled up', async () => {
    const { ownerKey } = await app.createTenant();
    const { id: licenseId } = await app.createLicense(ownerKey, { plan: 'trial', timezone: 'Asia/Kolkata' });
    const now = Date.now();
    await track(ownerKey, [
      { licenseId, usageType: 'api_call', quantity: '1.25', occurredAt: new Date(now - 2 * HOUR).toISOString() },
      { licenseId, usageType: 'api_call', quantity: 2 },
    ]);
    const read = async () => {
      const res = await app.call('usage.current', { licenseId, usageType: 'api_call' }, ownerKey, { method: 'GET' });
      expect(res.status).toBe(200);
      return res.data.usage as { period: string; used: string; limit: string | null; remaining: string | null; periodStart: string; resetAt: string }[];
    };
    const first = await read();
    expect(first.map((u) => u.period)).toEqual(['daily', 'weekly', 'monthly']);
    // expected totals follow the periods (the 2-hours-old event may fall in the previous one)
    const expectedIn = (u: { periodStart: string }, recent: number) =>
      (Date.parse(u.periodStart) <= now - 2 * HOUR ? 1.25 : 0) + recent;
    for (const u of first) expect(Number(u.used)).toBe(expectedIn(u, 2));
    const weekly = first.find((u) => u.period === 'weekly')!;
    expect(weekly.limit).toBe('700');
    expect(Number(weekly.remaining)).toBe(700 - expectedIn(weekly, 2));
    const daily = first.find((u) => u.period === 'daily')!;
    expect(daily.limit).toBe('100');
    expect(first.find((u) => u.period === 'monthly')!.limit).toBeNull();
    // an Asia/Kolkata day starts at 18:30 UTC
    expect(daily.periodStart.endsWith('T18:30:00.000Z')).toBe(true);

    for (const h of [hourFloor(now) - 3 * HOUR, hourFloor(now) - 2 * HOUR, hourFloor(now) - HOUR]) {
      await aggregateHourlyWindow(rollups(), new Date(h), new Date(now));
    }
    expect((await read()).map((u) => u.used)).toEqual(first.map((u) => u.used));
    await track(ownerKey, [{ licenseId, usageType: 'api_call', quantity: '0.75' }]);
    for (const u of await read()) expect(Number(u.used)).toBe(expectedIn(u, 2.75));
  });

  it('is 404 for an unknown license and 400 for a bad usage type', async () => {
    const { ownerKey } = await app.createTenant();
    const missing = await app.call('usage.current', { licenseId: randomUUID() }, ownerKey, { method: 'GET' });
    expect(missing.status).toBe(404);
    const { id: licenseId } = await app.createLicense(ownerKey);
    const bad = await app.call('usage.current', { licenseId, usageType: 'Not Valid' }, ownerKey, { method: 'GET' });
    expect(bad.status).toBe(400);
  });
});
