import fc from 'fast-check';
import { TZDate, tzOffset, tzScan } from '@date-fns/tz';
import { bucketsOf, localDayAround, localMidnight, rangeOf } from '../../src/domain/analytics/buckets';
import { periodContaining } from '../../src/domain/periods';

const HOUR = 3_600_000;
const DAY = 86_400_000;
const ZONES = Intl.supportedValuesOf('timeZone');
const FIRST_DAY = Date.UTC(1970, 0, 1) / DAY;
const LAST_DAY = Date.UTC(2040, 11, 31) / DAY;

const wallAt = (at: number, zone: string) => at + tzOffset(zone, new Date(at)) * 60_000;
const dateText = (wall: number) => new Date(wall).toISOString().slice(0, 10);

/**
 * The instant a transition tzScan reports really happened. tzScan can report it late (Asia/Tehran
 * moved from +03:30 to +04:30 at 1977-03-21T19:30Z, 23:00 local; tzScan says 20:00Z), so the
 * instant is walked back, a minute at a time, while the zone already read the new offset.
 */
function transitionInstant(zone: string, reported: number, offset: number): number {
  let at = reported;
  while (at > reported - 3 * HOUR && tzOffset(zone, new Date(at - 60_000)) === offset) at -= 60_000;
  return at;
}

/**
 * What localMidnight must answer, from TZDate and the zone's transitions (tzScan): TZDate's
 * instant, except where 00:00 came twice (the later one, as PostgreSQL's AT TIME ZONE cuts
 * the daily rollups; TZDate takes either, depending on the zone) or never came (the instant
 * the clocks jumped past it; TZDate answers 23:45 of the day before for Asia/Kathmandu on
 * 1986-01-01).
 */
function expectedMidnight(wall: number, zone: string): number {
  for (const change of tzScan(zone, { start: new Date(wall - 2 * DAY), end: new Date(wall + 2 * DAY) })) {
    const at = transitionInstant(zone, change.date.getTime(), change.offset);
    const before = (change.offset - change.change) * 60_000;
    const after = change.offset * 60_000;
    const [low, high] = [at + Math.min(before, after), at + Math.max(before, after)];
    if (wall < low || wall >= high) continue;
    return change.change < 0 ? wall - after : at; // repeated: the later reading; skipped: the jump
  }
  const d = new Date(wall);
  const instant = new TZDate(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate(), zone).getTime();
  // A skipped 00:00 that tzScan did not report (seen for the alias Asia/Katmandu on 1986-01-01):
  // TZDate then answers an instant of the day before; the day begins at the first minute after
  // it that reads as the date.
  let first = instant;
  while (dateText(wallAt(first, zone)) < dateText(wall) && first < instant + 2 * HOUR) first += 60_000;
  return first;
}

/** Dates 1970-2040: anywhere, or next to one of the zone's transitions in a sampled year. */
const zoneAndDate = fc.constantFrom(...ZONES).chain((zone) =>
  fc.tuple(
    fc.constant(zone),
    fc.oneof(
      fc.integer({ min: FIRST_DAY, max: LAST_DAY }).map((day) => day * DAY),
      fc.tuple(fc.integer({ min: 1970, max: 2040 }), fc.nat(), fc.integer({ min: -1, max: 1 })).map(([year, pick, shift]) => {
        const changes = tzScan(zone, { start: new Date(Date.UTC(year, 0, 1)), end: new Date(Date.UTC(year + 1, 0, 1)) });
        if (changes.length === 0) return Date.UTC(year, 0, 1);
        const wall = wallAt(changes[pick % changes.length]!.date.getTime(), zone);
        return Math.floor(wall / DAY) * DAY + shift * DAY;
      }),
    ),
  ),
);

describe('local midnights in every IANA zone, 1970-2040', () => {
  it('are the instants TZDate and the zone transitions give, and every local day advances', () => {
    fc.assert(
      fc.property(zoneAndDate, ([zone, wall]) => {
        const d = new Date(wall);
        const [y, m, day] = [d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()];
        const start = localMidnight(y, m, day, zone);
        expect({ zone, date: dateText(wall), start: new Date(start).toISOString() }).toEqual({
          zone,
          date: dateText(wall),
          start: new Date(expectedMidnight(wall, zone)).toISOString(),
        });
        // The day [start, next start) is empty only for a date the zone skipped; otherwise
        // it holds its own date, and a daily period from its start ends strictly later.
        const next = localMidnight(y, m, day + 1, zone);
        expect(next).toBeGreaterThanOrEqual(start);
        if (next > start) {
          expect(dateText(wallAt(start, zone))).toBe(dateText(wall));
          expect(localDayAround(start, zone)).toEqual({ start, end: next });
        } else {
          expect(dateText(wallAt(start, zone)) > dateText(wall)).toBe(true);
        }
        expect(localDayAround(start, zone).end).toBeGreaterThan(start);
      }),
      { numRuns: 2500 },
    );
  });

  // Each of these hung bucketsOf (and with it the process) before: localMidnight(skipped
  // date) fell back to the day before, so the daily period after it never ended.
  it.each([
    ['Pacific/Apia', '2011-12-29', '2011-12-30', '2011-12-29T10:00:00.000Z', '2011-12-30T10:00:00.000Z'],
    ['Pacific/Fakaofo', '2011-12-29', '2011-12-30', '2011-12-29T11:00:00.000Z', '2011-12-30T11:00:00.000Z'],
    ['Pacific/Kwajalein', '1993-08-20', '1993-08-21', '1993-08-20T12:00:00.000Z', '1993-08-21T12:00:00.000Z'],
    ['Pacific/Kiritimati', '1994-12-30', '1994-12-31', '1994-12-30T10:00:00.000Z', '1994-12-31T10:00:00.000Z'],
  ])('%s: %s is one daily and 24 hourly periods; the skipped %s is none', (zone, before, skipped, start, end) => {
    const daily = bucketsOf(rangeOf(before, skipped, 'daily', zone), 'daily', zone);
    expect(daily.map((b) => [new Date(b.start).toISOString(), new Date(b.end).toISOString()])).toEqual([[start, end]]);
    const hourly = bucketsOf(rangeOf(before, skipped, 'hourly', zone), 'hourly', zone);
    expect(hourly).toHaveLength(24);
    expect(hourly.every((b) => b.end - b.start === HOUR)).toBe(true);
    expect(bucketsOf(rangeOf(skipped, skipped, 'daily', zone), 'daily', zone)).toEqual([]);
    for (const granularity of ['weekly', 'monthly'] as const) {
      const buckets = bucketsOf(rangeOf(before, skipped, granularity, zone), granularity, zone);
      expect(buckets.map((b) => [new Date(b.start).toISOString(), new Date(b.end).toISOString()])).toEqual([[start, end]]);
    }
  });

  it('cuts quota periods of a license in Pacific/Apia around the skipped 2011-12-30 without a gap or an overlap', () => {
    const zone = 'Pacific/Apia';
    const lastHour = new Date('2011-12-30T09:30:00Z'); // 23:30 on the 29th, local
    const firstHour = new Date('2011-12-30T10:30:00Z'); // 00:30 on the 31st, local
    const jump = '2011-12-30T10:00:00.000Z';
    const day29 = periodContaining('daily', lastHour, zone);
    const day31 = periodContaining('daily', firstHour, zone);
    expect([day29.start.toISOString(), day29.end.toISOString()]).toEqual(['2011-12-29T10:00:00.000Z', jump]);
    expect([day31.start.toISOString(), day31.end.toISOString()]).toEqual([jump, '2011-12-31T10:00:00.000Z']);
    // A monthly period anchored on the 30th starts on the first instant on or after it.
    const anchor = new Date('2011-10-30T12:00:00Z');
    const before = periodContaining('monthly', lastHour, zone, anchor);
    const after = periodContaining('monthly', firstHour, zone, anchor);
    expect(before.end.toISOString()).toBe(jump);
    expect(after.start.toISOString()).toBe(jump);
    const week = periodContaining('weekly', lastHour, zone);
    expect(week.start.getTime()).toBeLessThan(lastHour.getTime());
    expect(week.end.getTime()).toBeGreaterThan(firstHour.getTime());
  });

  it('starts a day whose 00:00 was skipped at the jump, when the jump is on a half hour of UTC (Asia/Tehran, 1977-03-22)', () => {
    // 23:00 +03:30 (19:30Z) on the 21st became 00:00 +04:30: the 22nd starts at 19:30Z.
    expect(new Date(localMidnight(1977, 2, 22, 'Asia/Tehran')).toISOString()).toBe('1977-03-21T19:30:00.000Z');
    const day = periodContaining('daily', new Date('1977-03-22T08:00:00Z'), 'Asia/Tehran');
    expect([day.start.toISOString(), day.end.toISOString()]).toEqual(['1977-03-21T19:30:00.000Z', '1977-03-22T19:30:00.000Z']);
  });

  it('takes a repeated 00:00 the second time, as PostgreSQL does (Atlantic/Azores sets clocks back from 01:00)', () => {
    // 2026-10-25 01:00 UTC+0 -> 00:00 UTC-1: the 25th starts at 00:00 UTC-1 = 01:00Z.
    expect(new Date(localMidnight(2026, 9, 25, 'Atlantic/Azores')).toISOString()).toBe('2026-10-25T01:00:00.000Z');
    // Quota periods cut the same day as analytics and the daily rollups.
    const day = periodContaining('daily', new Date('2026-10-25T12:00:00Z'), 'Atlantic/Azores');
    expect([day.start.toISOString(), day.end.toISOString()]).toEqual(['2026-10-25T01:00:00.000Z', '2026-10-26T01:00:00.000Z']);
  });
});
