import { randomUUID } from 'node:crypto';
import { TestApp } from '../helpers/harness';
import { RedisClusterServer } from '../helpers/redis-cluster';
import { startTestWorkers } from '../helpers/workers';
import { licenseWithLimit } from '../helpers/quota';
import { rollupDifferences } from '../helpers/rollup-check';
import { FailedAuthThrottle } from '../../src/domain/api-keys/throttles';
import { isCluster, keysWithPrefix } from '../../src/lib/redis';
import { Redis } from 'ioredis';

/**
 * Tally on a real Redis Cluster (3 masters, 3 replicas, started here on ports of its own): two
 * API instances share it, as two processes behind a load balancer would. A representative part of
 * the quota, ingest, rollup and analytics behaviour runs on it, then a master is SIGKILLed in the
 * middle of a stream of events and its replica takes over.
 */

jest.setTimeout(180_000);

const HOUR = 3_600_000;
let cluster: RedisClusterServer;
let a: TestApp;
let b: TestApp;
let ownerKey: string;
let tenantId: string;

beforeAll(async () => {
  // A node is failed after 3 s without answering: longer than ioredis goes on retrying a command
  // (16 redirections, 100 ms apart), so what is sent early in a failover fails for good.
  cluster = await RedisClusterServer.start({ nodeTimeoutMs: 3000 });
  // Redis answers slowly on a loaded CI box; a timed-out check would be decided from PostgreSQL
  // instead, which only the failover test is about (there ioredis gives up on the dead master).
  const env = { REDIS_CLUSTER_NODES: cluster.nodesSpec, QUOTA_REDIS_TIMEOUT_MS: '10000' };
  a = await TestApp.start(env);
  b = await TestApp.start({ ...env, REDIS_KEY_PREFIX: a.prefix });
  ({ ownerKey, tenantId } = await a.createTenant());
}, 120_000);

afterAll(async () => {
  await b?.close();
  await a?.close();
  await cluster?.stop();
});

const hourFloor = (t: number) => Math.floor(t / HOUR) * HOUR;

async function recalculate(licenseIds: string[], from: number) {
  const workers = await startTestWorkers(a);
  try {
    for (const licenseId of licenseIds) {
      const res = await a.call(
        'usage.recalculateAggregates',
        { licenseId, startDate: new Date(from).toISOString().slice(0, 10), endDate: new Date().toISOString().slice(0, 10) },
        a.adminKey,
        { headers: { 'x-tally-tenant': tenantId } },
      );
      expect(res.status).toBe(200);
      await workers.finished(res.data.jobId);
    }
  } finally {
    await workers.close();
  }
}

describe('Tally on a Redis Cluster', () => {
  it('runs every Redis client as a cluster client, with BullMQ under a hash-tagged prefix', async () => {
    const s = a.services;
    expect([s.redis, s.quotaRedis, s.bullConnection].every(isCluster)).toBe(true);
    expect(s.queues.prefix).toBe(`${a.prefix}{bull}`);
    expect((await a.call('usage.current', { licenseId: randomUUID() }, ownerKey, { method: 'GET' })).status).toBe(404);
    const health = await fetch(`${a.baseUrl}/health`);
    expect([health.status, ((await health.json()) as { redis: string }).redis]).toEqual([200, 'up']);
  });

  it('ingests single events and batches exactly: duplicates once, a changed payload 409', async () => {
    const { id: licenseId } = await a.createLicense(ownerKey);
    const first = await a.call('usage.trackEvent', { licenseId, usageType: 'api_call', quantity: '1.25', idempotencyKey: 'one' }, ownerKey);
    expect(first.status).toBe(200);
    const again = await b.call('usage.trackEvent', { licenseId, usageType: 'api_call', quantity: '1.25', idempotencyKey: 'one' }, ownerKey);
    expect(again.data).toEqual({ eventId: first.data.eventId, duplicate: true });
    expect((await b.call('usage.trackEvent', { licenseId, usageType: 'api_call', quantity: '2', idempotencyKey: 'one' }, ownerKey)).status).toBe(409);
    const events = Array.from({ length: 60 }, (_, i) => ({ licenseId, usageType: 'tokens', quantity: `${i % 50}.5`, idempotencyKey: `batch-${i % 50}` }));
    const batch = await a.call('usage.trackEvents', { events }, ownerKey);
    expect([batch.status, batch.data.accepted, batch.data.duplicates]).toEqual([200, 50, 10]);
    expect(await a.prisma.usageEvent.count({ where: { licenseId } })).toBe(51);
  });

  it('enforces a hard limit across both API instances: 10 admitted, the 11th refused', async () => {
    const { licenseId } = await licenseWithLimit(a, ownerKey, 'api_call', 10);
    const statuses = [];
    for (let i = 0; i < 11; i++) statuses.push((await (i % 2 ? b : a).call('usage.trackEvent', { licenseId, usageType: 'api_call' }, ownerKey)).status);
    expect(statuses).toEqual([...Array(10).fill(200), 429]);
    const check = await b.call('usage.check', { licenseId, usageType: 'api_call', quantity: 1 }, ownerKey, { method: 'GET' });
    expect(check.data).toMatchObject({ allowed: false, limits: [{ used: '10', remaining: '0' }] });
  });

  it('admits exactly 100 of 200 concurrent events against a limit of 100, spread over both instances', async () => {
    const { licenseId } = await licenseWithLimit(a, ownerKey, 'burst', 100);
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) => (i % 2 ? b : a).call('usage.trackEvent', { licenseId, usageType: 'burst' }, ownerKey)),
    );
    expect(results.filter((r) => r.status === 200)).toHaveLength(100);
    expect(results.filter((r) => r.status === 429)).toHaveLength(100);
    expect(await a.prisma.usageEvent.count({ where: { licenseId } })).toBe(100);
  });

  it('rolls up through BullMQ on the cluster, and analytics (cached per tenant slot) equals the raw events', async () => {
    const { id: licenseId } = await a.createLicense(ownerKey);
    const now = Date.now();
    const events = Array.from({ length: 40 }, (_, i) => ({
      licenseId,
      usageType: 'api_call',
      quantity: `${i}.25`,
      userId: `u${i % 6}`,
      statusCode: i % 10 === 0 ? 500 : 200,
      occurredAt: new Date(now - (i % 5) * HOUR - 2 * HOUR).toISOString(),
    }));
    expect((await a.call('usage.trackEvents', { events }, ownerKey)).data.accepted).toBe(40);
    await recalculate([licenseId], now - 8 * HOUR);
    const bounds = { hoursBefore: new Date(hourFloor(now)), daysEndedBefore: new Date(now) };
    expect(await rollupDifferences(a.services.db.pool, [licenseId], bounds)).toEqual({ hourly: [], daily: [] });
    expect((await keysWithPrefix(a.services.redis, `${a.prefix}{bull}:backfill:`)).length).toBeGreaterThan(0);

    const input = { licenseId, startDate: new Date(now - 2 * 86_400_000).toISOString().slice(0, 10), endDate: new Date(now).toISOString().slice(0, 10), granularity: 'daily' };
    const answer = async (app: TestApp) => (await app.call('analytics.usage', input, ownerKey, { method: 'GET' })).data.overview;
    const expected = { totalQuantity: String(events.reduce((s, e) => s + Number(e.quantity), 0)), eventCount: 40, uniqueUsers: 6, errorCount: 4 };
    expect(await answer(a)).toMatchObject(expected);
    expect((await keysWithPrefix(a.services.redis, `${a.prefix}analytics:{${tenantId}}:`)).length).toBeGreaterThanOrEqual(2); // generation + answer
    expect(await answer(b)).toMatchObject(expected); // the cached answer, read by the other instance
    // a late event is counted at once: ingestion invalidates the tenant's cached answers
    expect((await b.call('usage.trackEvent', { licenseId, usageType: 'api_call', quantity: 1, occurredAt: new Date(now - 3 * HOUR).toISOString() }, ownerKey)).status).toBe(200);
    await recalculate([licenseId], now - 8 * HOUR);
    expect(await answer(a)).toMatchObject({ eventCount: 41 });
  });

  it('counts failed authentication per address and per key prefix in one script (one slot) and throttles past the limit', async () => {
    const throttle = new FailedAuthThrottle(a.services.quotaRedis, undefined, {
      keyPrefix: a.prefix,
      addressLimit: 3,
      prefixLimit: 100,
      windowSeconds: 60,
      redisTimeoutMs: 10_000,
    });
    const address = `10.9.${Math.floor(Math.random() * 250)}.1`;
    for (let i = 0; i < 3; i++) expect(await throttle.fail(address, 'tk_live_Abcdefgh')).toBeNull();
    expect(await throttle.check(address, 'tk_live_Abcdefgh')).toMatchObject({ limit: 3, remaining: 0 });
    expect(await throttle.check(`${address}0`, 'tk_live_Abcdefgh')).toBeNull();
  });

  it('broadcasts a key revocation to the other instance at once (pub/sub on the cluster)', async () => {
    const key = await a.createKey(ownerKey, 'read');
    expect((await b.call('licenses.list', {}, key.key, { method: 'GET' })).status).toBe(200); // now cached in b
    expect((await a.call('apiKeys.revoke', { id: key.id }, ownerKey)).status).toBe(200);
    // API_KEY_CACHE_TTL_SECONDS is 60: only the broadcast can make b refuse within this test
    let status = 200;
    for (let i = 0; i < 50 && status === 200; i++) {
      status = (await b.call('licenses.list', {}, key.key, { method: 'GET' })).status;
      if (status === 200) await new Promise((r) => setTimeout(r, 20));
    }
    expect(status).toBe(401);
  });
});

describe('a master killed in the middle of a stream of events', () => {
  // Two more instances that give up on Redis after 150 ms, so the failover's seconds see many
  // decisions from PostgreSQL (with 10 s, ioredis' own retries end each call after ~2 s).
  let fa: TestApp;
  let fb: TestApp;
  beforeAll(async () => {
    const env = { REDIS_CLUSTER_NODES: cluster.nodesSpec, QUOTA_REDIS_TIMEOUT_MS: '150' };
    fa = await TestApp.start(env);
    fb = await TestApp.start({ ...env, REDIS_KEY_PREFIX: fa.prefix });
  });
  afterAll(async () => {
    await fb?.close();
    await fa?.close();
  });

  it('loses no event, keeps rollups exact, and admits past the cap at most what the other instance had in flight', async () => {
    const [a, b] = [fa, fb];
    const CAP = 120;
    const CLIENTS_PER_APP = 6;
    const startedAt = Date.now();
    const occurredAt = new Date(hourFloor(startedAt) - HOUR + 1_000).toISOString(); // an ended hour, so rollups can be checked
    // The usage.check at the end reads the counter of the license's current day, so that hour must
    // fall in it: in the first hours of a UTC day the license's day runs twelve hours ahead.
    const timezone = new Date(startedAt).getUTCHours() < 2 ? 'Etc/GMT-12' : 'UTC';
    const { licenseId: capped } = await licenseWithLimit(a, ownerKey, 'failover', CAP, {}, { timezone });
    const { id: free } = await a.createLicense(ownerKey);
    const victim = await cluster.masterPortOf(`{${capped}}`); // the master holding the capped license's counters

    let phase: 'before' | 'failing over' | 'after' = 'before';
    const sent = { capped: 0, free: 0 };
    const answers = { capped: new Map<string, number>(), free: new Map<string, number>() };
    let retries = 0;
    let seq = 0;
    const duringFailover = { capped: 0, admitted: 0 };
    const send = async (app: TestApp, licenseId: string, which: 'capped' | 'free') => {
      const key = `${which}-${seq++}`;
      const body = { licenseId, usageType: 'failover', occurredAt, idempotencyKey: key, userId: `u${seq % 13}` };
      for (let attempt = 0; ; attempt++) {
        const res = await app.call('usage.trackEvent', body, ownerKey).catch(() => null);
        // a client retries what was not answered, or answered 5xx, with the same body (as an SDK does)
        if (res && res.status < 500) {
          answers[which].set(key, res.status);
          if (phase === 'failing over' && which === 'capped') {
            duringFailover.capped += 1;
            if (res.status === 200) duringFailover.admitted += 1;
          }
          return;
        }
        if (attempt >= 50) throw new Error(`event ${key} never answered: ${res ? JSON.stringify(res.body) : 'no answer'}`);
        retries += 1;
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    // Capped events: 40 before the kill, at most 40 more while the failover lasts, the rest after.
    const mayTakeCapped = () => (phase === 'before' ? sent.capped < 40 : phase === 'failing over' ? sent.capped < 80 : sent.capped < 2 * CAP);
    const client = async (app: TestApp) => {
      while (phase !== 'after' || sent.capped < 2 * CAP) {
        if (mayTakeCapped()) {
          sent.capped += 1;
          await send(app, capped, 'capped');
        } else if (phase !== 'before' || sent.free < 200) {
          sent.free += 1;
          await send(app, free, 'free');
        } else await new Promise((r) => setTimeout(r, 10));
      }
    };
    const clients = Array.from({ length: 2 * CLIENTS_PER_APP }, (_, i) => client(i % 2 ? b : a));

    while (sent.capped < 40 || sent.free < 20) await new Promise((r) => setTimeout(r, 10));
    await cluster.kill(victim);
    const killedAt = Date.now();
    phase = 'failing over';
    const heir = await cluster.waitForFailover(victim);
    phase = 'after';
    const failoverMs = Date.now() - killedAt;
    await Promise.all(clients);
    expect(heir).not.toBe(victim);
    expect(await cluster.masterPortOf(`{${capped}}`)).toBe(heir);

    // nothing lost: every event answered 200 is stored once, every 429 is not stored
    const accepted = (m: Map<string, number>) => [...m].filter(([, s]) => s === 200).map(([k]) => k);
    const storedKeys = async (licenseId: string) =>
      (await a.services.db.pool.query<{ idempotency_key: string }>('SELECT idempotency_key FROM usage_events WHERE license_id = $1', [licenseId])).rows
        .map((r) => r.idempotency_key)
        .sort();
    expect([...answers.free.values()].every((s) => s === 200)).toBe(true);
    expect(await storedKeys(free)).toEqual(accepted(answers.free).sort());
    expect([...answers.capped.values()].filter((s) => s !== 200 && s !== 429)).toEqual([]);
    const admitted = accepted(answers.capped);
    expect(await storedKeys(capped)).toEqual([...admitted].sort());
    expect(answers.capped.size).toBe(2 * CAP);

    // The README's bound for a Redis outage: decided from PostgreSQL, an instance does not see
    // the events the other one has admitted and not yet written: at most its clients' in-flight
    // single events. Past it, never.
    expect(admitted.length).toBeGreaterThanOrEqual(CAP);
    expect(admitted.length).toBeLessThanOrEqual(CAP + CLIENTS_PER_APP);
    // the counters were dropped and rebuilt after the failover: both instances read what is stored
    for (const app of [a, b]) {
      const check = await app.call('usage.check', { licenseId: capped, usageType: 'failover', quantity: 1 }, ownerKey, { method: 'GET' });
      expect(check.data.limits[0].used).toBe(String(admitted.length));
    }

    // rollups exact, rolled up by BullMQ workers on the cluster after the failover
    await recalculate([capped, free], Date.parse(occurredAt));
    const bounds = { hoursBefore: new Date(hourFloor(Date.now())), daysEndedBefore: new Date() };
    expect(await rollupDifferences(a.services.db.pool, [capped, free], bounds)).toEqual({ hourly: [], daily: [] });
    const hourly = await a.services.db.pool.query<{ event_count: string }>('SELECT sum(event_count)::text AS event_count FROM usage_rollups_hourly WHERE license_id = ANY($1)', [[capped, free]]);
    expect(Number(hourly.rows[0]!.event_count)).toBe(admitted.length + answers.free.size);
    process.stdout.write(
      `failover: master :${victim} → :${heir} in ${failoverMs} ms; capped license ${admitted.length} admitted of ${2 * CAP} (cap ${CAP}), ` +
        `${duringFailover.capped} answered during the failover (${duringFailover.admitted} admitted); ${answers.free.size} other events; ${retries} client retries\n`,
    );
  });
});

describe('a Redis that comes back holding its counters (restarted from its AOF)', () => {
  // What a promoted replica does too: the counters are back, short of what was admitted from
  // PostgreSQL meanwhile. They must be rebuilt before they decide again.
  it('rebuilds the counters it decided on from PostgreSQL: one instance never passes the cap', async () => {
    const { spawn } = await import('node:child_process');
    const { mkdtempSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const dir = mkdtempSync(`${tmpdir()}/tally-redis-aof-`);
    const port = 20_000 + Math.floor(Math.random() * 9_000);
    const startRedis = () =>
      spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'yes', '--appendfsync', 'always'], { stdio: 'ignore' });
    const answers = async () => {
      const probe = new Redis({ port, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
      probe.on('error', () => undefined);
      const up = await probe.connect().then(() => probe.ping()).then(() => true, () => false);
      probe.disconnect();
      return up;
    };
    let server = startRedis();
    while (!(await answers())) await new Promise((r) => setTimeout(r, 50));
    const app = await TestApp.start({ REDIS_URL: `redis://127.0.0.1:${port}`, QUOTA_REDIS_TIMEOUT_MS: '10000' });
    try {
      const CAP = 30;
      const { licenseId } = await licenseWithLimit(app, ownerKey, 'aof', CAP);
      const track = () => app.call('usage.trackEvent', { licenseId, usageType: 'aof' }, ownerKey);
      const statuses: number[] = [];
      for (let i = 0; i < 10; i++) statuses.push((await track()).status); // counted in Redis, fsynced
      server.kill('SIGKILL');
      await new Promise((r) => server.once('exit', r));
      const status = (): string => app.services.quotaRedis.status;
      while (status() === 'ready') await new Promise((r) => setTimeout(r, 20));
      for (let i = 0; i < 10; i++) statuses.push((await track()).status); // decided from PostgreSQL
      server = startRedis();
      while (status() !== 'ready') await new Promise((r) => setTimeout(r, 50));
      for (let i = 0; i < 20; i++) statuses.push((await track()).status);
      expect(statuses).toEqual([...Array(CAP).fill(200), ...Array(10).fill(429)]);
      expect(await app.prisma.usageEvent.count({ where: { licenseId } })).toBe(CAP);
    } finally {
      await app.close();
      server.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
