import { z } from 'zod';
import { PLAN_CODES } from '../../../domain/plans/tiers';
import { instantSchema } from '../schemas';

export const modeSchema = z.enum(['live', 'test']);

export const connectionSchema = z.object({
  id: z.string(),
  mode: modeSchema,
  keyHint: z.string(),
  currency: z.string(),
  reportFrom: z.string(),
  webhookPath: z.string(),
  createdAt: z.string(),
  updatedAt: z.string(),
});

export const connectInput = z.strictObject({
  secretKey: z.string().regex(/^(sk|rk)_(test|live)_[A-Za-z0-9_]{8,247}$/, 'must be a Stripe secret key (sk_test_…, sk_live_…, rk_test_… or rk_live_…)'),
  webhookSecret: z.string().regex(/^whsec_[A-Za-z0-9_+/=]{8,250}$/, 'must be a Stripe webhook signing secret (whsec_…)'),
  currency: z.string().regex(/^[a-zA-Z]{3}$/, 'must be a three-letter ISO currency code').optional(),
  reportFrom: instantSchema.optional(),
});

const eventName = z.string().regex(/^[A-Za-z0-9_.:-]{1,100}$/, 'must be 1–100 letters, digits or _ . : -');
const decimalString = (what: string) =>
  z
    .string()
    .regex(/^\d{1,18}(\.\d{1,12})?$/, `${what} must be a decimal string with at most 18 digits and 12 decimals`);

export const upsertMeterInput = z.strictObject({
  usageType: z.string().regex(/^[a-z0-9_.:-]{1,64}$/, 'must be 1–64 characters of a-z 0-9 _ . : -'),
  eventName,
  mode: modeSchema.optional(),
  unitMultiplier: decimalString('unitMultiplier')
    .refine((v) => Number(v) > 0, 'unitMultiplier must be more than 0')
    .optional(),
  stripeMeterId: z.string().regex(/^mtr_[A-Za-z0-9_]{1,100}$/, 'must be a Stripe meter id (mtr_…)').optional(),
  createMeter: z.boolean().optional(),
  stripePriceId: z.string().regex(/^price_[A-Za-z0-9_]{1,100}$/, 'must be a Stripe price id (price_…)').optional(),
  unitAmountDecimal: decimalString('unitAmountDecimal').optional(),
});

export const meterSchema = z.object({
  id: z.string(),
  mode: modeSchema,
  usageType: z.string(),
  eventName: z.string(),
  stripeMeterId: z.string().nullable(),
  unitMultiplier: z.string(),
  stripePriceId: z.string().nullable(),
  unitAmountDecimal: z.string().nullable(),
  createdAt: z.string(),
  updatedAt: z.string(),
});

export const planPriceInput = z.strictObject({
  stripePriceId: z.string().regex(/^price_[A-Za-z0-9_]{1,100}$/, 'must be a Stripe price id (price_…)'),
  plan: z.enum(PLAN_CODES),
  mode: modeSchema.optional(),
});
