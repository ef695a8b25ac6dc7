/**
 * Models of daily usage, one strategy per forecasting method behind one interface. Pure:
 * numbers in, numbers out, no database.
 *
 * All three are written in innovations state-space form (Hyndman et al., "Forecasting with
 * exponential smoothing", the ETS family): the usage h days after the last complete day is
 * its forecast mean plus ε(h) + Σ_{j=1}^{h-1} ψ_j ε(h−j), where the ε are independent one-step
 * errors of variance σ². That one form gives every method its prediction interval for a sum
 * of coming days (see innovationsVariance).
 */

export const FORECAST_METHODS = ['run_rate', 'holt', 'holt_winters'] as const;
export type ForecastMethod = (typeof FORECAST_METHODS)[number];

/** Weekly seasonality: days of the week repeat every 7 local days. */
export const SEASON_DAYS = 7;
/** With fewer complete days than this, a trend cannot be told from noise: run-rate. */
export const MIN_TREND_DAYS = 7;
/** Three full weeks before a weekly pattern is estimated (each weekday seen three times). */
export const MIN_SEASONAL_DAYS = 3 * SEASON_DAYS;

export interface DailyHistory {
  /** Usage of complete local days, oldest first, the last one being the day before today. */
  days: readonly number[];
  /** Usage so far today, and the fraction of today (a local day) that has passed, 0 to 1. */
  today: { used: number; elapsed: number };
}

export interface FittedModel {
  readonly method: ForecastMethod;
  /** Standard deviation of the one-step errors (what the intervals grow from). */
  readonly sigma: number;
  /** Expected usage of the h-th day after the last complete day (h = 1 is today). */
  mean(h: number): number;
  /** Variance of Σ weights[h−1] × usage(h) over the coming days h = 1 … weights.length. */
  varianceOfSum(weights: readonly number[]): number;
}

export interface ForecastStrategy {
  readonly method: ForecastMethod;
  fit(history: DailyHistory): FittedModel;
}

/** Which method a history of `completeDays` days gets. */
export function methodFor(completeDays: number): ForecastMethod {
  if (completeDays >= MIN_SEASONAL_DAYS) return 'holt_winters';
  if (completeDays >= MIN_TREND_DAYS) return 'holt';
  return 'run_rate';
}

export function strategyFor(method: ForecastMethod): ForecastStrategy {
  switch (method) {
    case 'run_rate':
      return runRate;
    case 'holt':
      return holt;
    case 'holt_winters':
      return holtWinters;
    default: {
      const never: never = method;
      throw new Error(`unknown forecast method ${String(never)}`);
    }
  }
}

/** The model of the method the history's length calls for, fitted to it. */
export function fitDailyModel(history: DailyHistory): FittedModel {
  return strategyFor(methodFor(history.days.length)).fit(history);
}

/**
 * Var[Σ_h w_h y(h)] for a model in innovations form: substituting y(h) = mean + ε(h) +
 * Σ_j ψ_j ε(h−j), the error ε(k) enters the sum with coefficient c_k = w_k + Σ_{h>k} w_h ψ_{h−k},
 * and the errors are independent, so
 *     Var = σ² Σ_{k=1}^{H} c_k².
 * For a single day h (w = 0 … 0 1) this is the textbook σ²(1 + Σ_{j<h} ψ_j²). The errors of
 * consecutive days are correlated through the states, which is why the variance of a period
 * total is not the sum of the daily variances.
 */
export function innovationsVariance(weights: readonly number[], psi: (j: number) => number, sigma: number): number {
  let total = 0;
  for (let k = 1; k <= weights.length; k++) {
    let c = weights[k - 1]!;
    for (let h = k + 1; h <= weights.length; h++) c += weights[h - 1]! * psi(h - k);
    total += c * c;
  }
  return sigma * sigma * total;
}

/**
 * What the innovations do not cover: the level and trend are estimated from n days, and
 * their error is carried into every coming day. Taken as for a least-squares line through
 * days 0 … n−1 (a regression prediction interval): with x_h = n − 1 + h the day forecast,
 * x̄ = (n − 1)/2 and Sxx = n(n² − 1)/12,
 *     Var = σ² ((Σ w_h)² / n + (Σ w_h (x_h − x̄))² / Sxx).
 * Without it a trend fitted to a few noisy weeks is extrapolated with too much confidence.
 */
export function estimationVariance(weights: readonly number[], n: number, sigma: number): number {
  if (n < 2) return 0;
  const center = (n - 1) / 2;
  const sxx = (n * (n * n - 1)) / 12;
  let level = 0;
  let slope = 0;
  weights.forEach((w, i) => {
    level += w;
    slope += w * (n + i - center);
  });
  return sigma * sigma * ((level * level) / n + (slope * slope) / sxx);
}

function sum(values: readonly number[]): number {
  let s = 0;
  for (const v of values) s += v;
  return s;
}

/** Ordinary least squares line through (x_i, y_i): intercept at x = 0 and slope. */
function leastSquaresLine(xs: readonly number[], ys: readonly number[]): { intercept: number; slope: number } {
  const n = xs.length;
  const mx = sum(xs) / n;
  const my = sum(ys) / n;
  let sxy = 0;
  let sxx = 0;
  for (let i = 0; i < n; i++) {
    sxy += (xs[i]! - mx) * (ys[i]! - my);
    sxx += (xs[i]! - mx) ** 2;
  }
  const slope = sxx > 0 ? sxy / sxx : 0;
  return { intercept: my - slope * mx, slope };
}

/** σ from the one-step squared errors, with a degree of freedom per estimated parameter. */
function residualSigma(sse: number, errors: number, parameters: number): number {
  return Math.sqrt(sse / Math.max(1, errors - parameters));
}

/**
 * Run-rate: every coming day is expected to be like the average complete day (or, with none
 * yet, like the part of today that has passed, scaled to a whole day). Days are taken as
 * independent around a mean estimated from n days, so
 *     Var[Σ w_h y(h)] = σ² (Σ w_h² + (Σ w_h)² / n),
 * the second term being the uncertainty of the mean itself. σ is the days' sample standard
 * deviation; with fewer than two days it is taken equal to the rate (a coefficient of
 * variation of 1: wide on purpose, there is nothing to measure it from).
 */
const runRate: ForecastStrategy = {
  method: 'run_rate',
  fit({ days, today }) {
    const n = days.length;
    const observedDays = n > 0 ? n : today.elapsed;
    const observed = n > 0 ? sum(days) : today.used;
    const rate = observedDays > 0 ? observed / observedDays : 0;
    let sigma = rate;
    if (n >= 2) {
      const mean = sum(days) / n;
      sigma = Math.sqrt(sum(days.map((d) => (d - mean) ** 2)) / (n - 1));
    }
    return {
      method: 'run_rate',
      sigma,
      mean: () => rate,
      varianceOfSum(weights) {
        if (observedDays <= 0) return 0;
        const w = sum(weights);
        return sigma * sigma * (sum(weights.map((x) => x * x)) + (w * w) / observedDays);
      },
    };
  },
};

/** Smoothing parameters tried; the pair with the least one-step squared error wins. */
const HOLT_ALPHAS = [0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9];
const TREND_BETAS = [0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3];

/**
 * Holt's linear trend, ETS(A,A,N) in error-correction form:
 *     ŷ(t) = ℓ + b;  e = y(t) − ŷ(t);  ℓ ← ℓ + b + αe;  b ← b + βe   (0 ≤ β ≤ α),
 * started from the least-squares line through the whole history, so that β = 0 is a global
 * linear trend with an adaptive level. ψ_j = α + βj. σ² = SSE / (n − 4): two smoothing
 * parameters and two initial states were fitted. Intervals add the estimation error of the
 * starting line (estimationVariance) to the innovations' variance.
 */
const holt: ForecastStrategy = {
  method: 'holt',
  fit({ days }) {
    const line = leastSquaresLine(
      days.map((_, i) => i),
      days,
    );
    const run = (alpha: number, beta: number) => {
      let level = line.intercept - line.slope;
      let trend = line.slope;
      let sse = 0;
      for (const y of days) {
        const e = y - (level + trend);
        sse += e * e;
        level = level + trend + alpha * e;
        trend = trend + beta * e;
      }
      return { sse, level, trend, alpha, beta };
    };
    let best = run(HOLT_ALPHAS[0]!, 0);
    for (const alpha of HOLT_ALPHAS) {
      for (const beta of TREND_BETAS) {
        if (beta > alpha) continue;
        const r = run(alpha, beta);
        if (r.sse < best.sse) best = r;
      }
    }
    const sigma = residualSigma(best.sse, days.length, 4);
    const psi = (j: number) => best.alpha + best.beta * j;
    return {
      method: 'holt',
      sigma,
      mean: (h) => best.level + h * best.trend,
      varianceOfSum: (weights) => innovationsVariance(weights, psi, sigma) + estimationVariance(weights, days.length, sigma),
    };
  },
};

const HW_ALPHAS = [0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9];
const HW_BETAS = [0, 0.01, 0.05, 0.1, 0.2];
const HW_GAMMAS = [0, 0.05, 0.1, 0.2, 0.3, 0.5];

/**
 * Holt-Winters with additive weekly seasonality, ETS(A,A,A) with period m = 7:
 *     ŷ(t) = ℓ + b + s[t mod 7];  e = y(t) − ŷ(t);
 *     ℓ ← ℓ + b + αe;  b ← b + βe;  s[t mod 7] ← s[t mod 7] + γe   (β ≤ α, γ ≤ 1 − α).
 * Started from the complete weeks: the trend is the least-squares slope of the weekly means
 * (so a weekly pattern does not tilt it), the level its line, and each weekday's seasonal
 * term its mean detrended deviation (summing to 0). ψ_j = α + βj + γ·[j is a multiple of 7].
 * σ² = SSE / (n − 11): three smoothing parameters, level, trend and six free seasonal terms.
 * Intervals add the estimation error of the level and trend (estimationVariance).
 */
const holtWinters: ForecastStrategy = {
  method: 'holt_winters',
  fit({ days }) {
    const weeks = Math.floor(days.length / SEASON_DAYS);
    const centers: number[] = [];
    const means: number[] = [];
    for (let w = 0; w < weeks; w++) {
      centers.push(w * SEASON_DAYS + (SEASON_DAYS - 1) / 2);
      means.push(sum(days.slice(w * SEASON_DAYS, (w + 1) * SEASON_DAYS)) / SEASON_DAYS);
    }
    const line = leastSquaresLine(centers, means);
    const deviations = Array.from({ length: SEASON_DAYS }, (_, i) => {
      let s = 0;
      for (let w = 0; w < weeks; w++) {
        const t = w * SEASON_DAYS + i;
        s += days[t]! - (line.intercept + line.slope * t);
      }
      return s / weeks;
    });
    const deviationMean = sum(deviations) / SEASON_DAYS;
    const initialSeason = deviations.map((d) => d - deviationMean);

    const run = (alpha: number, beta: number, gamma: number) => {
      let level = line.intercept - line.slope;
      let trend = line.slope;
      const season = [...initialSeason];
      let sse = 0;
      days.forEach((y, t) => {
        const i = t % SEASON_DAYS;
        const e = y - (level + trend + season[i]!);
        sse += e * e;
        level = level + trend + alpha * e;
        trend = trend + beta * e;
        season[i] = season[i]! + gamma * e;
      });
      return { sse, level, trend, season, alpha, beta, gamma };
    };
    let best = run(HW_ALPHAS[0]!, 0, 0);
    for (const alpha of HW_ALPHAS) {
      for (const beta of HW_BETAS) {
        if (beta > alpha) continue;
        for (const gamma of HW_GAMMAS) {
          if (gamma > 1 - alpha) continue;
          const r = run(alpha, beta, gamma);
          if (r.sse < best.sse) best = r;
        }
      }
    }
    const last = days.length - 1;
    const sigma = residualSigma(best.sse, days.length, 11);
    const psi = (j: number) => best.alpha + best.beta * j + (j % SEASON_DAYS === 0 ? best.gamma : 0);
    return {
      method: 'holt_winters',
      sigma,
      mean: (h) => best.level + h * best.trend + best.season[(last + h) % SEASON_DAYS]!,
      varianceOfSum: (weights) => innovationsVariance(weights, psi, sigma) + estimationVariance(weights, days.length, sigma),
    };
  },
};
