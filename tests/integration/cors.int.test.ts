import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { useTestApp, type TestApp } from '../helpers/harness';
import { licenseWithLimit } from '../helpers/quota';

const APP_ORIGIN = 'https://app.example.com';
const DEV_ORIGIN = 'http://localhost:5173';

const RATE_LIMIT_HEADERS = [
  'ratelimit-limit',
  'ratelimit-remaining',
  'ratelimit-reset',
  'x-ratelimit-limit',
  'x-ratelimit-remaining',
  'x-ratelimit-reset',
  'retry-after',
  'x-request-id',
];

/** Paths of every kind under /api: a tRPC mutation and query, an export, REST to come, anything else. */
const API_PATHS: [string, string][] = [
  ['/api/trpc/usage.trackEvent', 'POST'],
  ['/api/trpc/licenses.list', 'GET'],
  ['/api/export/events', 'GET'],
  ['/api/v1/licenses/lic_1', 'PATCH'],
  ['/api/other', 'DELETE'],
];

function preflight(app: TestApp, pathname: string, origin: string, method = 'POST', headers = 'authorization, content-type') {
  return fetch(`${app.baseUrl}${pathname}`, {
    method: 'OPTIONS',
    headers: { origin, 'access-control-request-method': method, 'access-control-request-headers': headers },
  });
}

function corsHeaderNames(headers: Headers): string[] {
  return [...headers.keys()].filter((name) => name.startsWith('access-control-'));
}

function listOf(value: string | null): string[] {
  return (value ?? '').split(',').map((s) => s.trim().toLowerCase()).filter(Boolean);
}

/** The count of a labelled series of tally_http_requests_total, from /metrics (loopback needs no token). */
async function requestCount(app: TestApp, procedure: string, status: string): Promise<number> {
  const text = await (await fetch(`${app.baseUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`tally_http_requests_total{procedure="${procedure}",status="${status}"}`));
  return line ? Number(line.split(' ').pop()) : 0;
}

describe('CORS with listed origins', () => {
  // Redis may answer slowly on a loaded box; a quota decided from PostgreSQL instead is not the point here.
  const app = useTestApp({ CORS_ALLOWED_ORIGINS: ` ${APP_ORIGIN} , ${DEV_ORIGIN}`, QUOTA_REDIS_TIMEOUT_MS: '10000' });
  let ownerKey: string;

  beforeAll(async () => {
    ({ ownerKey } = await app.createTenant());
  });

  it('answers a preflight from a listed origin on every /api path with 204 and that exact origin', async () => {
    for (const [pathname, method] of API_PATHS) {
      for (const origin of [APP_ORIGIN, DEV_ORIGIN]) {
        const res = await preflight(app, pathname, origin, method);
        const where = `${method} ${pathname} from ${origin}`;
        expect([where, res.status]).toEqual([where, 204]);
        expect(await res.text()).toBe('');
        expect(res.headers.get('access-control-allow-origin')).toBe(origin);
        expect(listOf(res.headers.get('vary'))).toContain('origin');
        expect(listOf(res.headers.get('access-control-allow-methods'))).toEqual(['get', 'post', 'put', 'patch', 'delete', 'options']);
        expect(listOf(res.headers.get('access-control-allow-headers'))).toEqual(
          expect.arrayContaining(['authorization', 'content-type', 'x-tally-tenant', 'x-tally-environment', 'x-request-id', 'idempotency-key', 'trpc-accept']),
        );
        expect(res.headers.get('access-control-max-age')).toBe('7200');
        // keys travel in the Authorization header, never as cookies: credentials are never allowed
        expect(res.headers.get('access-control-allow-credentials')).toBeNull();
      }
    }
  });

  it('refuses a preflight from any other origin with 403, a reason and no CORS header', async () => {
    const others = [
      'https://evil.example',
      'https://app.example.com.evil.example',
      'http://app.example.com', // another scheme is another origin
      'https://app.example.com:8443', // another port too
      'https://app.example.co',
      'http://localhost:5174',
      'null', // sandboxed frames and file:// pages
    ];
    for (const [pathname, method] of API_PATHS) {
      for (const origin of others) {
        const res = await preflight(app, pathname, origin, method);
        const where = `${method} ${pathname} from ${origin}`;
        expect([where, res.status]).toEqual([where, 403]);
        expect(corsHeaderNames(res.headers)).toEqual([]);
        const body = (await res.json()) as { error: { code: string; message: string } };
        expect(body.error.code).toBe('FORBIDDEN');
        expect(body.error.message).toMatch(/CORS_ALLOWED_ORIGINS/);
      }
    }
  });

  it('lets a listed origin read a real tRPC answer and its rate-limit headers, a quota 429 included', async () => {
    const { licenseId } = await licenseWithLimit(app, ownerKey, 'cors_call', 1);
    const track = () => app.call('usage.trackEvent', { licenseId, usageType: 'cors_call' }, ownerKey, { headers: { origin: APP_ORIGIN } });
    const admitted = await track();
    expect(admitted.status).toBe(200);
    const refused = await track();
    expect(refused.status).toBe(429);
    for (const res of [admitted, refused]) {
      expect(res.headers.get('access-control-allow-origin')).toBe(APP_ORIGIN);
      expect(listOf(res.headers.get('access-control-expose-headers'))).toEqual(RATE_LIMIT_HEADERS);
      expect(res.headers.get('access-control-allow-credentials')).toBeNull();
      // tRPC's own Vary joins Origin instead of replacing it
      expect(listOf(res.headers.get('vary'))).toEqual(expect.arrayContaining(['origin', 'trpc-accept', 'accept']));
      expect(res.headers.get('ratelimit-limit')).toBe('1');
    }
    expect(refused.headers.get('retry-after')).not.toBeNull();
    expect(refused.headers.get('x-ratelimit-remaining')).toBe('0');
  });

  it('adds the headers on every kind of /api answer: a tRPC batch, an export, an error, an unknown path', async () => {
    const batch = await fetch(`${app.baseUrl}/api/trpc/licenses.list,licenses.list?batch=1&input=${encodeURIComponent('{"0":{},"1":{}}')}`, {
      headers: { origin: DEV_ORIGIN, authorization: `Bearer ${ownerKey}` },
    });
    const exportAnswer = await fetch(`${app.baseUrl}/api/export/events?format=csv`, { headers: { origin: DEV_ORIGIN, authorization: `Bearer ${ownerKey}` } });
    const unauthenticated = await fetch(`${app.baseUrl}/api/trpc/licenses.list`, { headers: { origin: DEV_ORIGIN } });
    const unknown = await fetch(`${app.baseUrl}/api/other`, { headers: { origin: DEV_ORIGIN } });
    expect([batch.status, exportAnswer.status, unauthenticated.status, unknown.status]).toEqual([200, 400, 401, 404]);
    for (const res of [batch, exportAnswer, unauthenticated, unknown]) {
      expect(res.headers.get('access-control-allow-origin')).toBe(DEV_ORIGIN);
      expect(listOf(res.headers.get('access-control-expose-headers'))).toEqual(RATE_LIMIT_HEADERS);
      expect(listOf(res.headers.get('vary'))).toContain('origin');
      await res.arrayBuffer();
    }
  });

  it('serves a request from an unlisted origin (or none) as before, without CORS headers', async () => {
    for (const headers of [{ origin: 'https://evil.example' }, { origin: 'null' }, {}] as Record<string, string>[]) {
      const res = await app.call('licenses.list', {}, ownerKey, { method: 'GET', headers });
      expect(res.status).toBe(200);
      expect(Array.isArray(res.data.items ?? res.data)).toBe(true);
      expect(corsHeaderNames(res.headers)).toEqual([]);
      // the answer depends on Origin once origins are listed: caches must keep them apart
      expect(listOf(res.headers.get('vary'))).toContain('origin');
    }
  });

  it('leaves paths outside /api alone', async () => {
    for (const pathname of ['/health', '/metrics']) {
      const res = await fetch(`${app.baseUrl}${pathname}`, { headers: { origin: APP_ORIGIN } });
      expect(res.status).toBe(200);
      expect(corsHeaderNames(res.headers)).toEqual([]);
      await res.arrayBuffer();
    }
  });
});

describe('preflights and the authentication throttle', () => {
  // A budget of 3 failures per address (every test client is 127.0.0.1): spent, it throttles
  // even valid keys, so this app is of its own.
  const app = useTestApp({ CORS_ALLOWED_ORIGINS: APP_ORIGIN, AUTH_FAILURE_LIMIT: '3', AUTH_FAILURE_PREFIX_LIMIT: '3' });

  it('answers preflights before authentication: they spend no authentication-failure budget and are labelled OPTIONS in /metrics', async () => {
    const before = await requestCount(app, 'OPTIONS', '204');
    for (let i = 0; i < 10; i++) expect((await preflight(app, '/api/trpc/licenses.list', APP_ORIGIN, 'GET')).status).toBe(204);
    for (let i = 0; i < 10; i++) expect((await preflight(app, '/api/export/events', 'https://evil.example', 'GET')).status).toBe(403);
    // the budget of 3 failures is whole: three bad keys are told 401, the fourth is throttled
    const bad = 'tk_live_' + 'x'.repeat(24);
    for (let i = 0; i < 3; i++) expect((await app.call('licenses.list', {}, bad, { method: 'GET' })).status).toBe(401);
    expect((await app.call('licenses.list', {}, bad, { method: 'GET' })).status).toBe(429);
    expect(await requestCount(app, 'OPTIONS', '204')).toBe(before + 10);
    expect(await requestCount(app, 'OPTIONS', '403')).toBeGreaterThanOrEqual(10);
    // a preflight is not a call of the procedure its path names
    expect(await requestCount(app, 'licenses.list', '204')).toBe(0);
    expect(await requestCount(app, '/api/export/events', '403')).toBe(0);
  });

});

describe('CORS by default (CORS_ALLOWED_ORIGINS unset): same origin only', () => {
  const app = useTestApp({ CORS_ALLOWED_ORIGINS: '' });
  let ownerKey: string;

  beforeAll(async () => {
    ({ ownerKey } = await app.createTenant());
  });

  it('refuses every preflight without a CORS header and says how to allow an origin', async () => {
    for (const [pathname, method] of API_PATHS) {
      const res = await preflight(app, pathname, APP_ORIGIN, method);
      expect([pathname, res.status]).toEqual([pathname, 403]);
      expect(corsHeaderNames(res.headers)).toEqual([]);
      const body = (await res.json()) as { error: { message: string } };
      expect(body.error.message).toMatch(/own origin only.*CORS_ALLOWED_ORIGINS/);
    }
  });

  it('sends no CORS header and no Vary: Origin on actual requests', async () => {
    const res = await app.call('licenses.list', {}, ownerKey, { method: 'GET', headers: { origin: APP_ORIGIN } });
    expect(res.status).toBe(200);
    expect(corsHeaderNames(res.headers)).toEqual([]);
    expect(listOf(res.headers.get('vary'))).not.toContain('origin');
    const exportAnswer = await fetch(`${app.baseUrl}/api/export/events`, { headers: { origin: APP_ORIGIN } });
    expect(exportAnswer.status).toBe(401);
    expect(corsHeaderNames(exportAnswer.headers)).toEqual([]);
  });
});

describe('CORS_ALLOWED_ORIGINS at boot', () => {
  it('stops `npm start` with a clear message for a wildcard, before touching any server', () => {
    const root = path.resolve(__dirname, '..', '..');
    const result = spawnSync(process.execPath, ['--require', 'tsx/cjs', 'src/main.ts'], {
      cwd: root,
      // an unreachable database: a boot that got past the configuration would fail differently
      env: { ...process.env, CORS_ALLOWED_ORIGINS: '*', DATABASE_URL: 'postgresql://postgres@127.0.0.1:1/none', LOG_LEVEL: 'silent' },
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/Invalid configuration/);
    expect(result.stderr).toMatch(/CORS_ALLOWED_ORIGINS: "\*": a wildcard is not allowed/);
  }, 70_000);
});
