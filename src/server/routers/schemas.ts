import { z } from 'zod';
import { isIanaTimeZone } from '../../domain/timezones';
import { boundedJsonObject } from '../../lib/json-value';
import { UNSTORABLE_MESSAGE, storableChars } from '../../lib/storable-text';

/** Output helpers: dates go out as ISO 8601 strings, decimals and big counters as exact strings. */
export const isoDate = z.date().transform((d) => d.toISOString());
export const isoDateOrNull = isoDate.nullable();
export const jsonValue = z.unknown();

export const timezoneSchema = z
  .string()
  .max(64)
  .refine(isIanaTimeZone, 'must be an IANA time zone name such as "Europe/Berlin" or "UTC"');

/** Client text of at most `max` characters that PostgreSQL can store and compare. */
export const text = (max: number) => z.string().max(max).refine(storableChars, UNSTORABLE_MESSAGE);
/** The same, trimmed and at least `min` characters long. */
export const trimmedText = (min: number, max: number) => z.string().trim().min(min).max(max).refine(storableChars, UNSTORABLE_MESSAGE);

/** Whether every key and string inside a JSON value is storable (iterative: any depth). */
function storableJson(value: unknown): boolean {
  const stack: unknown[] = [value];
  while (stack.length) {
    const v = stack.pop();
    if (typeof v === 'string') {
      if (!storableChars(v)) return false;
    } else if (Array.isArray(v)) stack.push(...v);
    else if (v && typeof v === 'object') {
      for (const [k, inner] of Object.entries(v)) {
        if (!storableChars(k)) return false;
        stack.push(inner);
      }
    }
  }
  return true;
}

/** Free JSON, nested at most MAX_JSON_DEPTH levels (checked before the size, which stringifies it), storable. */
export const metadataSchema = boundedJsonObject(128)
  .refine((m) => Buffer.byteLength(JSON.stringify(m)) <= 8192, 'must be at most 8 KB as JSON')
  .refine(storableJson, UNSTORABLE_MESSAGE);

/** Instants PostgreSQL's timestamptz and JavaScript's Date both hold and print the same way. */
const FIRST_INSTANT = new Date('0001-01-01T00:00:00Z').getTime();
const END_INSTANT = new Date('9999-12-31T23:59:59.999Z').getTime();

/** An ISO 8601 instant with a zone, from 0001-01-01 to 9999-12-31 (UTC), as a Date. */
export const instantSchema = z.iso
  .datetime({ offset: true })
  .transform((s) => new Date(s))
  .refine((d) => d.getTime() >= FIRST_INSTANT && d.getTime() <= END_INSTANT, 'must be from 0001-01-01 to 9999-12-31 (UTC)');

export const idInput = z.strictObject({ id: z.uuid() });

export const pageInput = {
  limit: z.number().int().min(1).max(100).default(50),
  cursor: z.string().max(200).optional(),
};

export const pageOutput = <T extends z.ZodType>(item: T) => z.object({ items: z.array(item), nextCursor: z.string().nullable() });
