import { z } from 'zod';
import { PLAN_CODES } from '../../../domain/plans/tiers';
import { DEFAULT_PLAN_CODE } from '../../../domain/licenses/licenses';
import { ENVIRONMENTS } from '../../../domain/environments/environment';
import { instantSchema, isoDate, isoDateOrNull, jsonValue, metadataSchema, timezoneSchema, trimmedText } from '../schemas';

export const environmentSchema = z.enum(ENVIRONMENTS);

export const licenseStatusSchema = z.enum(['ACTIVE', 'SUSPENDED', 'EXPIRED', 'REVOKED']);

export const licenseSchema = z.object({
  id: z.string(),
  tenantId: z.string(),
  externalId: z.string().nullable(),
  name: z.string(),
  status: licenseStatusSchema,
  usageTrackingEnabled: z.boolean(),
  plan: z.string(),
  timezone: z.string(),
  billingAnchor: isoDate,
  /** live or test, fixed at creation. */
  environment: environmentSchema,
  stripeCustomerId: z.string().nullable(),
  metadata: jsonValue,
  createdAt: isoDate,
  updatedAt: isoDate,
  deletedAt: isoDateOrNull,
});

const fields = {
  name: trimmedText(1, 200),
  externalId: trimmedText(1, 200),
  plan: z.enum(PLAN_CODES),
  timezone: timezoneSchema,
  billingAnchor: instantSchema,
  stripeCustomerId: z.string().regex(/^cus_[A-Za-z0-9]{1,64}$/, 'must be a Stripe customer id (cus_...)'),
  usageTrackingEnabled: z.boolean(),
  metadata: metadataSchema,
};

export const createLicenseInput = z.strictObject({
  name: fields.name,
  /** Default: the key's environment; only an admin key may name the other. */
  environment: environmentSchema.optional(),
  externalId: fields.externalId.optional(),
  plan: fields.plan.default(DEFAULT_PLAN_CODE),
  timezone: fields.timezone.optional(),
  billingAnchor: fields.billingAnchor.optional(),
  stripeCustomerId: fields.stripeCustomerId.optional(),
  usageTrackingEnabled: fields.usageTrackingEnabled.optional(),
  metadata: fields.metadata.optional(),
});

export const updateLicenseInput = z.strictObject({
  id: z.uuid(),
  name: fields.name.optional(),
  externalId: fields.externalId.nullable().optional(),
  plan: fields.plan.optional(),
  timezone: fields.timezone.optional(),
  billingAnchor: fields.billingAnchor.optional(),
  stripeCustomerId: fields.stripeCustomerId.nullable().optional(),
  usageTrackingEnabled: fields.usageTrackingEnabled.optional(),
  metadata: fields.metadata.optional(),
});
