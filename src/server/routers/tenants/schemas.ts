import { z } from 'zod';
import { isoDate, timezoneSchema, trimmedText } from '../schemas';
import { createdApiKeySchema } from '../api-keys/schemas';

export const tenantSchema = z.object({
  id: z.string(),
  name: z.string(),
  slug: z.string(),
  timezone: z.string(),
  createdAt: isoDate,
  updatedAt: isoDate,
});

export const createTenantInput = z.strictObject({
  name: trimmedText(1, 200),
  slug: z
    .string()
    .min(2)
    .max(63)
    .regex(/^[a-z0-9]+(-[a-z0-9]+)*$/, 'must be lowercase letters, digits and single hyphens'),
  timezone: timezoneSchema.default('UTC'),
  ownerEmail: z.email().max(254).optional(),
  organization: trimmedText(1, 200).optional(),
  environment: z.enum(['live', 'test']).default('live'),
});

export const createTenantOutput = z.object({ tenant: tenantSchema, apiKey: createdApiKeySchema });
