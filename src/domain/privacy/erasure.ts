import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import type pg from 'pg';
import { AppError } from '../../lib/errors';
import { inTransaction } from '../../lib/transaction';
import { type DimensionColumns, dimensionsOf, rehashErased, replaceTokens, replaceTokensInJson, type StoredEvent } from './scrub';
import type { Environment } from '../environments/environment';
import { USER_NUMBER_LOCK, userNumberLockSlot } from '../rollups/recompute';

/** Events rewritten per transaction: a heavy user is erased in many short transactions, not one long one. */
export const ERASURE_BATCH_SIZE = 1_000;
/** Rows of the other tables (audit log, webhook deliveries) read per statement. */
const SCAN_BATCH_SIZE = 500;
/** At most this many of the user's addresses are searched for outside the events. */
const MAX_ADDRESSES = 10_000;
/** Advisory lock class of erasures (rollups use 7001 and 7002). */
const ERASURE_LOCK = 7_003;

export interface ErasureRequest {
  tenantId: string;
  /** Only events of this environment's licenses, and deliveries to its webhook endpoints, are erased. */
  environment: Environment;
  userId: string;
  /** Only this license's events (the user's mentions elsewhere in the tenant are erased anyway). */
  licenseId?: string;
}

export interface ErasureReport {
  /** This erasure's id (the audit log's target); not derived from the user. */
  id: string;
  /** What the user's events now carry as userId; null when no event was changed. */
  pseudonym: string | null;
  /** Events whose userId, address, properties and mentions were replaced. */
  events: number;
  /** Idempotency keys rewritten (payload hash recomputed; the key itself if it held the id or address). */
  idempotencyKeys: number;
  /** Audit log entries whose metadata, target or address mentioned the user. */
  auditLogs: number;
  /** Webhook deliveries whose payload, attempt log or error mentioned the user. */
  webhookDeliveries: number;
}

/**
 * A pseudonym for one (tenant, user), the same for all of the user's events of this erasure
 * so distinct-user counts stay what they were, and not derivable from the user id: the HMAC
 * key is random and forgotten when the erasure ends.
 */
function pseudonymFor(tenantId: string, userId: string): string {
  const salt = randomBytes(32);
  return `erased:${createHmac('sha256', salt).update(`${tenantId}\u0000${userId}`).digest('hex').slice(0, 32)}`;
}

/**
 * Erases one user of a tenant (optionally of one license): in every event carrying the user
 * id, userId becomes a pseudonym, ipAddress and userEmail are removed, properties are emptied (any of them
 * may be personal; none is aggregated), and the user id or address where it stands in another
 * text field (route, platform, idempotency key...) becomes the pseudonym; the payload hash of
 * the event and its idempotency key is recomputed over what remains. The tenant's audit log
 * entries and webhook deliveries that mention the user id or one of the user's addresses are
 * scrubbed the same way (addresses: those no other user's events share, see addressesOf). Rollups hold no user ids and keep their numbers: quantities, counts
 * and error/duration figures are untouched and one pseudonym per user keeps distinct-user
 * counts. The hours touched are marked dirty (in the same transaction as each batch), so a
 * rollup that read a window while it was half-erased is recomputed.
 *
 * Idempotent: a second run finds nothing carrying the id and reports 0.
 */
export async function eraseUser(pool: pg.Pool, request: ErasureRequest, batchSize = ERASURE_BATCH_SIZE, sessionPool: pg.Pool = pool): Promise<ErasureReport> {
  const { tenantId, environment, userId, licenseId } = request;
  if (licenseId !== undefined) await assertLicenseOfTenant(pool, tenantId, environment, licenseId);
  // Two erasures of one user at once would split the user's events between two pseudonyms
  // (and count the user twice): the second is refused while the first runs. The lock is held
  // by a session of its own, so each batch can still commit on its own. A session lock needs a
  // server session that stays the same: `sessionPool` (the direct connection behind a
  // transaction pooler, where lock and unlock could otherwise run on two server connections).
  const lockKey = `${tenantId}|${userId}`; // a tenant id is a UUID: no '|' in it
  const lock = await sessionPool.connect();
  let released = false;
  try {
    const { rows } = await lock.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1, hashtext($2)) AS locked', [ERASURE_LOCK, lockKey]);
    if (!rows[0]?.locked) throw new AppError('CONFLICT', 'userId: an erasure of this user is already running; retry when it has finished');
    try {
      return await eraseLocked(pool, request, batchSize);
    } finally {
      await lock.query('SELECT pg_advisory_unlock($1, hashtext($2))', [ERASURE_LOCK, lockKey]).catch((error: unknown) => {
        lock.release(error as Error); // a session that may still hold the lock is not reused
        released = true;
      });
    }
  } finally {
    if (!released) lock.release();
  }
}

async function eraseLocked(pool: pg.Pool, request: ErasureRequest, batchSize: number): Promise<ErasureReport> {
  const { tenantId, environment, userId } = request;
  const pseudonym = pseudonymFor(tenantId, userId);
  const addresses = await addressesOf(pool, request);
  const needles = [userId, ...addresses, ...(await emailsOf(pool, request))];

  const auditLogs = await scrubAuditLogs(pool, tenantId, needles, addresses, pseudonym);
  const webhookDeliveries = await scrubWebhookDeliveries(pool, tenantId, environment, needles, pseudonym);

  let events = 0;
  let idempotencyKeys = 0;
  for (const partition of await eventPartitions(pool)) {
    let after = '00000000-0000-0000-0000-000000000000';
    for (;;) {
      const batch = await withRetry(() => eraseBatch(pool, partition, request, pseudonym, after, batchSize));
      events += batch.events;
      idempotencyKeys += batch.idempotencyKeys;
      if (batch.lastId === null) break;
      after = batch.lastId;
    }
  }
  await eraseFromUserSets(pool, request, pseudonym);
  return { id: randomUUID(), pseudonym: events > 0 ? pseudonym : null, events, idempotencyKeys, auditLogs, webhookDeliveries };
}

/**
 * The user's bit in the daily user sets of the erased licenses moves to the pseudonym's number
 * (every day, also those whose raw events retention has removed), so counts stay what they
 * were; the user id's number is dropped once no set of the tenant holds it. Runs after every
 * event batch has committed and under the tenant's USER_NUMBER_LOCK, which every recompute of
 * sets holds while it reads events: a recompute that saw the user id before its events were
 * rewritten has committed by now and is corrected here, and any later one sees only the
 * pseudonym. No user id of an erased user is left in the sets or the numbers.
 */
async function eraseFromUserSets(pool: pg.Pool, { tenantId, environment, userId, licenseId }: ErasureRequest, pseudonym: string): Promise<void> {
  await inTransaction(pool, {}, async (client) => {
    await client.query(`SELECT pg_advisory_xact_lock($1, ${userNumberLockSlot('$2::uuid::text')})`, [USER_NUMBER_LOCK, tenantId]);
    const { rows } = await client.query<{ user_no: number }>('SELECT user_no FROM usage_user_numbers WHERE tenant_id = $1 AND user_id = $2', [tenantId, userId]);
    if (!rows[0]) return;
    const from = rows[0].user_no;
    const held = await client.query(
      `SELECT 1 FROM daily_user_sets
        WHERE tenant_id = $1 AND length(users) > $2 AND get_bit(users, $2) = 1
          AND license_id IN (SELECT id FROM licenses WHERE tenant_id = $1 AND environment = $3::api_key_environment AND ($4::uuid IS NULL OR id = $4))
        LIMIT 1`,
      [tenantId, from, environment, licenseId ?? null],
    );
    if (held.rowCount) {
      // The pseudonym may have a number already (a recompute between two batches saw it).
      await client.query(
        `INSERT INTO usage_user_numbers (tenant_id, user_no, user_id)
         SELECT $1, coalesce(max(user_no), -1) + 1, $2 FROM usage_user_numbers WHERE tenant_id = $1
         ON CONFLICT (tenant_id, user_id) DO NOTHING`,
        [tenantId, pseudonym],
      );
      await client.query(
        `UPDATE daily_user_sets s
            SET users = tally_user_bitmap_move(s.users, $2, n.user_no), computed_at = now()
           FROM usage_user_numbers n
          WHERE n.tenant_id = $1 AND n.user_id = $5
            AND s.tenant_id = $1 AND length(s.users) > $2 AND get_bit(s.users, $2) = 1
            AND s.license_id IN (SELECT id FROM licenses WHERE tenant_id = $1 AND environment = $3::api_key_environment AND ($4::uuid IS NULL OR id = $4))`,
        [tenantId, from, environment, licenseId ?? null, pseudonym],
      );
    }
    // Events of other licenses or the other environment may still carry the id: the next
    // recompute that meets them numbers it again.
    await client.query(
      `DELETE FROM usage_user_numbers n WHERE n.tenant_id = $1 AND n.user_no = $2
          AND NOT EXISTS (SELECT 1 FROM daily_user_sets s WHERE s.tenant_id = $1 AND length(s.users) > $2 AND get_bit(s.users, $2) = 1)`,
      [tenantId, from],
    );
  });
}

export async function assertLicenseOfTenant(db: pg.Pool | pg.PoolClient, tenantId: string, environment: Environment, licenseId: string): Promise<void> {
  // Deleted licenses still hold events, so they can be erased too.
  const { rowCount } = await db.query('SELECT 1 FROM licenses WHERE id = $1 AND tenant_id = $2 AND environment = $3::api_key_environment', [
    licenseId,
    tenantId,
    environment,
  ]);
  if (!rowCount) throw new AppError('NOT_FOUND', 'licenseId: license not found');
}

/** The partitions of usage_events (the table itself if it has none). */
export async function eventPartitions(db: pg.Pool): Promise<string[]> {
  const { rows } = await db.query<{ name: string }>(
    `SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
      WHERE i.inhparent = 'usage_events'::regclass ORDER BY c.relname`,
  );
  return rows.length ? rows.map((r) => r.name) : ['usage_events'];
}

export const quoteIdent = (name: string) => `"${name.replace(/"/g, '""')}"`;

/**
 * The addresses only this user's events carry in the tenant. An address other users' events
 * share (the tenant's own server when events are sent server-side without ipAddress, a NAT)
 * does not point at the user, and scrubbing it from the audit log would erase the tenant's own
 * records; the user's events lose their address either way.
 */
async function addressesOf(pool: pg.Pool, { tenantId, environment, userId, licenseId }: ErasureRequest): Promise<string[]> {
  const { rows } = await pool.query<{ ip: string }>(
    `SELECT DISTINCT e.ip_address AS ip FROM usage_events e
      WHERE e.tenant_id = $1 AND e.user_id = $2 AND ($3::uuid IS NULL OR e.license_id = $3) AND e.ip_address IS NOT NULL
        AND e.license_id IN (SELECT id FROM licenses WHERE tenant_id = $1 AND environment = $4::api_key_environment)
        AND NOT EXISTS (SELECT 1 FROM usage_events o
                         WHERE o.tenant_id = $1 AND o.ip_address = e.ip_address AND o.user_id IS DISTINCT FROM $2)
      LIMIT ${MAX_ADDRESSES}`,
    [tenantId, userId, licenseId ?? null, environment],
  );
  return rows.map((r) => r.ip);
}

/** The emails the user's events carry that no other user's events do (same reasoning as addressesOf). */
async function emailsOf(pool: pg.Pool, { tenantId, environment, userId, licenseId }: ErasureRequest): Promise<string[]> {
  const { rows } = await pool.query<{ email: string }>(
    `SELECT DISTINCT e.user_email AS email FROM usage_events e
      WHERE e.tenant_id = $1 AND e.user_id = $2 AND ($3::uuid IS NULL OR e.license_id = $3) AND e.user_email IS NOT NULL
        AND e.license_id IN (SELECT id FROM licenses WHERE tenant_id = $1 AND environment = $4::api_key_environment)
        AND NOT EXISTS (SELECT 1 FROM usage_events o
                         WHERE o.tenant_id = $1 AND o.user_email = e.user_email AND o.user_id IS DISTINCT FROM $2)
      LIMIT ${MAX_ADDRESSES}`,
    [tenantId, userId, licenseId ?? null, environment],
  );
  return rows.map((r) => r.email);
}

/** A deadlock or serialization failure rolled the batch back whole: running it again is safe. */
async function withRetry<T>(work: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await work();
    } catch (error) {
      const code = (error as { code?: string }).code;
      if ((code === '40P01' || code === '40001') && attempt < 5) continue;
      throw error;
    }
  }
}

interface EventRow extends DimensionColumns {
  id: string;
  license_id: string;
  usage_type: string;
  quantity: string;
  occurred_at: Date;
  idempotency_key: string | null;
  payload_hash: string;
  user_id: string;
}

function storedEvent(r: EventRow): StoredEvent {
  return { licenseId: r.license_id, usageType: r.usage_type, quantity: r.quantity, occurredAt: r.occurred_at, ...dimensionsOf(r) };
}

/**
 * One transaction: up to `batchSize` of the user's events of one partition (after `after` in
 * id order), rewritten with their idempotency keys, and their hours marked dirty.
 */
async function eraseBatch(
  pool: pg.Pool,
  partition: string,
  { tenantId, environment, userId, licenseId }: ErasureRequest,
  pseudonym: string,
  after: string,
  batchSize: number,
): Promise<{ events: number; idempotencyKeys: number; lastId: string | null }> {
  return inTransaction(pool, {}, async (client) => {
    const table = quoteIdent(partition);
    const { rows } = await client.query<EventRow>(
      `SELECT id, license_id, usage_type, quantity::text AS quantity, occurred_at, idempotency_key, payload_hash,
              platform, device_type, user_id, user_email, organization, route, method, status_code, duration_ms, sdk_version, ip_address,
              country, properties
         FROM ${table}
        WHERE tenant_id = $1 AND user_id = $2 AND ($3::uuid IS NULL OR license_id = $3) AND id > $4
          AND license_id IN (SELECT id FROM licenses WHERE tenant_id = $1 AND environment = $6::api_key_environment)
        ORDER BY id LIMIT $5 FOR UPDATE`,
      [tenantId, userId, licenseId ?? null, after, batchSize, environment],
    );
    if (rows.length === 0) return { events: 0, idempotencyKeys: 0, lastId: null };

    const rewritten = rows.map((r) => {
      const needles = [userId, ...(r.ip_address === null ? [] : [r.ip_address]), ...(r.user_email === null ? [] : [r.user_email])];
      const scrub = (s: string | null) => (s === null ? null : replaceTokens(s, needles, pseudonym));
      const before = storedEvent(r);
      const afterErasure: StoredEvent = {
        ...before,
        userId: pseudonym,
        userEmail: null, // personal through and through: removed, not pseudonymised
        // The organization stays (breakdowns by organization keep their numbers); the user's
        // id, address or email standing in it as a token is replaced like in the other texts.
        organization: scrub(r.organization),
        ipAddress: null,
        country: null, // derived from the address: it goes with it
        properties: {},
        platform: scrub(r.platform),
        deviceType: scrub(r.device_type),
        route: scrub(r.route),
        method: scrub(r.method),
        sdkVersion: scrub(r.sdk_version),
      };
      return { row: r, event: afterErasure, key: scrub(r.idempotency_key), hash: rehashErased(before, r.payload_hash, afterErasure) };
    });

    const updated = await client.query(
      `UPDATE ${table} e
          SET user_id = $3, user_email = NULL, ip_address = NULL, country = NULL, properties = '{}', idempotency_key = n.idempotency_key,
              payload_hash = n.payload_hash, platform = n.platform, device_type = n.device_type, route = n.route, method = n.method,
              sdk_version = n.sdk_version, organization = n.organization
         FROM unnest($4::uuid[], $5::timestamptz[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[])
              AS n(id, occurred_at, idempotency_key, payload_hash, platform, device_type, route, method, sdk_version, organization)
        WHERE e.tenant_id = $1 AND e.user_id = $2 AND e.id = n.id AND e.occurred_at = n.occurred_at`,
      [
        tenantId,
        userId,
        pseudonym,
        rewritten.map((w) => w.row.id),
        rewritten.map((w) => w.row.occurred_at),
        rewritten.map((w) => w.key),
        rewritten.map((w) => w.hash),
        rewritten.map((w) => w.event.platform),
        rewritten.map((w) => w.event.deviceType),
        rewritten.map((w) => w.event.route),
        rewritten.map((w) => w.event.method),
        rewritten.map((w) => w.event.sdkVersion),
        rewritten.map((w) => w.event.organization),
      ],
    );

    // In key order, the order ingestion claims keys in.
    const keyed = rewritten
      .filter((w) => w.row.idempotency_key !== null)
      .sort((a, b) => (a.row.idempotency_key! < b.row.idempotency_key! ? -1 : a.row.idempotency_key! > b.row.idempotency_key! ? 1 : 0));
    const keys = keyed.length
      ? await client.query(
          `UPDATE idempotency_keys k SET key = n.new_key, payload_hash = n.payload_hash
             FROM unnest($2::text[], $3::text[], $4::uuid[], $5::text[]) AS n(old_key, new_key, event_id, payload_hash)
            WHERE k.tenant_id = $1 AND k.key = n.old_key AND k.event_id = n.event_id`,
          [tenantId, keyed.map((w) => w.row.idempotency_key), keyed.map((w) => w.key), keyed.map((w) => w.row.id), keyed.map((w) => w.hash)],
        )
      : { rowCount: 0 };

    // The numbers do not change, but a rollup that read a window between two batches saw the
    // user twice (under the id and the pseudonym): the next hourly run recomputes these hours.
    await client.query(
      `INSERT INTO rollup_dirty_hours (tenant_id, license_id, hour)
       SELECT DISTINCT $1::uuid, license_id, date_trunc('hour', occurred_at)
         FROM unnest($2::uuid[], $3::timestamptz[]) AS t(license_id, occurred_at)
        ORDER BY 1, 2, 3
       ON CONFLICT (tenant_id, license_id, hour) DO UPDATE SET marked_at = EXCLUDED.marked_at`,
      [tenantId, rows.map((r) => r.license_id), rows.map((r) => r.occurred_at)],
    );

    return { events: updated.rowCount ?? 0, idempotencyKeys: keys.rowCount ?? 0, lastId: rows.at(-1)!.id };
  });
}

const likeEscape = (s: string) => s.replace(/[\\%_]/g, '\\$&');
/** A LIKE pattern finding the text as it appears inside jsonb::text (JSON-escaped). */
const jsonLike = (s: string) => `%${likeEscape(JSON.stringify(s).slice(1, -1))}%`;
const textLike = (s: string) => `%${likeEscape(s)}%`;

async function scrubAuditLogs(pool: pg.Pool, tenantId: string, needles: string[], addresses: string[], pseudonym: string): Promise<number> {
  let changed = 0;
  let after = '00000000-0000-0000-0000-000000000000';
  for (;;) {
    const { rows } = await pool.query<{ id: string; target_id: string | null; ip: string | null; metadata: unknown }>(
      `SELECT id, target_id, ip, metadata FROM audit_logs
        WHERE tenant_id = $1 AND id > $2
          AND (metadata::text LIKE ANY($3::text[]) OR target_id LIKE ANY($4::text[]) OR ip = ANY($5::text[]))
        ORDER BY id LIMIT ${SCAN_BATCH_SIZE}`,
      [tenantId, after, needles.map(jsonLike), needles.map(textLike), addresses],
    );
    if (rows.length === 0) return changed;
    after = rows.at(-1)!.id;
    for (const r of rows) {
      const metadata = replaceTokensInJson(r.metadata, needles, pseudonym);
      const targetId = r.target_id === null ? null : replaceTokens(r.target_id, needles, pseudonym);
      const ip = r.ip !== null && addresses.includes(r.ip) ? null : r.ip;
      if (JSON.stringify(metadata) === JSON.stringify(r.metadata) && targetId === r.target_id && ip === r.ip) continue;
      await pool.query('UPDATE audit_logs SET metadata = $2::jsonb, target_id = $3, ip = $4 WHERE id = $1', [
        r.id,
        JSON.stringify(metadata),
        targetId,
        ip,
      ]);
      changed++;
    }
  }
}

async function scrubWebhookDeliveries(pool: pg.Pool, tenantId: string, environment: Environment, needles: string[], pseudonym: string): Promise<number> {
  let changed = 0;
  let after = '00000000-0000-0000-0000-000000000000';
  for (;;) {
    const { rows } = await pool.query<{ id: string; payload: unknown; attempt_log: unknown; last_error: string | null }>(
      `SELECT id, payload, attempt_log, last_error FROM webhook_deliveries
        WHERE tenant_id = $1 AND id > $2
          AND endpoint_id IN (SELECT id FROM webhook_endpoints WHERE tenant_id = $1 AND environment = $5::api_key_environment)
          AND (payload::text LIKE ANY($3::text[]) OR attempt_log::text LIKE ANY($3::text[]) OR last_error LIKE ANY($4::text[]))
        ORDER BY id LIMIT ${SCAN_BATCH_SIZE}`,
      [tenantId, after, needles.map(jsonLike), needles.map(textLike), environment],
    );
    if (rows.length === 0) return changed;
    after = rows.at(-1)!.id;
    for (const r of rows) {
      const payload = replaceTokensInJson(r.payload, needles, pseudonym);
      const attemptLog = replaceTokensInJson(r.attempt_log, needles, pseudonym);
      const lastError = r.last_error === null ? null : replaceTokens(r.last_error, needles, pseudonym);
      if (
        JSON.stringify(payload) === JSON.stringify(r.payload) &&
        JSON.stringify(attemptLog) === JSON.stringify(r.attempt_log) &&
        lastError === r.last_error
      ) {
        continue;
      }
      await pool.query('UPDATE webhook_deliveries SET payload = $2::jsonb, attempt_log = $3::jsonb, last_error = $4 WHERE id = $1', [
        r.id,
        JSON.stringify(payload),
        JSON.stringify(attemptLog),
        lastError,
      ]);
      changed++;
    }
  }
}
