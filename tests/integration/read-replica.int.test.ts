import pg from 'pg';
import { TestApp } from '../helpers/harness';
import { startReplica, waitForReplay, type Replica } from '../helpers/pg-servers';
import { usageAnalytics } from '../../src/domain/analytics/usage-analytics';
import { exportRows } from '../../src/domain/analytics/export';

/**
 * DATABASE_READ_URL against a real streaming replica of the test cluster (pg_basebackup -R,
 * its own port and data folder): analytics and export read there while it is fresh, and go to
 * the primary when its lag passes DATABASE_READ_MAX_LAG_MS or it is down.
 */
// Generous: the machine is shared, and a lag monitor starved of CPU reports more lag.
const MAX_LAG_MS = 3000;
let replica: Replica;
let app: TestApp;
let replicaPool: pg.Pool;
let ownerKey: string;
let tenantId: string;
let licenseId: string;
const day = (offset: number) => new Date(Date.now() - offset * 86_400_000).toISOString().slice(0, 10);
const range = () => ({ licenseId, startDate: day(3), endDate: day(0), granularity: 'daily' as const, timezone: 'UTC' });

beforeAll(async () => {
  replica = await startReplica();
  app = await TestApp.start({
    DATABASE_READ_URL: replica.urlOf(process.env.DATABASE_URL!),
    DATABASE_READ_MAX_LAG_MS: String(MAX_LAG_MS),
    // Every answer computed: which database answers is what these tests look at.
    USAGE_CACHE_TTL_SECONDS: '0',
  });
  replicaPool = new pg.Pool({ connectionString: replica.urlOf(process.env.DATABASE_URL!), max: 2 });
  replicaPool.on('error', () => undefined); // the replica is stopped on purpose in the last test
  ({ ownerKey, tenantId } = await app.createTenant());
  ({ id: licenseId } = await app.createLicense(ownerKey, { timezone: 'UTC' }));
}, 180_000);

afterAll(async () => {
  await replicaPool?.query('SELECT pg_wal_replay_resume()').catch(() => undefined);
  await replicaPool?.end();
  await app?.close();
  await replica?.stop();
}, 60_000);

async function track(count: number, from: number) {
  const events = Array.from({ length: count }, (_, i) => ({
    licenseId,
    usageType: i % 3 === 0 ? 'tokens' : 'api_call',
    quantity: `${(from + i) % 7}.25`,
    occurredAt: new Date(Date.now() - ((from + i) % 60) * 3_600_000).toISOString(),
    idempotencyKey: `replica-${from + i}`,
    userId: `user-${(from + i) % 11}`,
    statusCode: (from + i) % 9 === 0 ? 500 : 200,
    durationMs: (from + i) % 300,
  }));
  const res = await app.call<{ accepted: number }>('usage.trackEvents', { events }, ownerKey);
  expect(res.status).toBe(200);
}

/** Until the process routes reads as `source` (the lag monitor polls every DATABASE_READ_MAX_LAG_MS / 5). */
async function routedTo(source: 'replica' | 'primary', timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const lag = app.services.db.reads.lagBoundMs();
    const now = lag !== null && lag <= MAX_LAG_MS ? 'replica' : 'primary';
    if (now === source) return;
    if (Date.now() > deadline) throw new Error(`reads still go to the ${now} (lag bound ${lag} ms)`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

const primaryAnalytics = () => usageAnalytics({ pool: app.services.db.pool, prisma: app.services.db.prisma }, tenantId, 'live', range());
const analyticsOverHttp = () => app.call('analytics.usage', range(), ownerKey, { method: 'GET' });

async function metricValue(name: string, labels = ''): Promise<number> {
  const text = await app.services.metrics.registry.metrics();
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `) || (labels === '' && l.startsWith(`${name} `)));
  return line ? Number(line.split(' ').at(-1)) : NaN;
}

describe('read replica (DATABASE_READ_URL)', () => {
  it('answers analytics and exports from the replica once caught up, equal to the primary, and says how far behind it may be', async () => {
    await track(300, 0);
    await waitForReplay(process.env.DATABASE_URL!, replica.urlOf(process.env.DATABASE_URL!));
    await routedTo('replica');

    const res = await analyticsOverHttp();
    expect(res.status).toBe(200);
    expect(res.headers.get('x-tally-data-source')).toBe('replica');
    const lag = Number(res.headers.get('x-tally-data-lag-ms'));
    expect(lag).toBeGreaterThanOrEqual(0);
    expect(lag).toBeLessThanOrEqual(MAX_LAG_MS);
    expect(res.data.overview.eventCount).toBe(300);
    expect(res.data).toEqual(await primaryAnalytics());

    const { granularity: _granularity, ...span } = range();
    const breakdown = await app.call('analytics.breakdown', { ...span, by: 'usageType' }, ownerKey, { method: 'GET' });
    expect(breakdown.status).toBe(200);
    expect(breakdown.headers.get('x-tally-data-source')).toBe('replica');
    expect(breakdown.data.total.events).toBe(300);

    const q = new URLSearchParams({ startDate: day(3), endDate: day(0), format: 'csv', licenseId });
    const exported = await fetch(`${app.baseUrl}/api/export/events?${q}`, { headers: { authorization: `Bearer ${ownerKey}` } });
    expect(exported.status).toBe(200);
    expect(exported.headers.get('x-tally-data-source')).toBe('replica');
    const body = await exported.text();
    const fromPrimary: string[] = [];
    const primary = { pool: app.services.db.pool, prisma: app.services.db.prisma, exportPool: app.services.db.exportPool };
    for await (const chunk of exportRows(primary, tenantId, 'live', 'events', { format: 'csv', licenseId, startDate: day(3), endDate: day(0) }, { statementTimeoutMs: 30_000 })) {
      fromPrimary.push(chunk);
    }
    expect(body).toBe(fromPrimary.join(''));
    expect(body.trim().split('\n')).toHaveLength(301);

    expect(await metricValue('tally_db_replica_up')).toBe(1);
    expect(await metricValue('tally_db_reads_total', '{target="replica",reason="replica"}')).toBeGreaterThanOrEqual(3);
  });

  it('reads from the primary while the replica lags past DATABASE_READ_MAX_LAG_MS, and from the replica again once it caught up', async () => {
    await waitForReplay(process.env.DATABASE_URL!, replica.urlOf(process.env.DATABASE_URL!));
    await routedTo('replica');
    await replicaPool.query('SELECT pg_wal_replay_pause()');
    try {
      await track(5, 1000); // WAL the paused replica does not replay
      await routedTo('primary');
      const res = await analyticsOverHttp();
      expect(res.status).toBe(200);
      expect(res.headers.get('x-tally-data-source')).toBeNull();
      expect(res.headers.get('x-tally-data-lag-ms')).toBeNull();
      expect(res.data.overview.eventCount).toBe(305); // the primary's answer, new events included
      expect(res.data).toEqual(await primaryAnalytics());
      // The replica itself is behind: answered from it, the new events would be missing.
      const onReplica = await replicaPool.query<{ n: string }>('SELECT count(*)::text AS n FROM usage_events WHERE license_id = $1', [licenseId]);
      expect(Number(onReplica.rows[0]!.n)).toBe(300);
      // As of the monitor's last poll: past the bound, or about to be (the routing reads the bound now).
      expect(await metricValue('tally_db_replica_lag_seconds')).toBeGreaterThan(MAX_LAG_MS / 1000 - 1);
      expect(await metricValue('tally_db_replica_lag_bytes')).toBeGreaterThan(0);
      expect(await metricValue('tally_db_reads_total', '{target="primary",reason="replica_lagging"}')).toBeGreaterThanOrEqual(1);
    } finally {
      await replicaPool.query('SELECT pg_wal_replay_resume()');
    }
    await routedTo('replica');
    const res = await analyticsOverHttp();
    expect(res.headers.get('x-tally-data-source')).toBe('replica');
    expect(res.data.overview.eventCount).toBe(305);
    expect(res.data).toEqual(await primaryAnalytics());
  });

  it('a license the replica has not replayed yet is looked up on the primary, not answered 404', async () => {
    await routedTo('replica');
    await replicaPool.query('SELECT pg_wal_replay_pause()');
    try {
      const { id: fresh } = await app.createLicense(ownerKey, { timezone: 'UTC' });
      // Still within the lag bound: routed to the replica, which does not know the license yet.
      const res = await app.call('analytics.usage', { ...range(), licenseId: fresh }, ownerKey, { method: 'GET' });
      expect(res.status).toBe(200);
      expect(res.headers.get('x-tally-data-source')).toBeNull();
      expect(res.data.overview.eventCount).toBe(0);
      const unknown = await app.call('analytics.usage', { ...range(), licenseId: '00000000-0000-4000-8000-000000000000' }, ownerKey, { method: 'GET' });
      expect(unknown.status).toBe(404);
    } finally {
      await replicaPool.query('SELECT pg_wal_replay_resume()');
    }
  });

  it('keeps a replica answer out of the cache while the replica may predate the writes behind the cache generation', async () => {
    // The analytics cache on (its default TTL), and a bound wide enough that every read here goes to the replica.
    const cachedApp = await TestApp.start({ DATABASE_READ_URL: replica.urlOf(process.env.DATABASE_URL!), DATABASE_READ_MAX_LAG_MS: '600000' });
    const { reads } = cachedApp.services.db;
    /** Until the replica is known to hold every commit made before `t` (performance.now() clock). */
    const freshPast = async (t: number) => {
      for (const deadline = Date.now() + 30_000; ; ) {
        const lag = reads.lagBoundMs();
        if (lag !== null && performance.now() - lag > t) return;
        if (Date.now() > deadline) throw new Error('the replica did not catch up');
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    };
    // Computed answers carry the replica headers; answers from the cache carry none.
    const source = async () => {
      const res = await cachedApp.call('analytics.usage', range(), ownerKey, { method: 'GET' });
      expect(res.status).toBe(200);
      return res.headers.get('x-tally-data-source') ?? 'cache';
    };
    try {
      await waitForReplay(process.env.DATABASE_URL!, replica.urlOf(process.env.DATABASE_URL!));
      // Until its first lag probe the process reads from the primary (lag unknown); on a busy machine
      // that probe can come after the first request. Any measured lag will do: fresh past -∞.
      await freshPast(-Infinity);
      expect(await source()).toBe('replica'); // a generation this process has just seen: not cached yet
      // After that request, which noted when it first saw the generation: a lag probe landing
      // during it cannot count as fresh past that moment.
      await freshPast(performance.now());
      expect(await source()).toBe('replica'); // asked once: only marked in the cache
      expect(await source()).toBe('replica'); // asked again: stored
      expect(await source()).toBe('cache');

      await replicaPool.query('SELECT pg_wal_replay_pause()');
      try {
        await app.createLicense(ownerKey, { timezone: 'UTC' }); // WAL the paused replica does not replay
        // What a recalculation does once its rollups committed: a new generation for the tenant.
        await cachedApp.services.analyticsCache.invalidate([tenantId]);
        const paused = performance.now();
        expect(await source()).toBe('replica');
        expect(await source()).toBe('replica'); // computed again: the first was kept out of the cache
        await replicaPool.query('SELECT pg_wal_replay_resume()');
        await freshPast(paused);
      } finally {
        await replicaPool.query('SELECT pg_wal_replay_resume()');
      }
      expect(await source()).toBe('replica');
      expect(await source()).toBe('replica');
      expect(await source()).toBe('cache');
    } finally {
      await cachedApp.close();
    }
  });

  it('reads from the primary when the replica is down', async () => {
    await routedTo('replica');
    await replica.stop();
    // Right after the stop the lag monitor may not have noticed yet: the read fails over on its own.
    const res = await analyticsOverHttp();
    expect(res.status).toBe(200);
    expect(res.headers.get('x-tally-data-source')).toBeNull();
    expect(res.data).toEqual(await primaryAnalytics());
    const q = new URLSearchParams({ startDate: day(3), endDate: day(0), format: 'json', licenseId });
    const exported = await fetch(`${app.baseUrl}/api/export/events?${q}`, { headers: { authorization: `Bearer ${ownerKey}` } });
    expect(exported.status).toBe(200);
    expect(exported.headers.get('x-tally-data-source')).toBeNull();
    expect((JSON.parse(await exported.text()) as unknown[]).length).toBe(305);
    await routedTo('primary');
    expect(await metricValue('tally_db_replica_up')).toBe(0);
  });
});
