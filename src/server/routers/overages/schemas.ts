import { z } from 'zod';
import { isoDate, isoDateOrNull } from '../schemas';

export const overageStatusSchema = z.enum(['DETECTED', 'APPROVED', 'WAIVED', 'BILLED']);

export const overageSchema = z.object({
  id: z.string(),
  licenseId: z.string(),
  thresholdId: z.string(),
  usageType: z.string(),
  periodType: z.enum(['daily', 'weekly', 'monthly']),
  periodStart: isoDate,
  periodEnd: isoDate,
  quantity: z.string(),
  rateCents: z.number(),
  feeCents: z.number(),
  status: overageStatusSchema,
  final: z.boolean(),
  decidedAt: isoDateOrNull,
  createdAt: isoDate,
  updatedAt: isoDate,
});
