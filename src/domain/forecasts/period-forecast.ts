import { Prisma } from '../../generated/prisma/client';
import type { FittedModel } from './models';

/** z of the central 80% of a normal distribution (10% in each tail). */
export const INTERVAL_Z = 1.2815515655446004;

export interface PeriodForecastInput {
  model: FittedModel;
  /** Exact usage from the period's start to the forecast's cut-off (today's part included). */
  usedSoFar: Prisma.Decimal;
  /** Fraction of the current local day still to come, 0 to 1. */
  todayRemaining: number;
  /** Local dates (YYYY-MM-DD) from today to the period's last day, today first. */
  remainingDates: readonly string[];
  limit: Prisma.Decimal | null;
}

export interface PeriodForecast {
  predictedTotal: Prisma.Decimal;
  lower: Prisma.Decimal;
  upper: Prisma.Decimal;
  /** The local date on which usage reaches the limit (today when it already has); null if it does not in this period. */
  breachAt: string | null;
}

function decimal(value: number): Prisma.Decimal {
  return new Prisma.Decimal(value.toFixed(6));
}

/**
 * The period's total: what has been used so far (exact) plus the forecast of what is still to
 * come, which is the rest of today (its forecast times the fraction of the local day left, so
 * a 23- or 25-hour day counts by its own length) and every later day of the period. Daily
 * means below 0 count as 0: usage does not go back.
 *
 * The 80% interval is mean ± z·√Var of that remaining sum, Var from the model (the same day
 * weights), so it grows with the number of days left; its lower end is never below what has
 * already been used.
 */
export function forecastPeriod(input: PeriodForecastInput): PeriodForecast {
  const { model, usedSoFar, limit } = input;
  const weights = input.remainingDates.map((_, i) => (i === 0 ? input.todayRemaining : 1));
  let remaining = 0;
  let breachAt: string | null = limit && usedSoFar.gte(limit) ? (input.remainingDates[0] ?? null) : null;
  weights.forEach((w, i) => {
    remaining += w * Math.max(0, model.mean(i + 1));
    if (breachAt === null && limit && usedSoFar.plus(decimal(remaining)).gte(limit)) breachAt = input.remainingDates[i]!;
  });
  const sd = Math.sqrt(Math.max(0, model.varianceOfSum(weights)));
  const margin = Number.isFinite(sd) ? INTERVAL_Z * sd : 0;
  return {
    predictedTotal: usedSoFar.plus(decimal(remaining)),
    lower: usedSoFar.plus(decimal(Math.max(0, remaining - margin))),
    upper: usedSoFar.plus(decimal(remaining + margin)),
    breachAt,
  };
}
