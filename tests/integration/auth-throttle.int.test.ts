import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { randomBytes, randomUUID } from 'node:crypto';
import { networkInterfaces } from 'node:os';
import { TestApp } from '../helpers/harness';
import { createHttpServer } from '../../src/server/http';
import { createApiKey } from '../../src/domain/api-keys/api-keys';
import { hashApiKey } from '../../src/domain/api-keys/key-material';

const ALPHANUMERIC = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
const randomSecret = (length: number) => Array.from(randomBytes(length), (b) => ALPHANUMERIC[b % 62]).join('');
/** A well-formed key nobody issued; `head` fixes its public prefix (tk_live_ + 8 characters). */
const bogusKey = (head = randomSecret(8)) => `tk_live_${head}${randomSecret(16)}`;

function externalIPv4(): string | undefined {
  return Object.values(networkInterfaces())
    .flat()
    .find((i) => i && i.family === 'IPv4' && !i.internal)?.address;
}

/** Refused-auth audit rows that mention one of these key prefixes. */
async function refusalRows(app: TestApp, prefixes: string[]) {
  const rows = await app.prisma.auditLog.findMany({ where: { action: 'auth.refused', createdAt: { gte: new Date(Date.now() - 3_600_000) } } });
  return rows.filter((r) => ((r.metadata as { prefixes?: string[] }).prefixes ?? []).some((p) => prefixes.includes(p)));
}
const countOf = (rows: { metadata: unknown }[]) => rows.reduce((sum, r) => sum + Number((r.metadata as { count: number }).count), 0);
/** tally_auth_refusals_total by reason, as /metrics shows it. */
async function refusalCounts(app: TestApp): Promise<Record<string, number>> {
  const { values } = await app.services.metrics.authRefusals.get();
  return Object.fromEntries(values.map((v) => [String(v.labels.reason), v.value]));
}

/** Audit windows are aligned to the clock; a test may straddle a boundary. */
const windowsBetween = (from: number, to: number, seconds: number) => Math.floor(to / (seconds * 1000)) - Math.floor(from / (seconds * 1000)) + 1;

function expectLimitHeaders(headers: Headers, limit: number, windowSeconds: number) {
  const retryAfter = Number(headers.get('retry-after'));
  expect(retryAfter).toBeGreaterThanOrEqual(1);
  expect(retryAfter).toBeLessThanOrEqual(windowSeconds);
  expect(headers.get('ratelimit-limit')).toBe(String(limit));
  expect(headers.get('ratelimit-remaining')).toBe('0');
  expect(headers.get('ratelimit-reset')).toBe(String(retryAfter));
  expect(headers.get('x-ratelimit-limit')).toBe(String(limit));
  expect(headers.get('x-ratelimit-remaining')).toBe('0');
  const reset = Number(headers.get('x-ratelimit-reset'));
  expect(reset).toBeGreaterThan(Date.now() / 1000);
  expect(reset).toBeLessThanOrEqual(Date.now() / 1000 + windowSeconds + 2);
}

describe('failed authentication per client address', () => {
  const N = 5;
  const WINDOW = 60;
  let app: TestApp;
  beforeAll(async () => {
    app = await TestApp.start({ AUTH_FAILURE_LIMIT: String(N), AUTH_FAILURE_WINDOW_SECONDS: String(WINDOW) });
  });
  afterAll(() => app.close());

  it('answers N failures with 401 and the next attempt with 429, before any database lookup; one audit row with the count', async () => {
    const started = Date.now();
    const countedBefore = await refusalCounts(app);
    const { ownerKey } = await app.createTenant();
    // accepted by this process before the flood: not a guess, keeps working from the same address
    expect((await app.call('licenses.list', {}, ownerKey, { method: 'GET' })).status).toBe(200);
    const { tenantId } = await app.createTenant();
    // a valid key this process has never accepted: the throttle must refuse it without asking the database
    const unseen = await createApiKey(app.prisma, { tenantId, name: 'unseen', role: 'owner', environment: 'live' });

    const keys = Array.from({ length: N + 40 }, () => bogusKey());
    for (const key of keys.slice(0, N)) {
      const res = await app.call('licenses.list', {}, key, { method: 'GET' });
      expect(res.status).toBe(401);
    }
    const past = await app.call('licenses.list', {}, keys[N]!, { method: 'GET' });
    expect(past.status).toBe(429);
    expect(past.body.error?.data.code).toBe('TOO_MANY_REQUESTS');
    expect(past.body.error?.message).toMatch(/too many failed authentication attempts/);
    expectLimitHeaders(past.headers, N, WINDOW);
    expect((await app.call('licenses.list', {}, null, { method: 'GET' })).status).toBe(429);
    expect((await app.call('licenses.list', {}, 'not-a-key', { method: 'GET' })).status).toBe(429);
    expect((await app.call('licenses.list', {}, unseen.key, { method: 'GET' })).status).toBe(429);
    expect((await app.call('licenses.list', {}, ownerKey, { method: 'GET' })).status).toBe(200);

    // a throttled flood costs no row per request: the same row(s) count it
    await Promise.all(keys.slice(N + 1).map((key) => app.call('licenses.list', {}, key, { method: 'GET' })));
    await app.services.authenticator.flush();
    const prefixes = keys.map((k) => k.slice(0, 16));
    const rows = await refusalRows(app, prefixes);
    expect(rows.length).toBeGreaterThanOrEqual(1);
    expect(rows.length).toBeLessThanOrEqual(windowsBetween(started, Date.now(), WINDOW));
    // every refusal from this address is counted: the 45 bogus keys, no key, a malformed one, the unseen key
    expect(countOf(rows)).toBe(keys.length + 3);
    const reasons = rows.reduce<Record<string, number>>((acc, r) => {
      for (const [k, v] of Object.entries((r.metadata as { reasons: Record<string, number> }).reasons)) acc[k] = (acc[k] ?? 0) + v;
      return acc;
    }, {});
    expect(reasons).toEqual({ unknown: N, throttled: keys.length - N + 3 });
    const counted = await refusalCounts(app);
    expect((counted.unknown ?? 0) - (countedBefore.unknown ?? 0)).toBe(N);
    expect((counted.throttled ?? 0) - (countedBefore.throttled ?? 0)).toBe(keys.length - N + 3);
    expect(rows[0]).toMatchObject({ ip: '127.0.0.1', targetType: 'address', targetId: '127.0.0.1', outcome: 'refused', tenantId: null });
    for (const row of rows) for (const key of keys) expect(JSON.stringify(row)).not.toContain(key);
  });

  it('throttles the export routes and the queue dashboard too, and another address not at all', async () => {
    expect.hasAssertions();
    const other = await TestApp.start({ AUTH_FAILURE_LIMIT: String(N) });
    try {
      // failures at every door count together
      expect((await fetch(`${other.baseUrl}/api/export/events`, { headers: { authorization: `Bearer ${bogusKey()}` } })).status).toBe(401);
      expect((await fetch(`${other.baseUrl}/admin/queues`, { headers: { authorization: `Bearer ${bogusKey()}` } })).status).toBe(401);
      for (let i = 2; i < N; i++) expect((await other.call('licenses.list', {}, bogusKey(), { method: 'GET' })).status).toBe(401);
      const exported = await fetch(`${other.baseUrl}/api/export/events`, { headers: { authorization: `Bearer ${bogusKey()}` } });
      expect(exported.status).toBe(429);
      expect(((await exported.json()) as { error: { code: string } }).error.code).toBe('TOO_MANY_REQUESTS');
      expectLimitHeaders(exported.headers, N, 60);
      const dashboard = await fetch(`${other.baseUrl}/admin/queues`, { headers: { authorization: `Bearer ${bogusKey()}` } });
      expect(dashboard.status).toBe(429);
      expectLimitHeaders(dashboard.headers, N, 60);

      const external = externalIPv4();
      if (external) {
        // the same API reached from another address of this machine
        const server: Server = createHttpServer(other.services);
        await new Promise<void>((resolve) => server.listen(0, external, resolve));
        try {
          const url = `http://${external}:${(server.address() as AddressInfo).port}`;
          const res = await fetch(`${url}/api/trpc/licenses.list`, { headers: { authorization: `Bearer ${bogusKey()}` } });
          expect(res.status).toBe(401);
        } finally {
          await new Promise<void>((resolve) => {
            server.close(() => resolve());
            server.closeAllConnections();
          });
        }
      }
    } finally {
      await other.close();
    }
  });

  it('counts failures of every process of a deployment in Redis', async () => {
    const prefix = `test:${randomUUID()}:`;
    const a = await TestApp.start({ AUTH_FAILURE_LIMIT: String(N), REDIS_KEY_PREFIX: prefix });
    const b = await TestApp.start({ AUTH_FAILURE_LIMIT: String(N), REDIS_KEY_PREFIX: prefix });
    try {
      const started = Date.now();
      const keys = Array.from({ length: N + 1 }, () => bogusKey());
      for (const [i, key] of keys.slice(0, N).entries()) {
        expect((await (i % 2 ? a : b).call('licenses.list', {}, key, { method: 'GET' })).status).toBe(401);
      }
      expect((await a.call('licenses.list', {}, keys[N]!, { method: 'GET' })).status).toBe(429);
      await a.services.authenticator.flush();
      await b.services.authenticator.flush();
      const rows = await refusalRows(a, keys.map((k) => k.slice(0, 16)));
      expect(countOf(rows)).toBe(N + 1);
      // both processes add to the same row of the window
      expect(rows.length).toBeLessThanOrEqual(windowsBetween(started, Date.now(), 60));
    } finally {
      await a.close();
      await b.close();
    }
  });
});

describe('failed authentication per key prefix', () => {
  it('refuses the attempt after M failures with one key prefix; other prefixes, and a key of that prefix accepted before, go on', async () => {
    const M = 3;
    const app = await TestApp.start({ AUTH_FAILURE_PREFIX_LIMIT: String(M) });
    try {
      const { tenantId } = await app.createTenant();
      const head = randomSecret(8);
      // a real key with that prefix, accepted before the failures
      const real = `tk_live_${head}${randomSecret(16)}`;
      await app.prisma.apiKey.create({ data: { tenantId, name: 'real', prefix: real.slice(0, 16), keyHash: hashApiKey(real), role: 'owner', environment: 'live' } });
      expect((await app.call('licenses.list', {}, real, { method: 'GET' })).status).toBe(200);
      for (let i = 0; i < M; i++) expect((await app.call('licenses.list', {}, bogusKey(head), { method: 'GET' })).status).toBe(401);
      const past = await app.call('licenses.list', {}, bogusKey(head), { method: 'GET' });
      expect(past.status).toBe(429);
      expectLimitHeaders(past.headers, M, 60);
      expect((await app.call('licenses.list', {}, bogusKey(), { method: 'GET' })).status).toBe(401);
      expect((await app.call('licenses.list', {}, real, { method: 'GET' })).status).toBe(200);
    } finally {
      await app.close();
    }
  });
});
