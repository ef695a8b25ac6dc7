import { z } from 'zod';
import { FORECAST_METHODS } from '../../../domain/forecasts/models';
import { isoDate, isoDateOrNull } from '../schemas';

export const periodTypeSchema = z.enum(['daily', 'weekly', 'monthly']);
export const forecastMethodSchema = z.enum(FORECAST_METHODS);

export const forecastSchema = z.object({
  id: z.string(),
  licenseId: z.string(),
  usageType: z.string(),
  periodType: periodTypeSchema,
  periodStart: isoDate,
  periodEnd: isoDate,
  timezone: z.string(),
  usedSoFar: z.string(),
  predictedTotal: z.string(),
  /** The 80% prediction interval of the period's total. */
  lower: z.string(),
  upper: z.string(),
  limit: z.string(),
  limitSource: z.enum(['threshold', 'plan']),
  thresholdId: z.string().nullable(),
  /** License-local date (YYYY-MM-DD). */
  breachAt: z.string().nullable(),
  method: forecastMethodSchema,
  historyDays: z.number(),
  asOf: isoDate,
  generatedAt: isoDate,
  accuracy: z.object({
    midPeriodForecast: z.string().nullable(),
    midPeriodMethod: forecastMethodSchema.nullable(),
    midPeriodAsOf: isoDateOrNull,
    actualTotal: z.string().nullable(),
    absolutePercentageError: z.string().nullable(),
    evaluatedAt: isoDateOrNull,
  }),
  createdAt: isoDate,
});

export const accuracyGroupSchema = z.object({ periods: z.number(), mape: z.string().nullable() });
