import { z } from 'zod';
import { isIanaTimeZone } from '../../domain/timezones';
import { boundedJsonObject } from '../../lib/json-value';

/** Output helpers: dates go out as ISO 8601 strings, decimals and big counters as exact strings. */
export const isoDate = z.date().transform((d) => d.toISOString());
export const isoDateOrNull = isoDate.nullable();
export const jsonValue = z.unknown();

export const timezoneSchema = z
  .string()
  .max(64)
  .refine(isIanaTimeZone, 'must be an IANA time zone name such as "Europe/Berlin" or "UTC"');

/** Free JSON, nested at most MAX_JSON_DEPTH levels (checked before the size, which stringifies it). */
export const metadataSchema = boundedJsonObject(128)
  .refine((m) => Buffer.byteLength(JSON.stringify(m)) <= 8192, 'must be at most 8 KB as JSON');

export const idInput = z.strictObject({ id: z.uuid() });

export const pageInput = {
  limit: z.number().int().min(1).max(100).default(50),
  cursor: z.string().max(200).optional(),
};

export const pageOutput = <T extends z.ZodType>(item: T) => z.object({ items: z.array(item), nextCursor: z.string().nullable() });
