import { z } from 'zod';
import { isoDate, trimmedText } from '../schemas';

export const registerInput = z.strictObject({
  email: z.email().max(254),
  /** The developer's own name. */
  name: trimmedText(1, 200),
  /** Becomes the tenant's name (and, with a random suffix, its slug). */
  organization: trimmedText(1, 200),
  useCase: trimmedText(1, 2000).optional(),
  /** Free text, e.g. "50,000 events a month". */
  expectedVolume: trimmedText(1, 200).optional(),
  environment: z.enum(['live', 'test']),
});

/** The same shape for a first registration and a repeat (see registerDeveloper). */
export const registerOutput = z.object({
  tenant: z.object({ id: z.string(), name: z.string(), slug: z.string(), timezone: z.string(), createdAt: isoDate }),
  apiKey: z.object({
    id: z.string(),
    name: z.string(),
    prefix: z.string(),
    role: z.literal('owner'),
    environment: z.enum(['live', 'test']),
    userEmail: z.string().nullable(),
    organization: z.string().nullable(),
    createdAt: isoDate,
    /** The plain-text key: shown here once, never stored. */
    key: z.string(),
  }),
  message: z.string(),
});
