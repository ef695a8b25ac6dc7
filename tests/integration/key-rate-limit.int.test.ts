import { randomUUID } from 'node:crypto';
import { TestApp, useTestApp } from '../helpers/harness';
import { closeServices } from '../../src/app';

const app = useTestApp();
let ownerKey: string;
let licenseId: string;
beforeAll(async () => {
  ({ ownerKey } = await app.createTenant());
  ({ id: licenseId } = await app.createLicense(ownerKey));
});

async function keyWithLimit(rateLimitPerHour?: number, role: 'owner' | 'ingest' | 'read' = 'owner') {
  const res = await app.call<{ key: string; rateLimitPerHour: number | null }>('apiKeys.create', { name: 'limited', role, ...(rateLimitPerHour ? { rateLimitPerHour } : {}) }, ownerKey);
  expect(res.status).toBe(200);
  expect(res.data.rateLimitPerHour).toBe(rateLimitPerHour ?? null);
  return res.data.key;
}

const list = (key: string) => app.call('licenses.list', {}, key, { method: 'GET' });

function expectRateLimited(res: { status: number; headers: Headers; body: { error?: { message: string; data: { code: string } } } }, limit: number) {
  expect(res.status).toBe(429);
  expect(res.body.error?.data.code).toBe('TOO_MANY_REQUESTS');
  expect(res.body.error?.message).toMatch(`rate limit of ${limit} calls per hour`);
  const retryAfter = Number(res.headers.get('retry-after'));
  expect(retryAfter).toBeGreaterThanOrEqual(1);
  expect(retryAfter).toBeLessThanOrEqual(3600);
  expect(res.headers.get('ratelimit-limit')).toBe(String(limit));
  expect(res.headers.get('ratelimit-remaining')).toBe('0');
  expect(res.headers.get('ratelimit-reset')).toBe(String(retryAfter));
  expect(res.headers.get('x-ratelimit-limit')).toBe(String(limit));
  expect(res.headers.get('x-ratelimit-remaining')).toBe('0');
  expect(Number(res.headers.get('x-ratelimit-reset'))).toBeGreaterThan(Date.now() / 1000);
}

describe('rateLimitPerHour of an API key', () => {
  it('a limit of 1: one call, then 429 with Retry-After and rate-limit headers', async () => {
    const counted = async () => (await app.services.metrics.authRefusals.get()).values.find((v) => v.labels.reason === 'rate_limited')?.value ?? 0;
    const before = await counted();
    const key = await keyWithLimit(1);
    expect((await list(key)).status).toBe(200);
    expectRateLimited(await list(key), 1);
    // single-event ingest, the hot path, is limited the same way
    expectRateLimited(await app.call('usage.trackEvent', { licenseId, usageType: 'api_call' }, key), 1);
    expect((await counted()) - before).toBe(2);
  });

  it('a limit of N allows N calls, also when they arrive at once, and refuses the N+1st', async () => {
    const N = 7;
    const key = await keyWithLimit(N);
    const answers = await Promise.all(Array.from({ length: N + 3 }, () => list(key)));
    expect(answers.filter((r) => r.status === 200)).toHaveLength(N);
    expect(answers.filter((r) => r.status === 429)).toHaveLength(3);
    const again = await keyWithLimit(N);
    for (let i = 0; i < N; i++) expect((await list(again)).status).toBe(200);
    expectRateLimited(await list(again), N);
  });

  it('a key without a limit is not limited, and one key at its limit leaves the others alone', async () => {
    const free = await keyWithLimit(undefined, 'ingest');
    for (let i = 0; i < 30; i++) {
      const res = await app.call('usage.trackEvent', { licenseId, usageType: 'api_call', idempotencyKey: randomUUID() }, free);
      expect(res.status).toBe(200);
    }
    const spent = await keyWithLimit(1);
    expect((await list(spent)).status).toBe(200);
    expect((await list(spent)).status).toBe(429);
    expect((await list(ownerKey)).status).toBe(200);
  });

  it('holds across processes (counted in Redis) and at the export route', async () => {
    const twin = await TestApp.start({ REDIS_KEY_PREFIX: app.prefix });
    try {
      const key = await keyWithLimit(2, 'read');
      expect((await list(key)).status).toBe(200);
      expect((await twin.call('licenses.list', {}, key, { method: 'GET' })).status).toBe(200);
      expectRateLimited(await twin.call('licenses.list', {}, key, { method: 'GET' }), 2);
      const exported = await fetch(`${app.baseUrl}/api/export/events?startDate=2026-01-01&endDate=2026-01-02`, { headers: { authorization: `Bearer ${key}` } });
      expect(exported.status).toBe(429);
      expect(exported.headers.get('ratelimit-limit')).toBe('2');
      expect(Number(exported.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    } finally {
      // the twin shares the prefix: leave the keys to the app's own close
      await new Promise<void>((resolve) => {
        twin.server.close(() => resolve());
        twin.server.closeAllConnections();
      });
      await closeServices(twin.services);
    }
  });
});
