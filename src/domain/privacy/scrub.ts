import { Decimal } from 'decimal.js';
import { payloadHashOf, type EventDimensions, type ParsedUsageEvent } from '../usage/event-schema';

/**
 * Replaces each needle where it stands as a token of its own: not glued to a letter or digit
 * on either side. "/users/u-42/files" loses u-42; "/v1/items" keeps its 1 when the user id is
 * "1", and so do UUIDs and other users' ids that merely contain it.
 */
export function replaceTokens(text: string, needles: readonly string[], replacement: string): string {
  let out = text;
  for (const needle of needles) {
    if (needle.length === 0) continue;
    let from = 0;
    for (;;) {
      const at = out.indexOf(needle, from);
      if (at === -1) break;
      const before = at > 0 ? out[at - 1]! : '';
      const after = out[at + needle.length] ?? '';
      if (isWordChar(before) || isWordChar(after)) {
        from = at + 1;
        continue;
      }
      out = out.slice(0, at) + replacement + out.slice(at + needle.length);
      from = at + replacement.length;
    }
  }
  return out;
}

function isWordChar(c: string): boolean {
  return /^[A-Za-z0-9]$/.test(c);
}

/** replaceTokens over every string and key of a JSON value; answers the same value when nothing matched. */
export function replaceTokensInJson(value: unknown, needles: readonly string[], replacement: string): unknown {
  if (typeof value === 'string') return replaceTokens(value, needles, replacement);
  if (Array.isArray(value)) return value.map((v) => replaceTokensInJson(v, needles, replacement));
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[replaceTokens(k, needles, replacement)] = replaceTokensInJson(v, needles, replacement);
    return out;
  }
  return value;
}

/** The dimension columns of a usage_events row, as pg returns them. */
export interface DimensionColumns {
  platform: string | null;
  device_type: string | null;
  user_id: string | null;
  user_email: string | null;
  organization: string | null;
  route: string | null;
  method: string | null;
  status_code: number | null;
  duration_ms: number | null;
  sdk_version: string | null;
  ip_address: string | null;
  country: string | null;
  properties: Record<string, unknown>;
}

export function dimensionsOf(r: DimensionColumns): EventDimensions {
  return {
    platform: r.platform,
    deviceType: r.device_type,
    userId: r.user_id,
    userEmail: r.user_email,
    organization: r.organization,
    route: r.route,
    method: r.method,
    statusCode: r.status_code,
    durationMs: r.duration_ms,
    sdkVersion: r.sdk_version,
    ipAddress: r.ip_address,
    country: r.country,
    properties: r.properties,
  };
}

/** A stored event as the erasure reads it. */
export interface StoredEvent extends EventDimensions {
  licenseId: string;
  usageType: string;
  /** numeric text as PostgreSQL writes it ("1.000000"). */
  quantity: string;
  occurredAt: Date;
}

/** Which optional parts the client sent: the stored row alone does not say (the server fills them in). */
interface Shape {
  occurredAt: boolean;
  ipAddress: boolean;
  properties: boolean;
}

function parsedOf(e: StoredEvent, shape: Shape): ParsedUsageEvent {
  const parsed: Record<string, unknown> = {
    licenseId: e.licenseId,
    usageType: e.usageType,
    quantity: new Decimal(e.quantity).toFixed(), // the normal form the schema hands on
  };
  if (shape.occurredAt) parsed.occurredAt = e.occurredAt.toISOString();
  for (const key of ['platform', 'deviceType', 'userId', 'userEmail', 'organization', 'route', 'method', 'statusCode', 'durationMs', 'sdkVersion'] as const) {
    if (e[key] !== null) parsed[key] = e[key];
  }
  if (shape.ipAddress && e.ipAddress !== null) parsed.ipAddress = e.ipAddress;
  if (shape.properties) parsed.properties = e.properties;
  return parsed as ParsedUsageEvent;
}

function hashOf(e: StoredEvent, shape: Shape): string {
  return payloadHashOf(parsedOf(e, shape), shape.occurredAt ? e.occurredAt.toISOString() : undefined);
}

/**
 * The payload hash of the event as it is after erasure, computed the way ingestion computed
 * the original one. The stored hash says which optional parts the client sent (occurredAt,
 * ipAddress, an empty properties object): the shape whose hash matches it is kept, so the new
 * hash is what a client sending the pseudonymised event would have produced. When no shape
 * matches (an event not written by ingestion), the event is hashed with occurredAt and
 * without the others. Either way the new hash no longer derives from the erased values.
 */
export function rehashErased(before: StoredEvent, storedHash: string, after: StoredEvent): string {
  const shapes: Shape[] = [];
  for (const occurredAt of [true, false]) {
    for (const ipAddress of before.ipAddress === null ? [false] : [false, true]) {
      for (const properties of Object.keys(before.properties).length === 0 ? [false, true] : [true]) {
        shapes.push({ occurredAt, ipAddress, properties });
      }
    }
  }
  const original = shapes.find((shape) => hashOf(before, shape) === storedHash);
  const shape = original ?? { occurredAt: true, ipAddress: false, properties: false };
  return hashOf(after, { ...shape, ipAddress: shape.ipAddress && after.ipAddress !== null, properties: shape.properties });
}
