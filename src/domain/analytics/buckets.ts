import { tzOffset } from '@date-fns/tz';
import { z } from 'zod';
import { AppError } from '../../lib/errors';
import { DAY_MS, HOUR_MS } from '../../lib/time';

export type Granularity = 'hourly' | 'daily' | 'weekly' | 'monthly';

/** A half-open span of time [start, end), in epoch milliseconds. */
export interface Span {
  start: number;
  end: number;
}

/** Earliest and latest date an analytics range or export may name (usage is never outside them). */
export const FIRST_DATE = '1970-01-01';
export const LAST_DATE = '2999-12-31';

/** A calendar date (`YYYY-MM-DD`) from FIRST_DATE to LAST_DATE, as analytics ranges and exports take them. */
export const calendarDate = z.iso.date().refine((d) => d >= FIRST_DATE && d <= LAST_DATE, `must be a date from ${FIRST_DATE} to ${LAST_DATE}`);

/** Longest range per request, in local calendar days: enough for a quarter of hours or three years of days. */
export const MAX_RANGE_DAYS: Record<Granularity, number> = { hourly: 92, daily: 1096, weekly: 1096, monthly: 1096 };

/**
 * Pure functions of (zone, instant), remembered: an Intl offset lookup costs microseconds and
 * a year of daily periods needs thousands of them, always at the same instants (local
 * midnights). Bounded: a memo starts over when it holds `limit` entries.
 */
class ZoneMemo<T> {
  private readonly zones = new Map<string, Map<number, T>>();
  private size = 0;

  constructor(
    private readonly compute: (at: number, timezone: string) => T,
    private readonly limit = 20_000,
  ) {}

  get(at: number, timezone: string): T {
    let zone = this.zones.get(timezone);
    const known = zone?.get(at);
    if (known !== undefined) return known;
    const value = this.compute(at, timezone);
    if (this.size >= this.limit) {
      this.zones.clear();
      this.size = 0;
      zone = undefined;
    }
    if (!zone) this.zones.set(timezone, (zone = new Map()));
    zone.set(at, value);
    this.size += 1;
    return value;
  }
}

const isUtc = (timezone: string) => timezone === 'UTC' || timezone === 'Etc/UTC';
const offsets = new ZoneMemo((at, timezone) => tzOffset(timezone, new Date(at)) * 60_000);

function offsetMs(at: number, timezone: string): number {
  return isUtc(timezone) ? 0 : offsets.get(at, timezone);
}

/** Wall-clock fields of an instant in `timezone`, read from a Date shifted by the offset. */
function wallClock(at: number, timezone: string): Date {
  return new Date(at + offsetMs(at, timezone));
}

/**
 * The first instant of a local calendar date in `timezone` (normalizing day and month
 * overflow as Date.UTC does): the instant the wall clock reads 00:00 that day. Where 00:00
 * comes twice (clocks set back from 01:00), the later one, as PostgreSQL's `AT TIME ZONE`
 * (which cuts the daily rollups) and `TZDate` take it. Where it never comes (a DST gap at
 * 00:00), the day starts when the clocks jump; where the whole date never came (Pacific/Apia
 * went from 2011-12-29 to 2011-12-31), that is the start of the next date, so the skipped
 * date is an empty span and no period. Either way `localMidnight(d + 1) > at` for every
 * instant `at` on local date d, which keeps every loop over periods moving.
 */
export function localMidnight(year: number, month: number, day: number, timezone: string): number {
  const wall = Date.UTC(year, month, day);
  return isUtc(timezone) ? wall : midnights.get(wall, timezone);
}

/** Offsets stay within ±16 h (LMT included): the instant of a wall time lies within ±27 h of it read as UTC. */
const SEARCH_SPAN_MS = 27 * HOUR_MS;

/**
 * Keyed by the wall time read as a UTC instant (Date.UTC(y, m, d)). Each offset in effect
 * near the wall time gives a candidate instant; a candidate is exact when that offset is the
 * one in effect at it. With no exact candidate the wall time falls in a gap, and the gap's
 * end (the first instant past it on the wall clock) is found by bisection.
 */
const midnights = new ZoneMemo((wall, timezone) => {
  const wallAt = (t: number) => t + offsetMs(t, timezone);
  const offsetsNear = new Set([wall - SEARCH_SPAN_MS, wall, wall + SEARCH_SPAN_MS].map((t) => offsetMs(t, timezone)));
  for (const offset of [...offsetsNear]) offsetsNear.add(offsetMs(wall - offset, timezone));
  const exact = [...offsetsNear].map((offset) => wall - offset).filter((t) => wallAt(t) === wall);
  if (exact.length) return Math.max(...exact);
  // Invariant: wallAt(before) < wall < wallAt(after).
  let before = wall - SEARCH_SPAN_MS;
  let after = wall + SEARCH_SPAN_MS;
  while (after - before > 1) {
    const mid = Math.floor((before + after) / 2);
    if (wallAt(mid) < wall) before = mid;
    else after = mid;
  }
  return after;
});

function parseDate(date: string): [number, number, number] {
  const [y, m, d] = date.split('-').map(Number) as [number, number, number];
  return [y, m - 1, d];
}

/** The local calendar date (`YYYY-MM-DD`) of an instant in `timezone`. */
export function localDateOf(at: number, timezone: string): string {
  return localDates.get(at, timezone);
}

const localDates = new ZoneMemo((at, timezone) => wallClock(at, timezone).toISOString().slice(0, 10));

/**
 * The local day [midnight, next midnight) containing `at`: 23, 24 or 25 hours (or 23.5 on Lord
 * Howe). Remembered (a year of daily periods asks for the same midnights on every request), so
 * the span is shared and frozen.
 */
export function localDayAround(at: number, timezone: string): Readonly<Span> {
  return daysAround.get(at, timezone);
}

const daysAround = new ZoneMemo((at, timezone): Readonly<Span> => {
  const local = wallClock(at, timezone);
  const y = local.getUTCFullYear();
  const m = local.getUTCMonth();
  const d = local.getUTCDate();
  return Object.freeze({ start: localMidnight(y, m, d, timezone), end: localMidnight(y, m, d + 1, timezone) });
});

/** [startDate 00:00, endDate + 1 00:00) local, with the range checked against its limit. */
export function rangeOf(startDate: string, endDate: string, granularity: Granularity, timezone: string): Span {
  checkRangeDates(startDate, endDate, granularity);
  const [sy, sm, sd] = parseDate(startDate);
  const [ey, em, ed] = parseDate(endDate);
  return { start: localMidnight(sy, sm, sd, timezone), end: localMidnight(ey, em, ed + 1, timezone) };
}

/**
 * Refuses (400) a range that ends before it starts or covers more days than `granularity`
 * allows; the dates alone decide, so it can run before anything is read. Returns its days.
 */
export function checkRangeDates(startDate: string, endDate: string, granularity: Granularity): number {
  const [sy, sm, sd] = parseDate(startDate);
  const [ey, em, ed] = parseDate(endDate);
  const days = Math.round((Date.UTC(ey, em, ed) - Date.UTC(sy, sm, sd)) / DAY_MS) + 1;
  if (days < 1) throw new AppError('BAD_REQUEST', 'endDate: must not be before startDate');
  const max = MAX_RANGE_DAYS[granularity];
  if (days > max) {
    throw new AppError('BAD_REQUEST', `endDate: a ${granularity} range covers at most ${max} days (this one has ${days})`);
  }
  return days;
}

/**
 * How an answer describes the range it covers: the dates asked for (and the granularity, when
 * periods were asked for) and the instants they mean, in the order the answers' schema lists them.
 */
export function describeRange(args: { startDate: string; endDate: string }, timezone: string, range: Span, granularity?: Granularity) {
  return {
    startDate: args.startDate,
    endDate: args.endDate,
    ...(granularity ? { granularity } : {}),
    timezone,
    start: new Date(range.start).toISOString(),
    end: new Date(range.end).toISOString(),
  };
}

/**
 * The periods of `granularity` covering `range` in `timezone`, in order, each clipped to
 * the range: hours are absolute hours from local midnight (so a DST day has 23 or 25 of
 * them), days run from local midnight to local midnight, weeks start on Monday, months on
 * the 1st. Every instant of the range lies in exactly one bucket.
 */
export function bucketsOf(range: Span, granularity: Granularity, timezone: string): Span[] {
  const buckets: Span[] = [];
  let start = range.start;
  while (start < range.end) {
    const end = Math.min(nextBoundary(start, granularity, timezone), range.end);
    // localMidnight guarantees progress; a bug here must fail the request, not hang the process.
    if (end <= start) throw new Error(`${granularity} period at ${start} in ${timezone} does not advance`);
    buckets.push({ start, end });
    start = end;
  }
  return buckets;
}

function nextBoundary(at: number, granularity: Granularity, timezone: string): number {
  const local = wallClock(at, timezone);
  const y = local.getUTCFullYear();
  const m = local.getUTCMonth();
  const d = local.getUTCDate();
  switch (granularity) {
    case 'hourly':
      // Whole hours after the bucket start; a day's last hour ends at the next midnight
      // even where the day is not a whole number of hours long.
      return Math.min(at + HOUR_MS, localMidnight(y, m, d + 1, timezone));
    case 'daily':
      return localMidnight(y, m, d + 1, timezone);
    case 'weekly':
      return localMidnight(y, m, d - ((local.getUTCDay() + 6) % 7) + 7, timezone);
    case 'monthly':
      return localMidnight(y, m + 1, 1, timezone);
    default: {
      const never: never = granularity;
      throw new Error(`unknown granularity ${String(never)}`);
    }
  }
}

/** ISO 8601 with the zone's offset at that instant, e.g. `2026-03-08T03:00:00-04:00`. */
export function isoInZone(at: number, timezone: string): string {
  return isoStamps.get(at, timezone);
}

const isoStamps = new ZoneMemo((at, timezone) => {
  const offset = offsetMs(at, timezone) / 60_000;
  const wall = new Date(at + offset * 60_000).toISOString().slice(0, 19);
  const sign = offset >= 0 ? '+' : '-';
  const abs = Math.abs(offset);
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${wall}${sign}${pad(Math.floor(abs / 60))}:${pad(abs % 60)}`;
});
