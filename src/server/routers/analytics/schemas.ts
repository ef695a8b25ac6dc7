import { z } from 'zod';
import { calendarDate } from '../../../domain/analytics/buckets';
import { usageTypeSchema } from '../../../domain/usage/event-schema';
import { timezoneSchema } from '../schemas';

export const granularitySchema = z.enum(['hourly', 'daily', 'weekly', 'monthly']);

/** The range every analytics view takes: local calendar dates (inclusive) in `timezone`. */
export const rangeInput = {
  licenseId: z.uuid().optional(),
  usageType: usageTypeSchema.optional(),
  startDate: calendarDate,
  endDate: calendarDate,
  timezone: timezoneSchema.optional(),
};

export const periodOutput = z.object({
  startDate: z.string(),
  endDate: z.string(),
  granularity: granularitySchema.optional(),
  timezone: z.string(),
  start: z.string(),
  end: z.string(),
});
