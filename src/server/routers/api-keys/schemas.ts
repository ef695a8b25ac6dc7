import { z } from 'zod';
import { isoDate, isoDateOrNull, jsonValue, metadataSchema, trimmedText } from '../schemas';

export const apiKeySchema = z.object({
  id: z.string(),
  tenantId: z.string().nullable(),
  name: z.string(),
  prefix: z.string(),
  role: z.enum(['admin', 'owner', 'member', 'ingest', 'read']),
  environment: z.enum(['live', 'test']),
  userEmail: z.string().nullable(),
  organization: z.string().nullable(),
  metadata: jsonValue,
  sdkVersion: z.string().nullable(),
  rateLimitPerHour: z.number().nullable(),
  requestCount: z.bigint().transform(Number),
  lastUsedAt: isoDateOrNull,
  createdAt: isoDate,
  revokedAt: isoDateOrNull,
});

export const createdApiKeySchema = apiKeySchema.extend({
  /** The plain-text key: shown here once, never stored. */
  key: z.string(),
});

export const createApiKeyInput = z.strictObject({
  name: trimmedText(1, 100),
  role: z.enum(['owner', 'member', 'ingest', 'read']),
  /** Default: the calling key's environment; only an admin key may name the other. */
  environment: z.enum(['live', 'test']).optional(),
  userEmail: z.email().max(254).optional(),
  organization: trimmedText(1, 200).optional(),
  metadata: metadataSchema.optional(),
  rateLimitPerHour: z.number().int().min(1).max(100_000_000).optional(),
});
