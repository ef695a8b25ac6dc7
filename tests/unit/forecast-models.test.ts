import { Prisma } from '../../src/generated/prisma/client';
import {
  FORECAST_METHODS,
  MIN_SEASONAL_DAYS,
  MIN_TREND_DAYS,
  fitDailyModel,
  innovationsVariance,
  methodFor,
  strategyFor,
  type ForecastMethod,
} from '../../src/domain/forecasts/models';
import { INTERVAL_Z, forecastPeriod } from '../../src/domain/forecasts/period-forecast';

/** mulberry32: a small seeded generator, so every "random" case is the same on every run. */
function seeded(seed: number) {
  let a = seed >>> 0;
  const uniform = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const normal = () => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
  return { uniform, normal };
}

interface Scenario {
  /** Daily usage by day index; day `history` is today. */
  value: (t: number) => number;
  /** Complete days before today. */
  history: number;
  /** Days of the period before today. */
  daysIntoPeriod: number;
  periodDays: number;
  /** Fraction of today passed; today's usage so far is that fraction of the day's usage. */
  elapsed: number;
  limit?: number;
}

/** The forecast of a period made from a synthetic series, beside the period's true total. */
function run(s: Scenario) {
  const values = Array.from({ length: s.history - s.daysIntoPeriod + s.periodDays }, (_, t) => s.value(t));
  const today = s.history;
  const periodStart = today - s.daysIntoPeriod;
  const periodEnd = periodStart + s.periodDays;
  const days = values.slice(0, today);
  const usedToday = s.elapsed * values[today]!;
  const used = values.slice(periodStart, today).reduce((a, b) => a + b, 0) + usedToday;
  const truth = values.slice(periodStart, periodEnd).reduce((a, b) => a + b, 0);
  const model = fitDailyModel({ days, today: { used: usedToday, elapsed: s.elapsed } });
  const forecast = forecastPeriod({
    model,
    usedSoFar: new Prisma.Decimal(used.toFixed(6)),
    todayRemaining: 1 - s.elapsed,
    remainingDates: Array.from({ length: periodEnd - today }, (_, i) => `day-${today + i}`),
    limit: s.limit === undefined ? null : new Prisma.Decimal(s.limit),
  });
  return {
    method: model.method,
    truth,
    predicted: forecast.predictedTotal.toNumber(),
    lower: forecast.lower.toNumber(),
    upper: forecast.upper.toNumber(),
    used,
    breachAt: forecast.breachAt,
  };
}

const relativeError = (r: { predicted: number; truth: number }) => Math.abs(r.predicted - r.truth) / r.truth;

describe('method choice', () => {
  it('is run-rate below a week of complete days, Holt from a week, Holt-Winters from three weeks', () => {
    expect([0, 1, 6, 7, 20, 21, 56].map(methodFor)).toEqual(['run_rate', 'run_rate', 'run_rate', 'holt', 'holt', 'holt_winters', 'holt_winters']);
    expect(MIN_TREND_DAYS).toBe(7);
    expect(MIN_SEASONAL_DAYS).toBe(21);
  });

  it('has one strategy per method, each reporting its own method', () => {
    for (const method of FORECAST_METHODS) expect(strategyFor(method).method).toBe(method);
    expect(() => strategyFor('arima' as ForecastMethod)).toThrow('unknown forecast method arima');
  });
});

/** What every strategy must do, whatever its method. */
describe.each(FORECAST_METHODS.map((method) => ({ method })))('contract: $method', ({ method }) => {
  const length = method === 'run_rate' ? 5 : method === 'holt' ? 14 : 35;
  const fit = (days: number[]) => strategyFor(method).fit({ days, today: { used: 0, elapsed: 0 } });

  it('forecasts a constant series as that constant, with no spread', () => {
    const model = fit(Array.from({ length }, () => 42));
    for (let h = 1; h <= 31; h++) expect(model.mean(h)).toBeCloseTo(42, 6);
    expect(model.sigma).toBeCloseTo(0, 6);
    expect(model.varianceOfSum(Array.from({ length: 31 }, () => 1))).toBeCloseTo(0, 6);
  });

  it('widens the interval of a sum as days are added, and a zero weight adds nothing', () => {
    const random = seeded(7);
    const model = fit(Array.from({ length }, () => 100 + 15 * random.normal()));
    expect(model.sigma).toBeGreaterThan(0);
    let previous = 0;
    for (let h = 1; h <= 31; h++) {
      const variance = model.varianceOfSum(Array.from({ length: h }, () => 1));
      expect(variance).toBeGreaterThan(previous);
      previous = variance;
    }
    expect(model.varianceOfSum([0, 0, 0])).toBe(0);
    // with iid-looking noise the spread of one day is about the noise's own (15), not orders off
    expect(Math.sqrt(model.varianceOfSum([1]))).toBeGreaterThan(5);
    expect(Math.sqrt(model.varianceOfSum([1]))).toBeLessThan(45);
  });
});

describe('innovationsVariance', () => {
  it('is σ²(1 + Σψ²) for a single day h and σ²·H for independent days', () => {
    const psi = (j: number) => 0.3 + 0.1 * j;
    expect(innovationsVariance([0, 0, 1], psi, 2)).toBeCloseTo(4 * (1 + psi(1) ** 2 + psi(2) ** 2), 10);
    expect(innovationsVariance([1, 1, 1, 1], () => 0, 3)).toBeCloseTo(36, 10);
    // a sum of correlated days: ε(1) reaches days 2 and 3 through ψ1 and ψ2
    expect(innovationsVariance([1, 1, 1], psi, 1)).toBeCloseTo((1 + psi(1) + psi(2)) ** 2 + (1 + psi(1)) ** 2 + 1, 10);
  });
});

describe('linear series: the period total within 2%', () => {
  it.each([
    { history: 3, daysIntoPeriod: 3, method: 'run_rate', slope: 0 },
    { history: 7, daysIntoPeriod: 7, method: 'holt', slope: 4 },
    { history: 14, daysIntoPeriod: 14, method: 'holt', slope: 4 },
    { history: 28, daysIntoPeriod: 10, method: 'holt_winters', slope: 4 },
    { history: 56, daysIntoPeriod: 20, method: 'holt_winters', slope: -1.5 },
  ])('$history days of history, $daysIntoPeriod into a 30-day period: $method', ({ history, daysIntoPeriod, method, slope }) => {
    const r = run({ value: (t) => 200 + slope * t, history, daysIntoPeriod, periodDays: 30, elapsed: 0.4 });
    expect(r.method).toBe(method);
    expect(relativeError(r)).toBeLessThan(0.02);
    expect(r.lower).toBeLessThanOrEqual(r.predicted);
    expect(r.upper).toBeGreaterThanOrEqual(r.predicted);
  });

  it('continues a steep trend that run-rate would miss', () => {
    const r = run({ value: (t) => 10 + 10 * t, history: 14, daysIntoPeriod: 14, periodDays: 31, elapsed: 0 });
    expect(r.method).toBe('holt');
    expect(relativeError(r)).toBeLessThan(0.02);
    const flat = (14 * (10 + 10 * 6.5) + 17 * (10 + 10 * 6.5)) / r.truth; // the average day carried forward
    expect(flat).toBeLessThan(0.7);
  });
});

describe('weekly-seasonal series: the period total within 5%', () => {
  // busy weekdays, quiet weekends, on a gentle upward trend
  const weekly = [40, 35, 30, 30, 25, -70, -90];
  it.each([
    { history: 21, daysIntoPeriod: 10 },
    { history: 28, daysIntoPeriod: 3 },
    { history: 42, daysIntoPeriod: 15 },
    { history: 56, daysIntoPeriod: 25 },
  ])('$history days of history, $daysIntoPeriod into a 31-day period', ({ history, daysIntoPeriod }) => {
    const value = (t: number) => 300 + 1.5 * t + weekly[t % 7]!;
    const r = run({ value, history, daysIntoPeriod, periodDays: 31, elapsed: 0.25 });
    expect(r.method).toBe('holt_winters');
    expect(relativeError(r)).toBeLessThan(0.05);
  });

  it('uses the weekly pattern for the days left: a period ending on a weekend is forecast lower than one ending midweek', () => {
    const value = (t: number) => 300 + weekly[t % 7]!;
    // 28 days of history end on day 27 (t % 7 = 6); today is t = 28 (t % 7 = 0, busy)
    const busy = run({ value, history: 28, daysIntoPeriod: 0, periodDays: 5, elapsed: 0 }); // t 28..32: weekdays
    const quiet = run({ value, history: 28, daysIntoPeriod: 0, periodDays: 7, elapsed: 0 }); // adds the weekend
    expect(busy.predicted).toBeCloseTo(busy.truth, 3);
    expect(quiet.predicted).toBeCloseTo(quiet.truth, 3);
    expect(quiet.predicted - busy.predicted).toBeCloseTo(600 - 70 - 90, 3);
  });
});

describe('noisy series: the true total inside the 80% interval in at least 70% of seeded cases', () => {
  const cases = 200;
  function coverage(make: (random: ReturnType<typeof seeded>) => (t: number) => number, history: number, daysIntoPeriod: number, periodDays: number) {
    let inside = 0;
    const methods = new Set<string>();
    for (let seed = 1; seed <= cases; seed++) {
      const random = seeded(seed);
      const cache = new Map<number, number>();
      const f = make(random);
      const value = (t: number) => {
        if (!cache.has(t)) cache.set(t, Math.max(0, f(t)));
        return cache.get(t)!;
      };
      const r = run({ value, history, daysIntoPeriod, periodDays, elapsed: 0.5 });
      methods.add(r.method);
      if (r.truth >= r.lower && r.truth <= r.upper) inside += 1;
    }
    return { share: inside / cases, methods: [...methods] };
  }

  it('level with noise, run-rate (5 days)', () => {
    const c = coverage((r) => () => 100 + 20 * r.normal(), 5, 5, 30);
    expect(c.methods).toEqual(['run_rate']);
    expect(c.share).toBeGreaterThanOrEqual(0.7);
    expect(c.share).toBeLessThanOrEqual(0.97);
  });

  it('level with noise, Holt (14 days)', () => {
    const c = coverage((r) => () => 100 + 20 * r.normal(), 14, 14, 30);
    expect(c.methods).toEqual(['holt']);
    expect(c.share).toBeGreaterThanOrEqual(0.7);
    expect(c.share).toBeLessThanOrEqual(0.97);
  });

  it('trend, weekly pattern and noise, Holt-Winters (35 days)', () => {
    const weekly = [30, 20, 20, 10, 0, -40, -40];
    const c = coverage((r) => (t) => 200 + 1 * t + weekly[t % 7]! + 25 * r.normal(), 35, 10, 31);
    expect(c.methods).toEqual(['holt_winters']);
    expect(c.share).toBeGreaterThanOrEqual(0.7);
    expect(c.share).toBeLessThanOrEqual(0.97);
  });
});

describe('the period forecast', () => {
  it('counts only the part of today still to come', () => {
    const model = fitDailyModel({ days: [10, 10, 10], today: { used: 5, elapsed: 0.5 } });
    const f = forecastPeriod({ model, usedSoFar: new Prisma.Decimal(35), todayRemaining: 0.5, remainingDates: ['d0', 'd1', 'd2'], limit: null });
    expect(f.predictedTotal.toFixed()).toBe('60'); // 35 used + 5 more today + 2 × 10
    expect(f.breachAt).toBeNull();
  });

  it('extrapolates today alone when there is no complete day yet', () => {
    const model = fitDailyModel({ days: [], today: { used: 3, elapsed: 0.25 } });
    expect(model.method).toBe('run_rate');
    const f = forecastPeriod({ model, usedSoFar: new Prisma.Decimal(3), todayRemaining: 0.75, remainingDates: ['d0', 'd1'], limit: null });
    expect(f.predictedTotal.toFixed()).toBe('24'); // 12 a day: 9 more today, 12 tomorrow
    expect(f.lower.gte(3)).toBe(true);
    expect(f.upper.gt(24)).toBe(true);
  });

  it('predicts nothing more where nothing has been used', () => {
    const model = fitDailyModel({ days: [], today: { used: 0, elapsed: 0 } });
    const f = forecastPeriod({ model, usedSoFar: new Prisma.Decimal(0), todayRemaining: 1, remainingDates: ['d0', 'd1'], limit: new Prisma.Decimal(1) });
    expect([f.predictedTotal.toFixed(), f.lower.toFixed(), f.upper.toFixed(), f.breachAt]).toEqual(['0', '0', '0', null]);
  });

  it('names the first day the cumulative forecast reaches the limit', () => {
    // 100 a day, 1,000 used by the start of today (day 10): 1,100 after today, 1,200 after day 11 ...
    const base = { value: () => 100, history: 10, daysIntoPeriod: 10, periodDays: 30, elapsed: 0 };
    expect(run({ ...base, limit: 1250 }).breachAt).toBe('day-12');
    expect(run({ ...base, limit: 1200 }).breachAt).toBe('day-11');
    expect(run({ ...base, limit: 3000 }).breachAt).toBe('day-29');
    expect(run({ ...base, limit: 3000.5 }).breachAt).toBeNull();
    expect(run({ ...base, limit: 900 }).breachAt).toBe('day-10'); // already reached: today
  });

  it('widens the interval with the horizon and keeps its lower end above what is used', () => {
    const random = seeded(3);
    const days = Array.from({ length: 28 }, () => 50 + 10 * random.normal());
    const model = fitDailyModel({ days, today: { used: 20, elapsed: 0.4 } });
    const width = (n: number) => {
      const f = forecastPeriod({ model, usedSoFar: new Prisma.Decimal(500), todayRemaining: 0.6, remainingDates: Array.from({ length: n }, (_, i) => `d${i}`), limit: null });
      expect(f.lower.gte(500)).toBe(true);
      return f.upper.minus(f.lower).toNumber();
    };
    expect(width(2)).toBeLessThan(width(10));
    expect(width(10)).toBeLessThan(width(25));
    // the interval is mean ± z·sd
    const f = forecastPeriod({ model, usedSoFar: new Prisma.Decimal(0), todayRemaining: 1, remainingDates: ['a', 'b', 'c'], limit: null });
    const sd = Math.sqrt(model.varianceOfSum([1, 1, 1]));
    expect(f.upper.minus(f.predictedTotal).toNumber()).toBeCloseTo(INTERVAL_Z * sd, 4);
  });
});
