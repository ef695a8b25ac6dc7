import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { TestApp } from '../helpers/harness';
import { createIsolatedDatabase } from '../helpers/isolated-db';
import { rollupDifferences } from '../helpers/rollup-check';
import { recalculateRange } from '../../src/domain/rollups/aggregate';
import { eraseUser } from '../../src/domain/privacy/erasure';

const HOUR = 3_600_000;
const DAY = 86_400_000;

let db: ReturnType<typeof createIsolatedDatabase>;
let app: TestApp;
const pool = () => app.services.db.pool;

beforeAll(async () => {
  // A database of its own: the trace scan reads every row of every table.
  db = createIsolatedDatabase('privacy');
  app = await TestApp.start({ DATABASE_URL: db.url, USAGE_CACHE_TTL_SECONDS: '0' });
});
afterAll(async () => {
  await app.close();
  await db.drop();
});

/** Whole hours, 3 days back to 1 day back: past windows the rollups cover. */
const START = Math.floor((Date.now() - 3 * DAY) / HOUR) * HOUR;
const at = (hourOffset: number, minute = 7) => new Date(START + hourOffset * HOUR + minute * 60_000).toISOString();
const isoDate = (ms: number) => new Date(ms).toISOString().slice(0, 10);
const RANGE = { startDate: isoDate(START - DAY), endDate: isoDate(Date.now()) };

interface World {
  ownerKey: string;
  tenantId: string;
  licenses: string[];
  otherTenant: { ownerKey: string; tenantId: string; license: string };
  /** The user to erase; other users and the other tenant's user of the same id stay. */
  userId: string;
  ipv4: string;
  ipv6: string;
  otherUser: string;
  /** An event of the user sent with a key that does not name them, and its exact payload. */
  keyedEvent: { key: string; payload: Record<string, unknown>; eventId: string };
}

async function track(key: string, events: Record<string, unknown>[]) {
  const res = await app.call<{ accepted: number; rejected: unknown[]; results: { eventId: string }[] }>('usage.trackEvents', { events }, key);
  expect(res.status).toBe(200);
  expect(res.data.rejected).toEqual([]);
  expect(res.data.accepted).toBe(events.length);
  return res.data;
}

/**
 * Two licenses of tenant A with the user's events (addresses, properties naming them, routes
 * and idempotency keys carrying their id, events with and without occurredAt), another user's
 * events in the same hours, and tenant B with a user of the same id.
 */
async function buildWorld(): Promise<World> {
  const { ownerKey, tenantId } = await app.createTenant();
  const licenses = [(await app.createLicense(ownerKey)).id, (await app.createLicense(ownerKey, { timezone: 'Asia/Kolkata' })).id];
  const b = await app.createTenant();
  const otherTenant = { ...b, license: (await app.createLicense(b.ownerKey)).id };
  const tag = randomUUID().slice(0, 8);
  const userId = `person-${tag}@example.com`;
  const ipv4 = `198.51.100.${(parseInt(tag.slice(0, 2), 16) % 200) + 20}`;
  const ipv6 = `2001:db8:${tag.slice(0, 4)}::${tag.slice(4, 8)}`;
  const otherUser = `other-${tag}`;

  const events: Record<string, unknown>[] = [];
  for (let h = 0; h < 30; h++) {
    const licenseId = licenses[h % 2];
    events.push({
      licenseId,
      usageType: 'api_call',
      quantity: (h % 4) + 1,
      occurredAt: at(h),
      userId,
      ipAddress: h % 3 === 0 ? ipv6 : ipv4,
      route: `/users/${userId}/files`,
      platform: 'web',
      statusCode: h % 5 === 0 ? 500 : 200,
      durationMs: 10 + h,
      properties: { email: userId, nested: { seenFrom: ipv4 }, plan: 'pro' },
      ...(h % 2 === 0 ? { idempotencyKey: `${userId}:${h}` } : {}),
    });
    events.push({ licenseId, usageType: 'api_call', quantity: '0.5', occurredAt: at(h, 20), userId: otherUser, ipAddress: '192.0.2.1', route: '/v1/items' });
    events.push({ licenseId, usageType: 'api_call', quantity: 2, occurredAt: at(h, 40), route: '/v1/anon' });
  }
  await track(ownerKey, events);
  // The same user id in tenant B: another tenant's user, not to be touched.
  await track(otherTenant.ownerKey, [
    { licenseId: otherTenant.license, usageType: 'api_call', occurredAt: at(3), userId, ipAddress: ipv4, idempotencyKey: `${userId}:b`, properties: { email: userId } },
  ]);
  // No occurredAt (the server fills it in): the payload hash is over fewer fields.
  await track(ownerKey, [{ licenseId: licenses[0], usageType: 'seat', userId, ipAddress: ipv4, properties: {} }]);
  const keyedPayload = {
    licenseId: licenses[1],
    usageType: 'download',
    quantity: '3.25',
    occurredAt: at(5, 30),
    userId,
    route: `/files/${userId}`,
    properties: { who: userId },
  };
  const key = `k-${tag}`;
  const keyed = await track(ownerKey, [{ ...keyedPayload, idempotencyKey: key }]);
  return {
    ownerKey,
    tenantId,
    licenses,
    otherTenant,
    userId,
    ipv4,
    ipv6,
    otherUser,
    keyedEvent: { key, payload: keyedPayload, eventId: keyed.results[0]!.eventId },
  };
}

async function rollUp(w: World) {
  await recalculateRange(app.services.rollups, { tenantId: w.tenantId, licenseId: null, ...RANGE }, { retentionDays: 400 });
}

async function rollupRows(licenses: string[]) {
  const hourly = await pool().query(
    `SELECT license_id, usage_type, hour, quantity::text, event_count, max_quantity::text, distinct_users, error_count, duration_ms_sum
       FROM usage_rollups_hourly WHERE license_id = ANY($1) ORDER BY 1, 2, 3`,
    [licenses],
  );
  const daily = await pool().query(
    `SELECT license_id, usage_type, date::text, quantity::text, event_count, max_quantity::text, distinct_users, error_count, duration_ms_sum
       FROM usage_rollups_daily WHERE license_id = ANY($1) ORDER BY 1, 2, 3`,
    [licenses],
  );
  return { hourly: hourly.rows, daily: daily.rows };
}

async function analytics(w: World) {
  const answers: unknown[] = [];
  for (const licenseId of [undefined, ...w.licenses]) {
    for (const granularity of ['daily', 'hourly'] as const) {
      const res = await app.call('analytics.usage', { licenseId, ...RANGE, granularity }, w.ownerKey, { method: 'GET' });
      expect(res.status).toBe(200);
      answers.push(res.data);
    }
  }
  return answers;
}

/** Every row of usage_events and idempotency_keys matching `where`, as text, in a stable order. */
async function eventRows(where: string, params: unknown[]) {
  const events = await pool().query(`SELECT e::text AS row FROM usage_events e WHERE ${where} ORDER BY e.id`, params);
  return events.rows.map((r: { row: string }) => r.row);
}

/**
 * Every text, varchar, array and json/jsonb column of every table and partition of the public
 * schema, searched for each needle; rows of `exceptTenant` are left out where a table has a
 * tenant_id. Answers "table.column: needle" per hit.
 */
async function traces(db: pg.Pool, needles: string[], exceptTenant: string): Promise<string[]> {
  const { rows: columns } = await db.query<{ table_name: string; column_name: string }>(
    `SELECT c.table_name, c.column_name
       FROM information_schema.columns c JOIN information_schema.tables t USING (table_schema, table_name)
      WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'
        AND (c.data_type IN ('text', 'character varying', 'character', 'json', 'jsonb', 'ARRAY'))`,
  );
  const { rows: tenantTables } = await db.query<{ table_name: string }>(
    `SELECT table_name FROM information_schema.columns WHERE table_schema = 'public' AND column_name = 'tenant_id'`,
  );
  const hasTenant = new Set(tenantTables.map((r) => r.table_name));
  expect(columns.map((c) => `${c.table_name}.${c.column_name}`)).toEqual(
    expect.arrayContaining(['usage_events.user_id', 'idempotency_keys.payload_hash', 'audit_logs.metadata', 'webhook_deliveries.payload']),
  );
  expect(columns.some((c) => /^usage_events_\d{4}_\d{2}$/.test(c.table_name))).toBe(true); // partitions are scanned too
  const hits: string[] = [];
  for (const { table_name: table, column_name: column } of columns) {
    for (const needle of needles) {
      const { rows } = await db.query(
        `SELECT 1 FROM "${table}" WHERE "${column}"::text ILIKE '%' || $1 || '%'
           ${hasTenant.has(table) ? 'AND tenant_id IS DISTINCT FROM $2::uuid' : 'AND $2::uuid IS NOT NULL'} LIMIT 1`,
        [needle.replace(/[\\%_]/g, '\\$&'), exceptTenant],
      );
      if (rows.length) hits.push(`${table}.${column}: ${needle}`);
    }
  }
  return hits;
}

describe('privacy.eraseUser', () => {
  let w: World;
  beforeAll(async () => {
    w = await buildWorld();
    await rollUp(w);
  });

  it('refuses bad input naming the field, and another tenant\'s license as not found, changing nothing', async () => {
    const before = await eventRows('e.tenant_id = $1', [w.tenantId]);
    const cases: [unknown, number, string][] = [
      [{}, 400, 'userId'],
      [{ userId: '' }, 400, 'userId'],
      [{ userId: 'x'.repeat(257) }, 400, 'userId'],
      [{ userId: 'a\u0000b' }, 400, 'userId'],
      [{ userId: 'a\ud800' }, 400, 'userId'],
      [{ userId: 42 }, 400, 'userId'],
      [{ userId: w.userId, licenseId: 'nope' }, 400, 'licenseId'],
      [{ userId: w.userId, extra: 1 }, 400, 'extra'],
      [{ userId: w.userId, licenseId: w.otherTenant.license }, 404, 'licenseId'],
      [{ userId: w.userId, licenseId: randomUUID() }, 404, 'licenseId'],
    ];
    for (const [input, status, field] of cases) {
      for (const path of ['privacy.eraseUser', 'privacy.exportUser']) {
        const res = await app.call(path, input, w.ownerKey);
        expect([path, JSON.stringify(input), res.status]).toEqual([path, JSON.stringify(input), status]);
        expect(res.body.error?.message).toContain(field);
      }
    }
    // The longest user id events allow is accepted (and matches nothing here).
    const longest = await app.call('privacy.eraseUser', { userId: 'x'.repeat(256) }, w.ownerKey);
    expect(longest.status).toBe(200);
    expect(longest.data).toMatchObject({ events: 0, idempotencyKeys: 0, pseudonym: null });
    // LIKE wildcards and JSON quoting are matched literally, never as patterns.
    for (const userId of ['%', '_', '"', '\\', "'"]) {
      const res = await app.call('privacy.eraseUser', { userId }, w.ownerKey);
      expect([userId, res.status, res.data]).toEqual([userId, 200, expect.objectContaining({ events: 0, auditLogs: 0, webhookDeliveries: 0 })]);
    }
    expect(await eventRows('e.tenant_id = $1', [w.tenantId])).toEqual(before);
  });

  it('lets only owners (and admins naming the tenant) erase or export', async () => {
    const before = await eventRows('e.tenant_id = $1', [w.tenantId]);
    for (const role of ['member', 'read', 'ingest'] as const) {
      const { key } = await app.createKey(w.ownerKey, role);
      for (const path of ['privacy.eraseUser', 'privacy.exportUser']) {
        const res = await app.call(path, { userId: w.userId }, key);
        expect([role, path, res.status]).toEqual([role, path, 403]);
      }
    }
    expect((await app.call('privacy.eraseUser', { userId: w.userId }, null)).status).toBe(401);
    expect((await app.call('privacy.eraseUser', { userId: w.userId }, app.adminKey)).status).toBe(400); // no X-Tally-Tenant
    const adminExport = await app.call('privacy.exportUser', { userId: w.userId, limit: 1 }, app.adminKey, {
      headers: { 'x-tally-tenant': w.tenantId },
    });
    expect(adminExport.status).toBe(200);
    expect(adminExport.data.eventsInPage).toBe(1);
    expect(await eventRows('e.tenant_id = $1', [w.tenantId])).toEqual(before);
  });

  it('exports every event of the user with its dimensions, per license, page by page', async () => {
    const { rows } = await pool().query<{ id: string; license_id: string }>(
      'SELECT id, license_id FROM usage_events WHERE tenant_id = $1 AND user_id = $2',
      [w.tenantId, w.userId],
    );
    expect(rows.length).toBe(32);
    const seen: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    let first: any;
    do {
      const res = await app.call('privacy.exportUser', { userId: w.userId, limit: 7, cursor }, w.ownerKey);
      expect(res.status).toBe(200);
      first ??= res.data;
      pages++;
      expect(res.data.eventsInPage).toBeLessThanOrEqual(7);
      for (const group of res.data.licenses) {
        expect(w.licenses).toContain(group.licenseId);
        for (const e of group.events) {
          expect(e.userId).toBe(w.userId);
          seen.push(e.id);
          expect(rows.find((r) => r.id === e.id)?.license_id).toBe(group.licenseId);
        }
      }
      cursor = res.data.nextCursor ?? undefined;
    } while (cursor);
    expect(pages).toBe(5);
    expect(new Set(seen).size).toBe(seen.length);
    expect(seen.sort()).toEqual(rows.map((r) => r.id).sort());
    const withDimensions = first.licenses.flatMap((g: any) => g.events).find((e: any) => e.usageType === 'api_call');
    expect(withDimensions).toMatchObject({
      route: `/users/${w.userId}/files`,
      platform: 'web',
      properties: { email: w.userId, plan: 'pro' },
    });
    expect([w.ipv4, w.ipv6]).toContain(withDimensions.ipAddress);
    // One license only; the last page boundary; a cursor that is not one.
    const one = await app.call('privacy.exportUser', { userId: w.userId, licenseId: w.licenses[1] }, w.ownerKey);
    expect(one.data.licenses.map((g: any) => g.licenseId)).toEqual([w.licenses[1]]);
    expect(one.data.eventsInPage).toBe(rows.filter((r) => r.license_id === w.licenses[1]).length);
    expect((await app.call('privacy.exportUser', { userId: w.userId, limit: 1000 }, w.ownerKey)).status).toBe(200);
    expect((await app.call('privacy.exportUser', { userId: w.userId, limit: 1001 }, w.ownerKey)).status).toBe(400);
    expect((await app.call('privacy.exportUser', { userId: w.userId, limit: 0 }, w.ownerKey)).status).toBe(400);
    expect((await app.call('privacy.exportUser', { userId: w.userId, cursor: 'garbage' }, w.ownerKey)).status).toBe(400);
    // Tenant B's user of the same id is B's: A's export does not show it, B's shows only it.
    const b = await app.call('privacy.exportUser', { userId: w.userId }, w.otherTenant.ownerKey);
    expect(b.data.licenses).toEqual([expect.objectContaining({ licenseId: w.otherTenant.license })]);
    expect(b.data.eventsInPage).toBe(1);
  });

  it('leaves no trace of the user id or addresses, keeps every number, and is idempotent', async () => {
    // Mentions outside the events: an audit entry and a webhook delivery naming the user.
    await pool().query(
      `INSERT INTO audit_logs (id, tenant_id, action, target_type, target_id, ip, metadata)
       VALUES ($1, $2, 'support.note', 'user', $3, $4, $5::jsonb)`,
      [randomUUID(), w.tenantId, w.userId, w.ipv4, JSON.stringify({ note: `asked about ${w.userId}`, from: w.ipv6 })],
    );
    const endpoint = randomUUID();
    await pool().query(
      `INSERT INTO webhook_endpoints (id, tenant_id, url, secret, updated_at) VALUES ($1, $2, 'https://hooks.example.com/x', 'whsec_x', now())`,
      [endpoint, w.tenantId],
    );
    await pool().query(
      `INSERT INTO webhook_deliveries (id, tenant_id, endpoint_id, event_id, event_type, payload, last_error)
       VALUES ($1, $2, $3, $4, 'usage.threshold.warning', $5::jsonb, $6)`,
      [randomUUID(), w.tenantId, endpoint, randomUUID(), JSON.stringify({ data: { userId: w.userId } }), `for ${w.userId}`],
    );
    const beforeExport = await app.call('privacy.exportUser', { userId: w.userId }, w.ownerKey);
    expect(beforeExport.data.auditLogs).toHaveLength(1);
    expect(beforeExport.data.webhookDeliveries).toHaveLength(1);

    const otherUserBefore = await eventRows('e.tenant_id = $1 AND e.user_id IS DISTINCT FROM $2', [w.tenantId, w.userId]);
    const tenantBBefore = await eventRows('e.tenant_id = $1', [w.otherTenant.tenantId]);
    const keysBBefore = (await pool().query('SELECT k::text FROM idempotency_keys k WHERE tenant_id = $1', [w.otherTenant.tenantId])).rows;
    const storedHashes = (
      await pool().query<{ payload_hash: string }>('SELECT payload_hash FROM usage_events WHERE tenant_id = $1 AND user_id = $2', [w.tenantId, w.userId])
    ).rows.map((r) => r.payload_hash);
    const rollupsBefore = await rollupRows(w.licenses);
    expect(rollupsBefore.hourly.length).toBeGreaterThan(0);
    expect(rollupsBefore.daily.length).toBeGreaterThan(0);
    const analyticsBefore = await analytics(w);
    expect(await traces(pool(), [w.userId, w.ipv4, w.ipv6], w.otherTenant.tenantId)).not.toEqual([]);

    const erased = await app.call('privacy.eraseUser', { userId: w.userId }, w.ownerKey);
    expect(erased.status).toBe(200);
    expect(erased.data).toMatchObject({ events: 32, idempotencyKeys: 16, auditLogs: 1, webhookDeliveries: 1 });
    expect(erased.data.pseudonym).toMatch(/^erased:[0-9a-f]{32}$/);
    expect(erased.data.pseudonym).not.toContain(w.userId);

    // No trace anywhere (tenant B's own user of that id aside), the erasure's audit entry included.
    expect(await traces(pool(), [w.userId, w.ipv4, w.ipv6, ...storedHashes], w.otherTenant.tenantId)).toEqual([]);
    const audit = await pool().query(
      `SELECT target_id FROM audit_logs WHERE tenant_id = $1 AND action = 'privacy.eraseUser' AND outcome = 'success'`,
      [w.tenantId],
    );
    expect(audit.rows.map((r: { target_id: string }) => r.target_id)).toContain(erased.data.id);

    // One pseudonym for all the user's events; their quantities, times and counters untouched.
    const pseudonymous = await pool().query<{ n: string; users: string }>(
      'SELECT count(*)::text AS n, count(DISTINCT user_id)::text AS users FROM usage_events WHERE tenant_id = $1 AND user_id = $2',
      [w.tenantId, erased.data.pseudonym],
    );
    expect(pseudonymous.rows[0]).toEqual({ n: '32', users: '1' });

    // Every number is what it was: analytics, the rollups, and a recomputation from scratch.
    expect(await analytics(w)).toEqual(analyticsBefore);
    expect(await rollupRows(w.licenses)).toEqual(rollupsBefore);
    const bounds = { hoursBefore: new Date(Math.floor(Date.now() / HOUR) * HOUR), daysEndedBefore: new Date() };
    expect(await rollupDifferences(pool(), w.licenses, bounds)).toEqual({ hourly: [], daily: [] });
    await pool().query('DELETE FROM usage_rollups_hourly WHERE license_id = ANY($1)', [w.licenses]);
    await pool().query('DELETE FROM usage_rollups_daily WHERE license_id = ANY($1)', [w.licenses]);
    await rollUp(w);
    expect(await rollupRows(w.licenses)).toEqual(rollupsBefore);

    // Nobody else's data changed: another user of the tenant, and tenant B's user of the same id.
    expect(await eventRows('e.tenant_id = $1 AND e.user_id IS DISTINCT FROM $2', [w.tenantId, erased.data.pseudonym])).toEqual(otherUserBefore);
    expect(await eventRows('e.tenant_id = $1', [w.otherTenant.tenantId])).toEqual(tenantBBefore);
    expect((await pool().query('SELECT k::text FROM idempotency_keys k WHERE tenant_id = $1', [w.otherTenant.tenantId])).rows).toEqual(keysBBefore);

    // Idempotent: nothing left to change, and nothing changes.
    const afterFirst = await eventRows('e.tenant_id = $1', [w.tenantId]);
    const again = await app.call('privacy.eraseUser', { userId: w.userId }, w.ownerKey);
    expect(again.data).toMatchObject({ events: 0, idempotencyKeys: 0, auditLogs: 0, webhookDeliveries: 0, pseudonym: null });
    expect(await eventRows('e.tenant_id = $1', [w.tenantId])).toEqual(afterFirst);
    const exported = await app.call('privacy.exportUser', { userId: w.userId }, w.ownerKey);
    expect(exported.data).toMatchObject({ eventsInPage: 0, licenses: [], auditLogs: [], webhookDeliveries: [], nextCursor: null });

    // A retry of an erased event under its (surviving) key: the stored payload differs now, so
    // it is refused as a conflict and nothing is counted twice; the pseudonymised payload is
    // recognised as the duplicate it is (the hash was recomputed exactly as ingestion does).
    const retry = await app.call('usage.trackEvent', { ...w.keyedEvent.payload, idempotencyKey: w.keyedEvent.key }, w.ownerKey);
    expect(retry.status).toBe(409);
    const asStored = await app.call(
      'usage.trackEvent',
      {
        ...w.keyedEvent.payload,
        userId: erased.data.pseudonym,
        route: `/files/${erased.data.pseudonym}`,
        properties: {},
        idempotencyKey: w.keyedEvent.key,
      },
      w.ownerKey,
    );
    expect(asStored.status).toBe(200);
    expect(asStored.data).toEqual({ eventId: w.keyedEvent.eventId, duplicate: true });
    expect(await eventRows('e.tenant_id = $1', [w.tenantId])).toEqual(afterFirst);
  });
});

describe('eraseUser (domain)', () => {
  it('runs one erasure of a user at a time: the user keeps one pseudonym', async () => {
    const w = await buildWorld();
    const outcomes = await Promise.allSettled([
      eraseUser(pool(), { tenantId: w.tenantId, environment: 'live', userId: w.userId }, 2),
      eraseUser(pool(), { tenantId: w.tenantId, environment: 'live', userId: w.userId }, 2),
    ]);
    const reports = outcomes.flatMap((o) => (o.status === 'fulfilled' ? [o.value] : []));
    for (const o of outcomes) {
      if (o.status === 'rejected') expect(o.reason).toMatchObject({ code: 'CONFLICT', message: expect.stringContaining('already running') });
    }
    expect(reports.map((r) => r.events).sort((a, b) => a - b)).toEqual(reports.length === 2 ? [0, 32] : [32]);
    const { rows } = await pool().query<{ users: string }>(
      `SELECT count(DISTINCT user_id)::text AS users FROM usage_events WHERE tenant_id = $1 AND user_id LIKE 'erased:%'`,
      [w.tenantId],
    );
    expect(rows[0]!.users).toBe('1');
  });

  it('erases in batches, one license at a time, and leaves the other license to its own erasure', async () => {
    const w = await buildWorld();
    await rollUp(w);
    const rollupsBefore = await rollupRows(w.licenses);
    const first = await eraseUser(pool(), { tenantId: w.tenantId, environment: 'live', userId: w.userId, licenseId: w.licenses[0] }, 4);
    expect(first.events).toBe(16); // 15 api calls and the seat of license 0
    const left = await pool().query<{ license_id: string }>(
      'SELECT DISTINCT license_id FROM usage_events WHERE tenant_id = $1 AND user_id = $2',
      [w.tenantId, w.userId],
    );
    expect(left.rows.map((r) => r.license_id)).toEqual([w.licenses[1]]);
    const second = await eraseUser(pool(), { tenantId: w.tenantId, environment: 'live', userId: w.userId, licenseId: w.licenses[1] }, 3);
    expect(second.events).toBe(16);
    expect((await eraseUser(pool(), { tenantId: w.tenantId, environment: 'live', userId: w.userId }, 3)).events).toBe(0);
    // Per license, every rollup number is what it was.
    await pool().query('DELETE FROM usage_rollups_hourly WHERE license_id = ANY($1)', [w.licenses]);
    await pool().query('DELETE FROM usage_rollups_daily WHERE license_id = ANY($1)', [w.licenses]);
    // The touched hours were marked for the next hourly run (a rollup may have read one half-erased).
    const marks = await pool().query(
      'SELECT count(*)::int AS n FROM rollup_dirty_hours WHERE tenant_id = $1 AND hour >= $2 AND hour < $3',
      [w.tenantId, new Date(START), new Date(START + 30 * HOUR)],
    );
    expect(marks.rows[0].n).toBe(30); // one per (license, hour) of the user's past events
    await rollUp(w);
    expect(await rollupRows(w.licenses)).toEqual(rollupsBefore);
  });
});
