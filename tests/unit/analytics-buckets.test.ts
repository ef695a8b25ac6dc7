import fc from 'fast-check';
import { bucketsOf, isoInZone, localDateOf, localDayAround, MAX_RANGE_DAYS, rangeOf } from '../../src/domain/analytics/buckets';
import { asWidthBuckets, planSources, type Coverage } from '../../src/domain/usage-reader/source-plan';

const HOUR = 3_600_000;
const DAY = 86_400_000;

describe('analytics periods', () => {
  it.each([
    ['America/New_York', '2026-03-08', 23, '2026-03-08T03:00:00-04:00'],
    ['America/New_York', '2026-11-01', 25, '2026-11-01T01:00:00-05:00'],
    ['Europe/Berlin', '2026-03-29', 23, '2026-03-29T03:00:00+02:00'],
    ['Asia/Kolkata', '2026-03-08', 24, '2026-03-08T02:00:00+05:30'],
    ['UTC', '2026-03-08', 24, '2026-03-08T02:00:00+00:00'],
  ])('a day in %s on %s has %i hourly periods', (zone, date, hours, third) => {
    const range = rangeOf(date, date, 'hourly', zone);
    const buckets = bucketsOf(range, 'hourly', zone);
    expect(buckets).toHaveLength(hours);
    expect(buckets.every((b) => b.end - b.start === HOUR)).toBe(true);
    expect(isoInZone(buckets[0]!.start, zone)).toBe(`${date}T00:00:00${isoInZone(range.start, zone).slice(19)}`);
    expect(isoInZone(buckets[2]!.start, zone)).toBe(third);
  });

  it('puts +05:30 hours on the half hour of UTC', () => {
    const [first] = bucketsOf(rangeOf('2026-06-01', '2026-06-01', 'hourly', 'Asia/Kolkata'), 'hourly', 'Asia/Kolkata');
    expect(new Date(first!.start).toISOString()).toBe('2026-05-31T18:30:00.000Z');
  });

  it('tiles the range exactly with weeks from Monday and months from the 1st (clipped at the edges)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 700 }),
        fc.integer({ min: 0, max: 380 }),
        fc.constantFrom('UTC', 'Asia/Kolkata', 'America/New_York', 'Australia/Lord_Howe', 'Pacific/Kiritimati'),
        fc.constantFrom('daily' as const, 'weekly' as const, 'monthly' as const),
        (offset, length, zone, granularity) => {
          const start = new Date(Date.UTC(2025, 0, 1) + offset * DAY).toISOString().slice(0, 10);
          const end = new Date(Date.UTC(2025, 0, 1) + (offset + length) * DAY).toISOString().slice(0, 10);
          const range = rangeOf(start, end, granularity, zone);
          const buckets = bucketsOf(range, granularity, zone);
          expect(buckets[0]!.start).toBe(range.start);
          expect(buckets.at(-1)!.end).toBe(range.end);
          for (let i = 1; i < buckets.length; i++) expect(buckets[i]!.start).toBe(buckets[i - 1]!.end);
          if (granularity === 'daily') expect(buckets).toHaveLength(length + 1);
          for (const b of buckets.slice(1)) {
            const label = isoInZone(b.start, zone);
            expect(label.slice(11, 19)).toBe('00:00:00');
            if (granularity === 'monthly') expect(label.slice(8, 10)).toBe('01');
            if (granularity === 'weekly') expect(new Date(`${label.slice(0, 10)}T12:00:00Z`).getUTCDay()).toBe(1);
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  it('limits each range at its boundary', () => {
    const endAfter = (days: number) => new Date(Date.UTC(2026, 0, 1) + (days - 1) * DAY).toISOString().slice(0, 10);
    for (const [granularity, max] of Object.entries(MAX_RANGE_DAYS) as [keyof typeof MAX_RANGE_DAYS, number][]) {
      expect(() => rangeOf('2026-01-01', endAfter(max), granularity, 'UTC')).not.toThrow();
      expect(() => rangeOf('2026-01-01', endAfter(max + 1), granularity, 'UTC')).toThrow(/at most/);
    }
    expect(() => rangeOf('2026-01-02', '2026-01-01', 'daily', 'UTC')).toThrow(/before startDate/);
    expect(() => rangeOf('2026-01-02', '2026-01-02', 'daily', 'UTC')).not.toThrow();
  });
});

describe('source plan', () => {
  const all: Span = { start: Date.UTC(2026, 0, 1), end: Date.UTC(2027, 0, 1) };
  type Span = { start: number; end: number };
  const coverage = (over: Partial<Coverage>): Coverage => ({ hourlyDone: [all], dailyDone: [all], dirtyHours: new Set(), dailyZone: null, ...over });
  const covered = (plan: ReturnType<typeof planSources>, zone: string) => {
    const spans = [
      ...plan.hourly,
      ...plan.raw,
      ...plan.daily.map((d) => ({ ...rangeOf(d.date, d.date, 'daily', zone), bucket: d.bucket })),
    ].sort((a, b) => a.start - b.start);
    return spans;
  };

  it('reads final days from daily rows, a marked day from hours and raw, and covers each instant once', () => {
    const zone = 'Asia/Kolkata';
    const buckets = bucketsOf(rangeOf('2026-03-01', '2026-03-10', 'weekly', zone), 'weekly', zone);
    const marked = Date.UTC(2026, 2, 4, 6);
    const plan = planSources(buckets, coverage({ dailyZone: zone, dirtyHours: new Set([marked]), hourlyDone: [{ start: all.start, end: Date.UTC(2026, 2, 9) }] }));
    expect(plan.daily.map((d) => d.date)).toEqual(['2026-03-01', '2026-03-02', '2026-03-03', '2026-03-05', '2026-03-06', '2026-03-07', '2026-03-08', '2026-03-09', '2026-03-10']);
    expect(plan.raw.some((r) => r.start === marked && r.end === marked + HOUR)).toBe(true);
    const spans = covered(plan, zone);
    expect(spans[0]!.start).toBe(buckets[0]!.start);
    for (let i = 1; i < spans.length; i++) expect(spans[i]!.start).toBe(spans[i - 1]!.end);
    expect(spans.at(-1)!.end).toBe(buckets.at(-1)!.end);
  });

  it('reads the half hours at the edges of +05:30 periods raw when daily rows cannot serve', () => {
    const zone = 'Asia/Kolkata';
    const buckets = bucketsOf(rangeOf('2026-03-01', '2026-03-01', 'daily', zone), 'daily', zone);
    const plan = planSources(buckets, coverage({}));
    expect(plan.daily).toEqual([]);
    expect(plan.raw).toEqual([
      { start: buckets[0]!.start, end: buckets[0]!.start + HOUR / 2, bucket: 0 },
      { start: buckets[0]!.end - HOUR / 2, end: buckets[0]!.end, bucket: 0 },
    ]);
    expect(plan.hourly).toEqual([{ start: buckets[0]!.start + HOUR / 2, end: buckets[0]!.end - HOUR / 2, bucket: 0 }]);
  });

  /** planSources as it was written first: every hour of every span looked at one by one. */
  const hourByHour = (buckets: Span[], cov: Coverage) => {
    const plan = { daily: [] as { date: string; bucket: number }[], hourly: [] as (Span & { bucket: number })[], raw: [] as (Span & { bucket: number })[] };
    const push = (list: (Span & { bucket: number })[], span: Span & { bucket: number }) => {
      if (span.end <= span.start) return;
      const last = list.at(-1);
      if (last && last.bucket === span.bucket && last.end === span.start) last.end = span.end;
      else list.push({ ...span });
    };
    const within = (islands: Span[], at: number) => islands.some((i) => at >= i.start && at < i.end);
    const hours = (span: Span, bucket: number) => {
      const first = Math.ceil(span.start / HOUR) * HOUR;
      const last = Math.floor(span.end / HOUR) * HOUR;
      if (first >= last) return push(plan.raw, { ...span, bucket });
      push(plan.raw, { start: span.start, end: first, bucket });
      for (let h = first; h < last; h += HOUR) push(within(cov.hourlyDone, h) && !cov.dirtyHours.has(h) ? plan.hourly : plan.raw, { start: h, end: h + HOUR, bucket });
      push(plan.raw, { start: last, end: span.end, bucket });
    };
    buckets.forEach((b, index) => {
      if (!cov.dailyZone) return hours(b, index);
      for (let at = b.start; at < b.end; ) {
        const around = localDayAround(at, cov.dailyZone);
        const end = Math.min(around.end, b.end);
        const window = Math.floor(around.end / DAY) * DAY; // the window whose job computes it (localDaysEndingOn)
        let final = within(cov.dailyDone, window);
        for (let h = Math.floor(around.start / HOUR) * HOUR; final && h < around.end; h += HOUR) if (cov.dirtyHours.has(h)) final = false;
        if (around.start === at && around.end <= b.end && final) plan.daily.push({ date: localDateOf(at, cov.dailyZone), bucket: index });
        else hours({ start: at, end }, index);
        at = end;
      }
    });
    return plan;
  };

  it('plans from done islands exactly as an hour-by-hour walk does (any islands, marks, zone and granularity)', () => {
    const base = Date.UTC(2026, 2, 1);
    const hourAt = (h: number) => base + h * HOUR;
    const island = fc.tuple(fc.integer({ min: -48, max: 24 * 40 }), fc.integer({ min: 1, max: 24 * 20 })).map(([h, n]) => ({ start: hourAt(h), end: hourAt(h + n) }));
    fc.assert(
      fc.property(
        fc.constantFrom('UTC', 'Asia/Kolkata', 'America/New_York', 'Australia/Lord_Howe', 'Pacific/Chatham'),
        fc.constantFrom('hourly' as const, 'daily' as const, 'weekly' as const, 'monthly' as const),
        fc.integer({ min: 0, max: 20 }),
        fc.integer({ min: 0, max: 12 }),
        fc.array(island, { maxLength: 4 }),
        fc.array(island, { maxLength: 3 }),
        fc.array(fc.integer({ min: -24, max: 24 * 40 }), { maxLength: 6 }),
        fc.boolean(),
        (zone, granularity, startDay, days, hourly, daily, marks, useDaily) => {
          // Islands are disjoint, as the gaps-and-islands query gives them; merge overlapping draws.
          const disjoint = (spans: Span[]) =>
            [...spans].sort((a, b) => a.start - b.start).reduce<Span[]>((out, s) => {
              const last = out.at(-1);
              if (last && s.start <= last.end) last.end = Math.max(last.end, s.end);
              else out.push({ ...s });
              return out;
            }, []);
          const start = new Date(base + startDay * DAY).toISOString().slice(0, 10);
          const end = new Date(base + (startDay + days) * DAY).toISOString().slice(0, 10);
          const buckets = bucketsOf(rangeOf(start, end, granularity, zone), granularity, zone);
          const cov: Coverage = {
            hourlyDone: disjoint(hourly).reverse(), // in no particular order
            dailyDone: disjoint(daily.map((s) => ({ start: Math.floor(s.start / DAY) * DAY, end: Math.ceil(s.end / DAY) * DAY }))),
            dirtyHours: new Set(marks.map(hourAt)),
            dailyZone: useDaily ? zone : null,
          };
          expect(planSources(buckets, cov)).toEqual(hourByHour(buckets, cov));
        },
      ),
      { numRuns: 300 },
    );
  });

  it('turns spans into width_bucket points with gaps as null', () => {
    expect(asWidthBuckets([{ start: 0, end: 10, bucket: 0 }, { start: 10, end: 20, bucket: 1 }, { start: 30, end: 40, bucket: 1 }])).toEqual({
      points: [0, 10, 20, 30, 40],
      map: [0, 1, null, 1],
    });
  });
});
