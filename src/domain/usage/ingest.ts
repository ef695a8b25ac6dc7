import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import type { Metrics } from '../../lib/metrics';
import { isUnavailableError } from '../../lib/errors';
import { pgArray } from '../../lib/pg-array';
import { ensureUsageEventPartitions } from './partitions';
import { type NormalizedEvent, type ParsedUsageEvent, payloadHashOf } from './event-schema';
import { DAY_MS } from '../../lib/time';
import { countryOfAddress } from '../../lib/geoip';
import type { Environment } from '../environments/environment';
import { type LicenseRecord, LicenseCache, licenseRefusal } from '../licenses/license-cache';

export type EventOutcome =
  | { status: 'accepted'; eventId: string }
  | { status: 'duplicate'; eventId: string }
  | { status: 'rejected'; code: RejectionCode; message: string };

export type RejectionCode =
  | 'INVALID_EVENT'
  | 'LICENSE_NOT_FOUND'
  | 'LICENSE_INACTIVE'
  | 'IDEMPOTENCY_CONFLICT'
  | 'OUT_OF_RANGE'
  | 'QUOTA_EXCEEDED';

export interface IngestLimits {
  maxAgeMs: number;
  maxFutureMs: number;
}

/** Applies the time bounds and defaults; returns a rejection when the event cannot be stored. */
export function normalizeEvent(
  tenantId: string,
  environment: Environment,
  event: ParsedUsageEvent,
  limits: IngestLimits,
  now: Date,
  requestIp?: string,
): NormalizedEvent | Extract<EventOutcome, { status: 'rejected' }> {
  const occurredAt = event.occurredAt ? new Date(event.occurredAt) : now;
  if (occurredAt.getTime() > now.getTime() + limits.maxFutureMs) {
    return {
      status: 'rejected',
      code: 'OUT_OF_RANGE',
      message: `occurredAt: must be at most ${limits.maxFutureMs / 1000} seconds in the future`,
    };
  }
  if (occurredAt.getTime() < now.getTime() - limits.maxAgeMs) {
    return {
      status: 'rejected',
      code: 'OUT_OF_RANGE',
      message: `occurredAt: must be at most ${limits.maxAgeMs / DAY_MS} days old (older data goes through the admin backfill)`,
    };
  }
  const occurredAtIso = occurredAt.toISOString();
  const ipAddress = event.ipAddress ?? requestIp ?? null;
  return {
    id: randomUUID(),
    tenantId,
    environment,
    licenseId: event.licenseId,
    usageType: event.usageType,
    quantity: event.quantity,
    occurredAt,
    occurredAtIso,
    idempotencyKey: event.idempotencyKey ?? null,
    payloadHash: payloadHashOf(event, event.occurredAt ? occurredAtIso : undefined),
    platform: event.platform ?? null,
    deviceType: event.deviceType ?? null,
    userId: event.userId ?? null,
    userEmail: event.userEmail ?? null,
    organization: event.organization ?? null,
    route: event.route ?? null,
    method: event.method ?? null,
    statusCode: event.statusCode ?? null,
    durationMs: event.durationMs ?? null,
    sdkVersion: event.sdkVersion ?? null,
    ipAddress,
    country: countryOfAddress(ipAddress),
    properties: event.properties ?? {},
  };
}

/**
 * One statement claims the idempotency keys and stores exactly the events whose key it
 * claimed (or that carry none). Being one statement, it is one transaction: a key is never
 * claimed without its event. A concurrent claim of the same key waits for the other
 * transaction and then yields to it, so exactly one event is stored per key. Rows arrive
 * sorted by key, so two groups sharing keys lock them in the same order (no deadlock).
 *
 * The same statement marks the hours of stored events that an hourly rollup may already
 * have covered (any hour before the one starting within the next $19 seconds), so a late
 * event and the mark that gets its window recomputed commit together. It answers with the
 * events it did not store: being one statement, it stored all the others or nothing.
 */
const INSERT_EVENTS_SQL = `
WITH input AS (
  SELECT * FROM unnest(
    $1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::numeric[], $6::timestamptz[], $7::text[], $8::text[],
    $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::int[], $15::int[], $16::text[],
    $17::text[], $18::jsonb[], $20::text[], $21::text[], $22::text[]
  ) AS t(id, tenant_id, license_id, usage_type, quantity, occurred_at, idempotency_key, payload_hash,
         platform, device_type, user_id, route, method, status_code, duration_ms, sdk_version,
         ip_address, properties, country, user_email, organization)
),
claimed AS (
  INSERT INTO idempotency_keys (tenant_id, key, event_id, occurred_at, payload_hash)
  SELECT tenant_id, idempotency_key, id, occurred_at, payload_hash FROM input WHERE idempotency_key IS NOT NULL
  ON CONFLICT DO NOTHING
  RETURNING event_id
),
stored AS (
  INSERT INTO usage_events (id, tenant_id, license_id, usage_type, quantity, occurred_at, idempotency_key,
    payload_hash, platform, device_type, user_id, route, method, status_code, duration_ms, sdk_version,
    ip_address, properties, country, user_email, organization)
  SELECT id, tenant_id, license_id, usage_type, quantity, occurred_at, idempotency_key, payload_hash, platform,
         device_type, user_id, route, method, status_code, duration_ms, sdk_version, ip_address, properties, country,
         user_email, organization
    FROM input
   WHERE idempotency_key IS NULL OR id IN (SELECT event_id FROM claimed)
  RETURNING id, tenant_id, license_id, occurred_at
),
marked AS (
  INSERT INTO rollup_dirty_hours (tenant_id, license_id, hour)
  SELECT DISTINCT tenant_id, license_id, date_trunc('hour', occurred_at) FROM stored
   WHERE occurred_at < date_trunc('hour', now() + make_interval(secs => $19::int))
   ORDER BY 1, 2, 3
  -- DO UPDATE, not DO NOTHING: it locks an existing mark until this statement commits, so a
  -- recompute that deletes the mark waits and then sees this event, or (if it deleted first)
  -- this insert waits and then writes a fresh mark. Either way the event is counted or marked.
  ON CONFLICT (tenant_id, license_id, hour) DO UPDATE SET marked_at = EXCLUDED.marked_at
)
-- The events not stored (their key was claimed before): a few rows to read, not one per event;
-- and how many were stored, which the caller checks against the two adding up.
SELECT id, NULL::bigint AS stored FROM input WHERE idempotency_key IS NOT NULL AND id NOT IN (SELECT event_id FROM claimed)
UNION ALL
SELECT NULL, count(*) FROM stored`;

/**
 * Seconds before an hour ends from which its events are marked dirty anyway: an event
 * written just before the hour closes may commit after the hourly run has read it.
 */
export const LATE_MARK_LEAD_SECONDS = 120;

type Column = readonly [get: (e: NormalizedEvent) => string | number | null, plain: boolean];

/** The INSERT's columns in parameter order; one accessor per field keeps each property read monomorphic. */
const COLUMNS: readonly Column[] = [
  [(e) => e.id, true],
  [(e) => e.tenantId, true],
  [(e) => e.licenseId, true],
  [(e) => e.usageType, false], // quoted: a usage type may be spelled "null"
  [(e) => e.quantity, true],
  [(e) => e.occurredAtIso, true],
  [(e) => e.idempotencyKey, false],
  [(e) => e.payloadHash, true],
  [(e) => e.platform, false],
  [(e) => e.deviceType, false],
  [(e) => e.userId, false],
  [(e) => e.route, false],
  [(e) => e.method, false],
  [(e) => e.statusCode, true],
  [(e) => e.durationMs, true],
  [(e) => e.sdkVersion, false],
  [(e) => e.ipAddress, false],
  [(e) => JSON.stringify(e.properties), false],
];

function insertParams(events: NormalizedEvent[]): unknown[] {
  const params: unknown[] = COLUMNS.map(([get, plain]) => pgArray(events, plain, get));
  params.push(LATE_MARK_LEAD_SECONDS);
  // $20, after $19: the country came with the column, appended so the other numbers stay put.
  params.push(pgArray(events, true, (e) => e.country));
  // $21, $22: the user's email and organization, appended for the same reason.
  params.push(pgArray(events, false, (e) => e.userEmail));
  params.push(pgArray(events, false, (e) => e.organization));
  return params;
}

function licenseRejection(license: LicenseRecord | undefined, event: NormalizedEvent): EventOutcome | null {
  const refused = licenseRefusal(license, event.tenantId, event.environment);
  return refused ? { status: 'rejected', ...refused } : null;
}

const keyOf = (e: { tenantId: string; idempotencyKey: string | null }) => `${e.tenantId}\u0000${e.idempotencyKey}`;

/** Orders rows the way their idempotency keys are locked: by tenant, then key. */
function byKey(a: NormalizedEvent, b: NormalizedEvent): number {
  if (a.tenantId !== b.tenantId) return a.tenantId < b.tenantId ? -1 : 1;
  const ka = a.idempotencyKey ?? '';
  const kb = b.idempotencyKey ?? '';
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}

export class EventWriter {
  /** Where licenses are looked up: the quota enforcer's cache, so both read one entry (uncached when none is given). */
  readonly licenses: LicenseCache;

  constructor(
    private readonly pool: pg.Pool,
    private readonly metrics?: Metrics,
    licenses?: LicenseCache,
  ) {
    this.licenses = licenses ?? new LicenseCache(pool, { ttlMs: 0 });
  }

  /**
   * Stores a group of events (possibly of several tenants) in one multi-row statement and
   * returns one outcome per event, in order. Repeats of an idempotency key inside the group
   * are judged against the first occurrence, exactly as if they had arrived later.
   */
  async write(events: NormalizedEvent[]): Promise<EventOutcome[]> {
    const outcomes: (EventOutcome | undefined)[] = new Array(events.length);
    const licenses = await this.licenses.getMany(new Set(events.map((e) => e.licenseId)));

    // The first event of each key, per tenant (no key string built per event).
    const firstByKey = new Map<string, Map<string, number>>();
    const firstOf = (e: NormalizedEvent) => firstByKey.get(e.tenantId)?.get(e.idempotencyKey!);
    const toInsert: number[] = [];
    events.forEach((e, i) => {
      const refused = licenseRejection(licenses.get(e.licenseId), e);
      if (refused) {
        outcomes[i] = refused;
        return;
      }
      if (e.idempotencyKey !== null) {
        let keys = firstByKey.get(e.tenantId);
        if (!keys) firstByKey.set(e.tenantId, (keys = new Map()));
        if (keys.has(e.idempotencyKey)) return; // resolved against the first occurrence below
        keys.set(e.idempotencyKey, i);
      }
      toInsert.push(i);
    });

    const stored = await this.insertIsolatingBadRows(toInsert.map((i) => events[i]!));
    for (const i of toInsert) {
      const e = events[i]!;
      const failed = stored.failed.get(e.id);
      if (failed) outcomes[i] = failed;
      else if (!stored.notStored.has(e.id)) outcomes[i] = { status: 'accepted', eventId: e.id };
    }

    // Keys we did not claim belong to an earlier event: same payload is a duplicate, a
    // different payload a conflict. Repeats inside the group compare with the first.
    const unresolved = events.map((e, i) => ({ e, i })).filter(({ e, i }) => outcomes[i] === undefined && e.idempotencyKey !== null);
    if (unresolved.length) {
      const existing = await this.lookupKeys(unresolved.map(({ e }) => e));
      for (const { e, i } of unresolved) {
        const first = events[firstOf(e)!]!;
        const firstOutcome = outcomes[firstOf(e)!];
        const original =
          firstOutcome?.status === 'accepted' && first !== e
            ? { eventId: first.id, payloadHash: first.payloadHash }
            : existing.get(keyOf(e));
        if (!original) {
          outcomes[i] = firstOutcome ?? { status: 'rejected', code: 'INVALID_EVENT', message: 'event could not be stored' };
        } else if (original.payloadHash === e.payloadHash) {
          outcomes[i] = { status: 'duplicate', eventId: original.eventId };
        } else {
          outcomes[i] = {
            status: 'rejected',
            code: 'IDEMPOTENCY_CONFLICT',
            message: `idempotencyKey: already used for a different event (${original.eventId})`,
          };
        }
      }
    }

    // Array.from, not map: map skips the holes an event without an outcome leaves in the array.
    return Array.from(
      outcomes,
      (o) => o ?? ({ status: 'rejected', code: 'INVALID_EVENT', message: 'event could not be stored' } as const),
    );
  }

  /**
   * For events that will not be written (refused by a quota): the answer a repeat of an
   * already-stored event gets (duplicate, or conflict for another payload), by position;
   * undefined when its key is unused or it has none.
   */
  async storedOutcomes(events: NormalizedEvent[]): Promise<(EventOutcome | undefined)[]> {
    const keyed = events.filter((e) => e.idempotencyKey !== null);
    if (keyed.length === 0) return events.map(() => undefined);
    const existing = await this.lookupKeys(keyed);
    return events.map((e): EventOutcome | undefined => {
      const original = e.idempotencyKey === null ? undefined : existing.get(keyOf(e));
      if (!original) return undefined;
      if (original.payloadHash === e.payloadHash) return { status: 'duplicate', eventId: original.eventId };
      return {
        status: 'rejected',
        code: 'IDEMPOTENCY_CONFLICT',
        message: `idempotencyKey: already used for a different event (${original.eventId})`,
      };
    });
  }

  private async lookupKeys(events: NormalizedEvent[]) {
    const { rows } = await this.pool.query<{ tenant_id: string; key: string; event_id: string; payload_hash: string }>(
      `SELECT k.tenant_id, k.key, k.event_id, k.payload_hash
         FROM idempotency_keys k
         JOIN unnest($1::uuid[], $2::text[]) AS q(tenant_id, key) ON k.tenant_id = q.tenant_id AND k.key = q.key`,
      [events.map((e) => e.tenantId), events.map((e) => e.idempotencyKey)],
    );
    return new Map(
      rows.map((r) => [keyOf({ tenantId: r.tenant_id, idempotencyKey: r.key }), { eventId: r.event_id, payloadHash: r.payload_hash }]),
    );
  }

  /** Stores the events in one statement; answers the ids of those not stored (key already claimed). */
  private async insert(events: NormalizedEvent[]): Promise<Set<string>> {
    if (events.length === 0) return new Set();
    this.metrics?.ingestFlushSize.observe(events.length);
    const sorted = [...events].sort(byKey);
    const run = async () => {
      const { rows } = await this.pool.query<{ id: string | null; stored: string | null }>(INSERT_EVENTS_SQL, insertParams(sorted));
      const notStored = new Set<string>();
      let stored = 0;
      for (const r of rows) {
        if (r.id !== null) notStored.add(r.id);
        else stored = Number(r.stored);
      }
      // Whatever is not answered as not stored counts as accepted: hold that to the rows written.
      // Should rows have gone missing anyway (a trigger that drops them), ask which were stored.
      if (stored + notStored.size !== events.length) return this.notStoredOf(sorted);
      return notStored;
    };
    for (let attempt = 1; ; attempt++) {
      try {
        return await run();
      } catch (error) {
        const code = (error as { code?: string }).code;
        // 23514 "no partition of relation found": a month without a partition yet.
        if (code === '23514' && attempt === 1 && /no partition/.test((error as Error).message)) {
          await ensureUsageEventPartitions(this.pool, new Date());
          continue;
        }
        // A deadlock or serialization failure rolled the whole statement back: nothing was
        // claimed or stored, so running it again is safe.
        if ((code === '40P01' || code === '40001') && attempt < 5) continue;
        throw error;
      }
    }
  }

  /** The events of `events` that are not in the events table. */
  private async notStoredOf(events: NormalizedEvent[]): Promise<Set<string>> {
    const { rows } = await this.pool.query<{ id: string }>(
      `SELECT e.id FROM usage_events e
         JOIN unnest($1::uuid[], $2::uuid[], $3::timestamptz[]) AS q(tenant_id, id, occurred_at)
           ON e.tenant_id = q.tenant_id AND e.id = q.id AND e.occurred_at = q.occurred_at`,
      [events.map((e) => e.tenantId), events.map((e) => e.id), events.map((e) => e.occurredAtIso)],
    );
    const stored = new Set(rows.map((r) => r.id));
    return new Set(events.filter((e) => !stored.has(e.id)).map((e) => e.id));
  }

  /**
   * Validation should make every row storable; should one still be refused by PostgreSQL
   * (a data error), it must not sink the rest of the group: retry the rows one by one so
   * only the bad one fails.
   */
  private async insertIsolatingBadRows(
    events: NormalizedEvent[],
  ): Promise<{ notStored: Set<string>; failed: Map<string, EventOutcome> }> {
    const failed = new Map<string, EventOutcome>();
    try {
      return { notStored: await this.insert(events), failed };
    } catch (error) {
      if (isUnavailableError(error) || events.length === 1) {
        if (events.length === 1 && isDataError(error)) {
          failed.set(events[0]!.id, { status: 'rejected', code: 'INVALID_EVENT', message: (error as Error).message });
          return { notStored: new Set(), failed };
        }
        throw error;
      }
      if (!isDataError(error)) throw error;
    }
    const notStored = new Set<string>();
    for (const event of events) {
      try {
        for (const id of await this.insert([event])) notStored.add(id);
      } catch (error) {
        if (!isDataError(error)) throw error;
        failed.set(event.id, { status: 'rejected', code: 'INVALID_EVENT', message: (error as Error).message });
      }
    }
    return { notStored, failed };
  }
}

function isDataError(error: unknown): boolean {
  const code = (error as { code?: string } | null)?.code ?? '';
  return code.startsWith('22') || code === '23514';
}
