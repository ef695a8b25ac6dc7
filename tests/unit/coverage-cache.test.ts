import { CoverageCache, COVERAGE_MARGIN_MS } from '../../src/domain/usage-reader/coverage-cache';
import { narrowCoverage, sameCoverage, type LicenseCoverage } from '../../src/domain/usage-reader/series';

const HOUR = 3_600_000;
const DAY = 86_400_000;
const T = Date.UTC(2026, 5, 1);

function coverage(over: Partial<LicenseCoverage['coverage']> = {}): LicenseCoverage {
  return {
    license: { id: 'l1', timezone: 'Asia/Kolkata' },
    coverage: {
      windows: { hourlyDone: [{ start: T - 200 * DAY, end: T + 10 * HOUR }], dailyDone: [{ start: T - 200 * DAY, end: T }] },
      dirty: [{ license_id: 'l1', hour: new Date(T - 50 * DAY + 3 * HOUR) }],
      foreign: [],
      ...over,
    },
  };
}

describe('narrowCoverage', () => {
  const wide = { first: T - 300 * DAY, afterLast: T + 30 * DAY };

  it('cuts islands at the narrower bounds (a day around the dates, two more for daily windows) and drops marks outside them', () => {
    const narrow = { first: T - 40 * DAY, afterLast: T - 30 * DAY };
    const got = narrowCoverage(coverage(), wide, narrow)!;
    expect(got.coverage.windows.hourlyDone).toEqual([{ start: T - 41 * DAY, end: T - 29 * DAY }]);
    expect(got.coverage.windows.dailyDone).toEqual([{ start: T - 43 * DAY, end: T - 27 * DAY }]);
    expect(got.coverage.dirty).toEqual([]);
    const around = narrowCoverage(coverage(), wide, { first: T - 50 * DAY, afterLast: T - 49 * DAY })!;
    expect(around.coverage.dirty).toHaveLength(1);
    // islands that end inside the bounds stay as they are; islands outside them are gone
    const recent = narrowCoverage(coverage(), wide, { first: T - DAY, afterLast: T + DAY })!;
    expect(recent.coverage.windows.hourlyDone).toEqual([{ start: T - 2 * DAY, end: T + 10 * HOUR }]);
    const later = narrowCoverage(coverage(), wide, { first: T + 5 * DAY, afterLast: T + 6 * DAY })!;
    expect(later.coverage.windows).toEqual({ hourlyDone: [], dailyDone: [] });
  });

  it('cannot tell for bounds past what was read, nor for a license with daily rows cut in another zone', () => {
    expect(narrowCoverage(coverage(), wide, { first: wide.first - DAY, afterLast: T })).toBeNull();
    expect(narrowCoverage(coverage(), wide, { first: T, afterLast: wide.afterLast + DAY })).toBeNull();
    expect(narrowCoverage(coverage(), wide, wide)).not.toBeNull();
    expect(narrowCoverage(coverage({ foreign: ['l1'] }), wide, { first: T - 10 * DAY, afterLast: T })).toBeNull();
  });
});

describe('sameCoverage', () => {
  it('is equal for the same facts in any order, and tells every difference', () => {
    const a = coverage({ windows: { hourlyDone: [{ start: 0, end: HOUR }, { start: 5 * HOUR, end: 6 * HOUR }], dailyDone: [] } });
    const b = coverage({ windows: { hourlyDone: [{ start: 5 * HOUR, end: 6 * HOUR }, { start: 0, end: HOUR }], dailyDone: [] } });
    expect(sameCoverage(a, b)).toBe(true);
    expect(sameCoverage(a, coverage({ windows: { hourlyDone: [{ start: 0, end: HOUR }, { start: 5 * HOUR, end: 7 * HOUR }], dailyDone: [] } }))).toBe(false);
    expect(sameCoverage(coverage(), coverage({ dirty: [] }))).toBe(false);
    expect(sameCoverage(coverage(), coverage({ foreign: ['l1'] }))).toBe(false);
    expect(sameCoverage(coverage(), { ...coverage(), license: { id: 'l1', timezone: 'UTC' } })).toBe(false);
    expect(sameCoverage(coverage(), null)).toBe(false);
    expect(sameCoverage(null, null)).toBe(true);
  });
});

describe('CoverageCache', () => {
  const bounds = { first: T - 10 * DAY, afterLast: T };

  it('serves what it read around a range for ranges near it, under the same generation only', () => {
    const cache = new CoverageCache();
    const key = CoverageCache.key('t', 'live', 'l1', undefined);
    const wide = CoverageCache.widen(bounds);
    expect(wide).toEqual({ first: bounds.first - COVERAGE_MARGIN_MS, afterLast: bounds.afterLast + COVERAGE_MARGIN_MS });
    cache.set(key, 'g1', wide, coverage());
    expect(cache.get(key, 'g1', { first: T - 50 * DAY, afterLast: T + 30 * DAY })).toHaveProperty('found');
    expect(cache.get(key, 'g2', bounds)).toBeUndefined();
    expect(cache.get(key, 'g1', { first: wide.first - DAY, afterLast: T })).toBeUndefined();
    expect(cache.get(CoverageCache.key('t', 'test', 'l1', undefined), 'g1', bounds)).toBeUndefined();
    expect(cache.get(CoverageCache.key('t', 'live', 'l1', 'UTC'), 'g1', bounds)).toBeUndefined();
    cache.delete(key);
    expect(cache.get(key, 'g1', bounds)).toBeUndefined();
    // a license whose daily rows were cut in another zone is remembered as such, not its facts
    cache.set(key, 'g1', wide, coverage({ foreign: ['l1'] }));
    expect(cache.get(key, 'g1', bounds)).toEqual({ moved: true });
  });

  it('holds at most maxEntries licenses, then starts over', () => {
    const cache = new CoverageCache(3);
    for (let i = 0; i < 3; i++) cache.set(`k${i}`, 'g', bounds, coverage());
    expect(cache.size).toBe(3);
    cache.set('k0', 'g', bounds, coverage()); // a key it holds: no room needed
    expect(cache.size).toBe(3);
    cache.set('k3', 'g', bounds, coverage());
    expect(cache.size).toBe(1);
    expect(cache.get('k3', 'g', bounds)).toHaveProperty('found');
  });
});
