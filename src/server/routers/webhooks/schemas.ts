import { z } from 'zod';
import { WEBHOOK_EVENT_TYPES } from '../../../domain/webhooks/events';
import { isoDate, isoDateOrNull } from '../schemas';

// Any http(s) URL here; which hosts and addresses it may reach is checked by the domain
// (src/domain/webhooks/url-policy.ts) under the configured allowlist.
export const webhookUrlSchema = z.url({ protocol: /^https?$/ }).max(2000);

export const webhookEventsSchema = z.array(z.enum(WEBHOOK_EVENT_TYPES)).max(WEBHOOK_EVENT_TYPES.length);

export const endpointSchema = z.object({
  id: z.string(),
  url: z.string(),
  description: z.string().nullable(),
  events: z.array(z.string()),
  enabled: z.boolean(),
  /** live or test: the endpoint receives events of that environment's licenses only. */
  environment: z.enum(['live', 'test']),
  rotating: z.boolean(),
  previousSecretExpiresAt: isoDateOrNull,
  createdAt: isoDate,
  updatedAt: isoDate,
});

export const endpointWithSecretSchema = endpointSchema.extend({ secret: z.string() });
