import pg from 'pg';
import { TestApp } from '../helpers/harness';
import { createIsolatedDatabase } from '../helpers/isolated-db';
import { startPgBouncer, type PgBouncer } from '../helpers/pg-servers';
import { startTestWorkers } from '../helpers/workers';
import { rollupDifferences } from '../helpers/rollup-check';

/**
 * Tally behind a real PgBouncer in transaction pooling mode (DATABASE_URL through it,
 * DATABASE_DIRECT_URL beside it): ingest with quotas, the rollup jobs, analytics, export and
 * erasure pass through, and nothing that needs a session of its own leaks across its server
 * connections. A database of its own: the rollup job works across all licenses.
 */
let bouncer: PgBouncer;
let db: ReturnType<typeof createIsolatedDatabase>;
let app: TestApp;
let direct: pg.Pool;
let ownerKey: string;
let tenantId: string;
let licenseId: string;
const HOUR = 3_600_000;
const day = (offset: number) => new Date(Date.now() - offset * 86_400_000).toISOString().slice(0, 10);

beforeAll(async () => {
  // Fewer server connections than the app's pool: statements of one client land on several of them.
  bouncer = await startPgBouncer({ poolSize: 3 });
  db = createIsolatedDatabase('pgbouncer');
  app = await TestApp.start({ DATABASE_URL: bouncer.urlOf(db.url), DATABASE_DIRECT_URL: db.url, DB_POOL_SIZE: '8' });
  direct = new pg.Pool({ connectionString: db.url, max: 2 });
  ({ ownerKey, tenantId } = await app.createTenant());
  ({ id: licenseId } = await app.createLicense(ownerKey, { timezone: 'UTC' }));
}, 180_000);

afterAll(async () => {
  await direct?.end();
  await app?.close();
  await bouncer?.stop();
  await db?.drop();
}, 60_000);

/** Holds a server connection in an open transaction, so the next statement of another client goes to another one. */
async function withServerHeld<T>(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  const holder = await pool.connect();
  try {
    await client.query({ name: 'tally-pooler-probe', text: 'SELECT 1 AS one' });
    await holder.query('BEGIN');
    await holder.query('SELECT 1'); // the server connection the probe was prepared on, most likely (PgBouncer reuses the last one)
    return await work(client);
  } finally {
    await holder.query('ROLLBACK').catch(() => undefined);
    holder.release();
    client.release();
  }
}

describe('behind PgBouncer in transaction mode', () => {
  it("a named statement is lost between transactions through the pooler; Tally's pool sends none", async () => {
    const plain = new pg.Pool({ connectionString: bouncer.urlOf(db.url), max: 2 });
    try {
      await expect(withServerHeld(plain, (c) => c.query({ name: 'tally-pooler-probe', text: 'SELECT 1 AS one' }))).rejects.toThrow(
        /prepared statement "tally-pooler-probe" does not exist/,
      );
    } finally {
      await plain.end();
    }
    const { rows } = await withServerHeld(app.services.db.pool, (c) => c.query<{ one: number }>({ name: 'tally-pooler-probe', text: 'SELECT 1 AS one' }));
    expect(rows).toEqual([{ one: 1 }]);
  });

  it('ingests with idempotency and a hard quota, exact', async () => {
    const { id: limited } = await app.createLicense(ownerKey, { timezone: 'UTC' });
    const threshold = await app.call('thresholds.create', { licenseId: limited, usageType: 'api_call', limitQuantity: 40, periodType: 'daily', gracePercentage: 0, allowOverage: false }, ownerKey);
    expect(threshold.status).toBe(200);
    // 60 concurrent single events against a limit of 40: exactly 40 through.
    const singles = await Promise.all(
      Array.from({ length: 60 }, (_, i) => app.call('usage.trackEvent', { licenseId: limited, usageType: 'api_call', quantity: 1, idempotencyKey: `q-${i}` }, ownerKey)),
    );
    expect(singles.filter((r) => r.status === 200)).toHaveLength(40);
    expect(singles.filter((r) => r.status === 429)).toHaveLength(20);

    // Batches with 10% repeated keys, in parallel.
    const batch = (b: number) =>
      Array.from({ length: 200 }, (_, i) => {
        const n = i < 20 && b > 0 ? i : b * 200 + i; // the first 20 of every later batch repeat batch 0's
        return { licenseId, usageType: n % 2 ? 'api_call' : 'tokens', quantity: `${n % 5}.5`, occurredAt: new Date(Date.now() - (n % 40) * HOUR).toISOString(), idempotencyKey: `b-${n}`, userId: `u-${n % 13}` };
      });
    const results = await Promise.all([0, 1, 2, 3].map((b) => app.call<{ accepted: number; duplicates: number }>('usage.trackEvents', { events: batch(b) }, ownerKey)));
    for (const r of results) expect(r.status).toBe(200);
    const stored = await direct.query<{ n: string }>('SELECT count(*)::text AS n FROM usage_events WHERE license_id = $1', [licenseId]);
    expect(Number(stored.rows[0]!.n)).toBe(4 * 200 - 3 * 20);
    const limitedStored = await direct.query<{ n: string }>('SELECT count(*)::text AS n FROM usage_events WHERE license_id = $1', [limited]);
    expect(Number(limitedStored.rows[0]!.n)).toBe(40);
  });

  it('runs the rollup job through it, exact', async () => {
    const workers = await startTestWorkers(app);
    try {
      const res = await app.call<{ jobId: string }>('usage.recalculateAggregates', { licenseId, startDate: day(3), endDate: day(0) }, app.adminKey, {
        headers: { 'x-tally-tenant': tenantId },
      });
      expect(res.status).toBe(200);
      await workers.finished(res.data.jobId);
    } finally {
      await workers.close();
    }
    const hourStart = new Date(Math.floor(Date.now() / HOUR) * HOUR);
    expect(await rollupDifferences(direct, [licenseId], { hoursBefore: hourStart, daysEndedBefore: new Date(`${day(0)}T00:00:00Z`) })).toEqual({ hourly: [], daily: [] });
    const rolled = await direct.query<{ n: string }>('SELECT sum(event_count)::text AS n FROM usage_rollups_hourly WHERE license_id = $1', [licenseId]);
    expect(Number(rolled.rows[0]!.n)).toBeGreaterThan(0);
  });

  it('answers analytics (named statements inside) under concurrency, and exports', async () => {
    const input = { licenseId, startDate: day(3), endDate: day(0), granularity: 'daily', timezone: 'UTC' };
    const answers = await Promise.all(Array.from({ length: 24 }, (_, i) => app.call('analytics.usage', { ...input, usageType: i % 2 ? 'api_call' : undefined }, ownerKey, { method: 'GET' })));
    for (const a of answers) expect(a.status).toBe(200);
    expect(answers[0]!.data.overview.eventCount).toBe(740);

    const q = new URLSearchParams({ startDate: day(3), endDate: day(0), format: 'csv', licenseId });
    const [csv, json] = await Promise.all(
      ['csv', 'json'].map((format) => {
        q.set('format', format);
        return fetch(`${app.baseUrl}/api/export/events?${q}`, { headers: { authorization: `Bearer ${ownerKey}` } });
      }),
    );
    expect(csv!.status).toBe(200);
    expect((await csv!.text()).trim().split('\n')).toHaveLength(741);
    // EXPORT_MAX_PER_TENANT is 1: the second is refused while the first runs, or runs after it.
    expect([200, 429]).toContain(json!.status);
    if (json!.status === 200) expect(JSON.parse(await json!.text())).toHaveLength(740);
  });

  it('erases a user holding its session lock on the direct connection, and leaves no lock behind', async () => {
    const res = await app.call<{ events: number }>('privacy.eraseUser', { userId: 'u-3' }, ownerKey);
    expect(res.status).toBe(200);
    expect(res.data.events).toBeGreaterThan(0);
    const held = await direct.query<{ n: string }>(`SELECT count(*)::text AS n FROM pg_locks WHERE locktype = 'advisory' AND classid = 7003`);
    expect(Number(held.rows[0]!.n)).toBe(0);
    const again = await app.call<{ events: number }>('privacy.eraseUser', { userId: 'u-3' }, ownerKey);
    expect(again.status).toBe(200);
    expect(again.data.events).toBe(0);
  });
});
