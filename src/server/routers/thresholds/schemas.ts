import { Decimal } from 'decimal.js';
import { z } from 'zod';
import { quantitySchema, usageTypeSchema } from '../../../domain/usage/event-schema';
import { isoDate } from '../schemas';

export const periodTypeSchema = z.enum(['daily', 'weekly', 'monthly']);

export const thresholdFields = {
  limitQuantity: quantitySchema.refine((v) => new Decimal(v).gt(0), 'must be more than 0'),
  gracePercentage: quantitySchema.refine((v) => new Decimal(v).lte(1000) && new Decimal(v).decimalPlaces() <= 2, 'must be 0 to 1000 with at most 2 decimals'),
  allowOverage: z.boolean(),
  overageRateCents: z.number().int().min(0).max(1_000_000_000),
  warningLevels: z.array(z.number().int().min(1).max(100)).max(10),
};

export const createThresholdInput = z.strictObject({
  licenseId: z.uuid(),
  usageType: usageTypeSchema,
  periodType: periodTypeSchema,
  limitQuantity: thresholdFields.limitQuantity,
  gracePercentage: thresholdFields.gracePercentage.optional(),
  allowOverage: thresholdFields.allowOverage.optional(),
  overageRateCents: thresholdFields.overageRateCents.optional(),
  warningLevels: thresholdFields.warningLevels.optional(),
});

export const updateThresholdInput = z.strictObject({
  id: z.uuid(),
  limitQuantity: thresholdFields.limitQuantity.optional(),
  gracePercentage: thresholdFields.gracePercentage.optional(),
  allowOverage: thresholdFields.allowOverage.optional(),
  overageRateCents: thresholdFields.overageRateCents.optional(),
  warningLevels: thresholdFields.warningLevels.optional(),
});

export const thresholdSchema = z.object({
  id: z.string(),
  licenseId: z.string(),
  usageType: z.string(),
  periodType: periodTypeSchema,
  limitQuantity: z.string(),
  gracePercentage: z.string(),
  allowOverage: z.boolean(),
  overageRateCents: z.number(),
  warningLevels: z.array(z.number()),
  createdAt: isoDate,
  updatedAt: isoDate,
});

export const thresholdStatusSchema = z.object({
  thresholdId: z.string().nullable(),
  source: z.enum(['threshold', 'plan']),
  usageType: z.string(),
  periodType: periodTypeSchema,
  periodStart: isoDate,
  periodEnd: isoDate,
  used: z.string(),
  limit: z.string(),
  limitWithGrace: z.string(),
  hard: z.boolean(),
  percentUsed: z.string(),
  level: z.number(),
  remaining: z.string(),
  exceeded: z.boolean(),
  overageQuantity: z.string(),
  overageFeeCents: z.number(),
});
