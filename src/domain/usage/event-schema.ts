import { hash } from 'node:crypto';
import { Decimal } from 'decimal.js';
import { z } from 'zod';
import { boundedJsonObject } from '../../lib/json-value';
import { UNSTORABLE_MESSAGE, storableChars } from '../../lib/storable-text';
import type { Environment } from '../environments/environment';

export const USAGE_TYPE_PATTERN = /^[a-z0-9_.:-]{1,64}$/;
export const MAX_PROPERTIES_KEYS = 50;
export const MAX_PROPERTIES_BYTES = 8 * 1024;
export const MAX_QUANTITY_SIGNIFICANT_DIGITS = 15;
export const MAX_QUANTITY_DECIMALS = 6;

/** PostgreSQL text cannot hold NUL, and jsonb rejects lone surrogates: refuse them up front. */
const storableText = (max: number) =>
  z.string().max(max).refine(storableChars, UNSTORABLE_MESSAGE);

/** The decimal a quantity stands for, or what is wrong with it. */
function parseQuantity(value: string): { ok: true; decimal: Decimal } | { ok: false; problem: string } {
  let d: Decimal;
  try {
    d = new Decimal(value);
  } catch {
    return { ok: false, problem: 'must be a decimal number' };
  }
  if (!d.isFinite()) return { ok: false, problem: 'must be finite' };
  if (d.isNegative() && !d.isZero()) return { ok: false, problem: 'must be at least 0' };
  if (d.decimalPlaces() > MAX_QUANTITY_DECIMALS) return { ok: false, problem: `must have at most ${MAX_QUANTITY_DECIMALS} decimal places` };
  if (!d.isZero() && d.precision(true) > MAX_QUANTITY_SIGNIFICANT_DIGITS) {
    return { ok: false, problem: `must have at most ${MAX_QUANTITY_SIGNIFICANT_DIGITS} significant digits` };
  }
  return { ok: true, decimal: d };
}

/** The normalised decimal text of a quantity, or what is wrong with it (decimal.js decides). */
export function decimalQuantityText(value: number | string): { ok: true; text: string } | { ok: false; problem: string } {
  if (typeof value === 'number' && !Number.isFinite(value)) return { ok: false, problem: 'must be finite' };
  const parsed = parseQuantity(String(value));
  return parsed.ok ? { ok: true, text: parsed.decimal.toFixed() } : parsed;
}

/** Decimal text already in normal form: no sign, no leading or trailing zeros, at most 6 decimals. */
const NORMAL_DECIMAL = /^(0|[1-9]\d*)(\.\d{0,5}[1-9])?$/;

/**
 * The common quantities (whole numbers, decimal text already in normal form) without
 * decimal.js, or null to leave the value to decimalQuantityText. Same answers (a property
 * test holds them together); a third of the validation time of a typical event otherwise.
 */
export function fastQuantityText(value: number | string): string | null {
  if (typeof value === 'number') return Number.isFinite(value) ? fastQuantityText(String(value)) : null; // String(): decimal.js's input too
  if (!NORMAL_DECIMAL.test(value)) return null;
  const dot = value.indexOf('.');
  const whole = dot === -1 ? value : value.slice(0, dot);
  const fraction = dot === -1 ? '' : value.slice(dot + 1);
  const significant = whole === '0' ? fraction.replace(/^0+/, '').length : whole.length + fraction.length;
  return significant <= MAX_QUANTITY_SIGNIFICANT_DIGITS ? value : null;
}

/** A JSON number or a decimal string; always handed on as a normalised decimal string. */
export const quantitySchema = z
  .union([z.number(), z.string().regex(/^-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/, 'must be a decimal number')])
  .transform((value, ctx) => {
    const fast = fastQuantityText(value);
    if (fast !== null) return fast;
    const parsed = decimalQuantityText(value);
    if (!parsed.ok) {
      ctx.addIssue({ code: 'custom', message: parsed.problem });
      return z.NEVER;
    }
    return parsed.text;
  });

/** Nested at most MAX_JSON_DEPTH levels (checked without recursion) before anything recurses over it. */
const propertiesSchema = boundedJsonObject(128)
  .superRefine((props, ctx) => {
    const keys = Object.keys(props).length;
    if (keys > MAX_PROPERTIES_KEYS) {
      ctx.addIssue({ code: 'custom', message: `must have at most ${MAX_PROPERTIES_KEYS} keys (got ${keys})` });
    }
    const json = JSON.stringify(props);
    const bytes = Buffer.byteLength(json);
    if (bytes > MAX_PROPERTIES_BYTES) {
      ctx.addIssue({ code: 'custom', message: `must be at most ${MAX_PROPERTIES_BYTES} bytes as JSON (got ${bytes})` });
    }
    if (json.includes('\\u0000') || !json.isWellFormed()) {
      ctx.addIssue({ code: 'custom', message: 'must not contain NUL or unpaired surrogate characters' });
    }
  });


/** Limits of the free-text fields, shared by the schema and the fast path below. */
const TEXT_LIMITS = {
  idempotencyKey: 255,
  platform: 64,
  deviceType: 64,
  userId: 256,
  route: 512,
  method: 16,
  sdkVersion: 100,
  organization: 256,
  /** RFC 5321's limit on a forward path, less its angle brackets. */
  userEmail: 254,
} as const;
export const MAX_USER_EMAIL_LENGTH = TEXT_LIMITS.userEmail;
export const MAX_ORGANIZATION_LENGTH = TEXT_LIMITS.organization;
/** zod's email shape (the same regex the fast path tests). */
const EMAIL = z.regexes.email;
const INT_RANGES = { statusCode: [100, 599], durationMs: [0, 2_147_483_647] } as const;

export const usageTypeSchema = z.string().regex(USAGE_TYPE_PATTERN, 'must be 1-64 characters of a-z, 0-9, _ . : -');
export const usageEventInputSchema = z.strictObject({
  licenseId: z.uuid(),
  usageType: usageTypeSchema,
  quantity: quantitySchema.default('1'),
  /** ISO 8601 with a zone; defaults to the time the event is received. */
  occurredAt: z.iso.datetime({ offset: true }).optional(),
  idempotencyKey: storableText(TEXT_LIMITS.idempotencyKey).min(1).optional(),
  platform: storableText(TEXT_LIMITS.platform).optional(),
  deviceType: storableText(TEXT_LIMITS.deviceType).optional(),
  userId: storableText(TEXT_LIMITS.userId).optional(),
  /** Personal data: stored on the event, exported and erased per user, never shown in analytics. */
  userEmail: z.email({ pattern: EMAIL }).max(TEXT_LIMITS.userEmail).optional(),
  organization: storableText(TEXT_LIMITS.organization).min(1).optional(),
  route: storableText(TEXT_LIMITS.route).optional(),
  method: storableText(TEXT_LIMITS.method).optional(),
  statusCode: z.number().int().min(INT_RANGES.statusCode[0]).max(INT_RANGES.statusCode[1]).optional(),
  durationMs: z.number().int().min(INT_RANGES.durationMs[0]).max(INT_RANGES.durationMs[1]).optional(),
  sdkVersion: storableText(TEXT_LIMITS.sdkVersion).optional(),
  ipAddress: z.union([z.ipv4(), z.ipv6()]).optional(),
  properties: propertiesSchema.optional(),
});

export type UsageEventInput = z.input<typeof usageEventInputSchema>;
export type ParsedUsageEvent = z.output<typeof usageEventInputSchema>;

const UUID = z.regexes.uuid();
const OFFSET_DATETIME = z.regexes.datetime({ offset: true });

/**
 * Within `storableText(max)` of the schema: a string of at most `max` UTF-16 units, no NUL, well
 * formed. (zod may accept a longer one when it counts code points; such strings go to zod.)
 */
function storable(value: unknown, max: number): value is string {
  return typeof value === 'string' && value.length <= max && storableChars(value);
}

function safeIntIn(value: unknown, [min, max]: readonly [number, number]): value is number {
  return Number.isSafeInteger(value) && (value as number) >= min && (value as number) <= max;
}

/**
 * The events most clients send (known fields with plain values, quantities in normal form),
 * checked without zod: the same answer as `usageEventInputSchema.safeParse(raw).data`, or
 * null to leave the event to zod, which also words what is wrong. zod's object machinery was
 * ~4 µs of an event's ~25 µs of API time under batch ingest. A property test holds the two
 * together over valid, invalid and unusual events.
 */
export function fastParseEvent(raw: unknown): ParsedUsageEvent | null {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return null;
  const out: Partial<Record<keyof ParsedUsageEvent, unknown>> = {};
  let quantity: string | null = '1';
  for (const key of Object.keys(raw)) {
    const value = (raw as Record<string, unknown>)[key];
    switch (key) {
      case 'licenseId':
        if (typeof value !== 'string' || !UUID.test(value)) return null;
        break;
      case 'usageType':
        if (typeof value !== 'string' || !USAGE_TYPE_PATTERN.test(value)) return null;
        break;
      case 'quantity':
        quantity = typeof value === 'number' || typeof value === 'string' ? fastQuantityText(value) : null;
        if (quantity === null) return null;
        continue;
      case 'occurredAt':
        if (typeof value !== 'string' || !OFFSET_DATETIME.test(value)) return null;
        break;
      case 'idempotencyKey':
        if (!storable(value, TEXT_LIMITS.idempotencyKey) || value.length === 0) return null;
        break;
      case 'userEmail':
        if (typeof value !== 'string' || value.length > TEXT_LIMITS.userEmail || !EMAIL.test(value)) return null;
        break;
      case 'organization':
        if (!storable(value, TEXT_LIMITS.organization) || value.length === 0) return null;
        break;
      case 'platform':
      case 'deviceType':
      case 'userId':
      case 'route':
      case 'method':
      case 'sdkVersion':
        if (!storable(value, TEXT_LIMITS[key])) return null;
        break;
      case 'statusCode':
      case 'durationMs':
        if (!safeIntIn(value, INT_RANGES[key])) return null;
        break;
      default:
        return null; // ipAddress, properties, unknown keys: zod's business
    }
    out[key] = value;
  }
  if (out.licenseId === undefined || out.usageType === undefined) return null;
  out.quantity = quantity;
  return out as ParsedUsageEvent;
}

/** The dimensions an event carries besides its license, type, quantity and time, as stored. */
export interface EventDimensions {
  platform: string | null;
  deviceType: string | null;
  userId: string | null;
  userEmail: string | null;
  organization: string | null;
  route: string | null;
  method: string | null;
  statusCode: number | null;
  durationMs: number | null;
  sdkVersion: string | null;
  ipAddress: string | null;
  /** ISO 3166-1 alpha-2 country of ipAddress, looked up at ingestion; never sent by clients (not hashed). */
  country: string | null;
  properties: Record<string, unknown>;
}

/** An event ready to store: validated, time-bounded, with defaults filled in and its payload hash. */
export interface NormalizedEvent extends EventDimensions {
  id: string;
  tenantId: string;
  /** The environment of the key that sent it: only a license of this environment takes it. */
  environment: Environment;
  licenseId: string;
  usageType: string;
  quantity: string;
  occurredAt: Date;
  /** occurredAt as `toISOString()` writes it, computed once (it is hashed and stored). */
  occurredAtIso: string;
  idempotencyKey: string | null;
  payloadHash: string;
}

export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/** The hashed fields in canonical (sorted) order, each with its JSON-encoded key. */
const HASHED_FIELDS = Object.keys(usageEventInputSchema.shape)
  .filter((key) => key !== 'idempotencyKey')
  .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
  .map((key) => [key as keyof ParsedUsageEvent, JSON.stringify(key)] as const);

/**
 * The hash of what the client sent, normalised (decimal quantity, instant of occurredAt, key
 * order), so a retry of the same event matches and a different event under the same key does
 * not. Defaults the server fills in (receive time) are not part of it. The text hashed is the
 * canonical JSON of the event without its key (sorted keys at every level, undefined left
 * out); the top level is written from the schema's known fields in that order, which is the
 * same text without sorting each event's keys (stored hashes depend on it: a unit test holds
 * it to the plain definition). `occurredAtIso`, when the caller has it, is that instant's
 * `toISOString()`.
 */
export function payloadHashOf(event: ParsedUsageEvent, occurredAtIso?: string): string {
  let json = '{';
  for (const [key, encodedKey] of HASHED_FIELDS) {
    const value = key === 'occurredAt' ? (event.occurredAt ? (occurredAtIso ?? new Date(event.occurredAt).toISOString()) : undefined) : event[key];
    if (value === undefined) continue;
    json += `${json.length > 1 ? ',' : ''}${encodedKey}:${canonicalJson(value)}`;
  }
  return hash('sha256', `${json}}`, 'hex'); // one-shot: no Hash object per event
}
