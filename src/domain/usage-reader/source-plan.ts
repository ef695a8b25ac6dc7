import { localDateOf, localDayAround, type Span } from '../analytics/buckets';
import { DAY_MS, HOUR_MS } from '../../lib/time';

/**
 * What is known about the rollups of one group of licenses over a request's range: which
 * hourly windows (UTC hours) and daily windows (UTC dates) are done, and which hours late
 * events have marked since. A group shares all of it: licenses with marks of their own form
 * groups of one.
 */
export interface Coverage {
  /** Islands of rolled-up UTC hours, [start, end) in ms. */
  hourlyDone: Span[];
  /** Islands of done daily windows (UTC dates), [start, end) in ms. */
  dailyDone: Span[];
  /** Start (ms) of every UTC hour marked by a late event for a license of the group. */
  dirtyHours: ReadonlySet<number>;
  /**
   * The zone the group's daily rows are cut in when they can serve the request: every
   * license of the group is in it and it is the request's zone. Null: hourly and raw only.
   */
  dailyZone: string | null;
}

/** A range of one source that belongs to one bucket. */
export interface PlannedSpan extends Span {
  bucket: number;
}

/**
 * Where each piece of each bucket is read from, so that every instant is counted exactly
 * once: a daily rollup for a whole local day that is final (its daily window ran, no late
 * event marked any of its hours since); an hourly rollup for a whole UTC hour that is
 * rolled up and unmarked; raw events for everything else (hours not rolled up yet, marked
 * hours, and the partial hours at the edges of +05:30 periods).
 */
export interface SourcePlan {
  daily: { date: string; bucket: number }[];
  hourly: PlannedSpan[];
  raw: PlannedSpan[];
}

function within(islands: Span[], at: number): boolean {
  // Islands are few (usually one); a linear scan beats anything cleverer here.
  for (const island of islands) if (at >= island.start && at < island.end) return true;
  return false;
}

function push(list: PlannedSpan[], span: PlannedSpan): void {
  if (span.end <= span.start) return;
  const last = list.at(-1);
  if (last && last.bucket === span.bucket && last.end === span.start) last.end = span.end;
  else list.push({ ...span });
}

function dayIsFinal(day: Span, coverage: Coverage): boolean {
  // The daily window of UTC date D finalizes the local days that end in [D 00:00, D + 1 00:00)
  // (localDaysEndingOn): a day ending at a UTC midnight (any day in UTC) is final with the next date's.
  const window = Math.floor(day.end / DAY_MS) * DAY_MS;
  if (!within(coverage.dailyDone, window)) return false;
  if (coverage.dirtyHours.size === 0) return true;
  for (let h = Math.floor(day.start / HOUR_MS) * HOUR_MS; h < day.end; h += HOUR_MS) {
    if (coverage.dirtyHours.has(h)) return false;
  }
  return true;
}

/**
 * The whole UTC hours of `span` from hourly rows where rolled up and unmarked, the rest raw.
 * Walks the done islands (sorted, disjoint, usually one), not the hours: a range before
 * the first rollup is one raw span per bucket whatever its length. `islands` is
 * coverage.hourlyDone sorted by start.
 */
function planHours(plan: SourcePlan, span: Span, bucket: number, coverage: Coverage, islands: readonly Span[]): void {
  const firstHour = Math.ceil(span.start / HOUR_MS) * HOUR_MS;
  const lastHour = Math.floor(span.end / HOUR_MS) * HOUR_MS;
  if (firstHour >= lastHour) {
    push(plan.raw, { ...span, bucket });
    return;
  }
  push(plan.raw, { start: span.start, end: firstHour, bucket });
  let at = firstHour;
  for (const island of islands) {
    // The hours h with island.start <= h < island.end.
    const from = Math.max(Math.ceil(island.start / HOUR_MS) * HOUR_MS, at);
    const to = Math.min(Math.ceil(island.end / HOUR_MS) * HOUR_MS, lastHour);
    if (to <= from) continue;
    push(plan.raw, { start: at, end: from, bucket });
    if (coverage.dirtyHours.size === 0) push(plan.hourly, { start: from, end: to, bucket });
    else {
      for (let h = from; h < to; h += HOUR_MS) push(coverage.dirtyHours.has(h) ? plan.raw : plan.hourly, { start: h, end: h + HOUR_MS, bucket });
    }
    at = to;
  }
  push(plan.raw, { start: at, end: lastHour, bucket });
  push(plan.raw, { start: lastHour, end: span.end, bucket });
}

export function planSources(buckets: Span[], coverage: Coverage): SourcePlan {
  const plan: SourcePlan = { daily: [], hourly: [], raw: [] };
  const islands = [...coverage.hourlyDone].sort((a, b) => a.start - b.start);
  buckets.forEach((bucket, index) => {
    if (!coverage.dailyZone) {
      planHours(plan, bucket, index, coverage, islands);
      return;
    }
    for (let at = bucket.start; at < bucket.end; ) {
      const day = localDayAround(at, coverage.dailyZone);
      const end = Math.min(day.end, bucket.end);
      if (end <= at) throw new Error(`local day at ${at} in ${coverage.dailyZone} does not advance`); // localMidnight rules it out
      if (day.start === at && day.end <= bucket.end && dayIsFinal(day, coverage)) {
        plan.daily.push({ date: localDateOf(at, coverage.dailyZone), bucket: index });
      } else {
        planHours(plan, { start: at, end }, index, coverage, islands);
      }
      at = end;
    }
  });
  return plan;
}

/**
 * Spans as the sorted boundary points and per-interval bucket numbers that PostgreSQL's
 * `width_bucket(x, points)` indexes: interval i is [points[i], points[i + 1]), and `map[i]`
 * is its bucket, or null for a gap between spans. One index range scan then assigns every
 * row to its bucket, however many spans there are.
 */
export function asWidthBuckets(spans: PlannedSpan[]): { points: number[]; map: (number | null)[] } {
  const points: number[] = [];
  const map: (number | null)[] = [];
  for (const span of spans) {
    if (points.length && points.at(-1) === span.start) {
      map.push(span.bucket);
    } else {
      if (points.length) map.push(null);
      points.push(span.start);
      map.push(span.bucket);
    }
    points.push(span.end);
  }
  return { points, map };
}
