import http from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import Fastify, { type FastifyReply, type FastifyRequest } from 'fastify';
import { Hono, type Context } from 'hono';
import { Tally, type TallyErrorReport } from '../../sdk/src/index';
import type { BillingOptions } from '../../sdk/src/middleware';
import { tallyExpress } from '../../sdk/src/express';
import { tallyFastify } from '../../sdk/src/fastify';
import { tallyHono, withTally } from '../../sdk/src/hono';
import { useTestApp } from '../helpers/harness';
import { licenseWithLimit } from '../helpers/quota';
import { TcpProxy } from '../helpers/tcp-proxy';

/**
 * One contract for every adapter (Express, Fastify, Hono, plain fetch handlers), each serving the
 * same small API against a real Tally: billable and free routes, the request id, quota refusals,
 * quantities read from the response, and Tally being away.
 */
const app = useTestApp();

interface Answer {
  status: number;
  headers: Headers;
  body: any;
}
interface Served {
  request(method: string, path: string, headers?: Record<string, string>): Promise<Answer>;
  /** Handler runs per path, to prove a refused request never reached its handler. */
  handled: Map<string, number>;
  close(): Promise<void>;
}
type Common = Omit<BillingOptions<unknown, unknown>, 'licenseId' | 'quantity' | 'userId'>;

/** Each adapter's way to read a request header and a response header. */
interface Adapter {
  name: string;
  serve(options: Common): Promise<Served>;
}

const BILLABLE = ['POST /v1/generate', 'GET /v1/items/:id', '/v1/search/*', 'GET /auth/*'];
const ROUTES: [method: string, path: string][] = [
  ['POST', '/v1/generate'],
  ['GET', '/v1/items/:id'],
  ['GET', '/v1/search/*'],
  ['GET', '/v1/free'],
  ['GET', '/auth/login'],
  ['GET', '/health'],
];

/** What every handler answers: POST /v1/generate says how many tokens it used in a header. */
function answerOf(method: string, path: string): { status: number; body: unknown; tokens?: string } {
  if (method === 'POST' && path === '/v1/generate') return { status: 201, body: { text: 'hello' }, tokens: '42.5' };
  return { status: 200, body: { ok: true } };
}

async function listen(server: http.Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function overHttp(baseUrl: string, method: string, path: string, headers: Record<string, string> = {}): Promise<Answer> {
  const res = await fetch(`${baseUrl}${path}`, { method, headers });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : null };
}

const adapters: Adapter[] = [
  {
    name: 'Express',
    async serve(options) {
      const handled = new Map<string, number>();
      const api = express();
      api.use(
        tallyExpress({
          ...options,
          licenseId: (req) => req.header('x-license-id'),
          userId: (req) => req.header('x-user-id'),
          quantity: (_req, res) => res.getHeader('x-tokens-used') as string | undefined,
        }),
      );
      for (const [method, route] of ROUTES) {
        const expressPath = route.replace('/*', '/*rest');
        api[method.toLowerCase() as 'get' | 'post'](expressPath, (_req, res) => {
          handled.set(route, (handled.get(route) ?? 0) + 1);
          const a = answerOf(method, route);
          if (a.tokens) res.setHeader('x-tokens-used', a.tokens);
          res.status(a.status).json(a.body);
        });
      }
      const server = http.createServer(api);
      const baseUrl = await listen(server);
      return {
        handled,
        request: (m, p, h) => overHttp(baseUrl, m, p, h),
        close: () => new Promise<void>((resolve) => server.close(() => resolve())),
      };
    },
  },
  {
    name: 'Fastify',
    async serve(options) {
      const handled = new Map<string, number>();
      const api = Fastify();
      await api.register(tallyFastify, {
        ...options,
        licenseId: (req: FastifyRequest) => req.headers['x-license-id'] as string | undefined,
        userId: (req: FastifyRequest) => req.headers['x-user-id'] as string | undefined,
        quantity: (_req: FastifyRequest, reply: FastifyReply) => reply.getHeader('x-tokens-used') as string | undefined,
      });
      for (const [method, route] of ROUTES) {
        api.route({
          method: method as 'GET' | 'POST',
          url: route,
          handler: async (_req, reply) => {
            handled.set(route, (handled.get(route) ?? 0) + 1);
            const a = answerOf(method, route);
            if (a.tokens) void reply.header('x-tokens-used', a.tokens);
            return reply.code(a.status).send(a.body);
          },
        });
      }
      const baseUrl = await api.listen({ port: 0, host: '127.0.0.1' });
      return { handled, request: (m, p, h) => overHttp(baseUrl, m, p, h), close: () => api.close() };
    },
  },
  {
    name: 'Hono',
    async serve(options) {
      const handled = new Map<string, number>();
      const api = new Hono();
      api.use(
        '*',
        tallyHono({
          ...options,
          licenseId: (c: Context) => c.req.header('x-license-id'),
          userId: (c: Context) => c.req.header('x-user-id'),
          quantity: (c: Context) => c.res.headers.get('x-tokens-used'),
        }),
      );
      for (const [method, route] of ROUTES) {
        api.on(method, route, (c) => {
          handled.set(route, (handled.get(route) ?? 0) + 1);
          const a = answerOf(method, route);
          return c.json(a.body, a.status as 200, a.tokens ? { 'x-tokens-used': a.tokens } : {});
        });
      }
      // Hono's own fetch handler, called as Bun, Deno or a Worker would call it.
      return {
        handled,
        request: async (method, path, headers = {}) => {
          const res = await api.fetch(new Request(`http://api.local${path}`, { method, headers }));
          const text = await res.text();
          return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : null };
        },
        close: async () => undefined,
      };
    },
  },
  {
    name: 'fetch handler (withTally)',
    async serve(options) {
      const handled = new Map<string, number>();
      const patterns = ROUTES.map(([method, route]) => ({ method, route, regex: new RegExp(`^${route.replace(':id', '[^/]+').replace('*', '.+')}$`) }));
      const handler = withTally(
        {
          ...options,
          licenseId: (req: Request) => req.headers.get('x-license-id'),
          userId: (req: Request) => req.headers.get('x-user-id'),
          quantity: (_req: Request, res: Response) => res.headers.get('x-tokens-used'),
        },
        (request: Request) => {
          const path = new URL(request.url).pathname;
          const hit = patterns.find((p) => p.method === request.method && p.regex.test(path));
          if (!hit) return Response.json({ error: 'not found' }, { status: 404 });
          handled.set(hit.route, (handled.get(hit.route) ?? 0) + 1);
          const a = answerOf(hit.method, hit.route);
          return Response.json(a.body, { status: a.status, headers: a.tokens ? { 'x-tokens-used': a.tokens } : {} });
        },
      );
      return {
        handled,
        request: async (method, path, headers = {}) => {
          const res = await handler(new Request(`http://api.local${path}`, { method, headers }));
          const text = await res.text();
          return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : null };
        },
        close: async () => undefined,
      };
    },
  },
];

const tallies: Tally[] = [];
const servers: Served[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
  await Promise.all(tallies.splice(0).map((t) => t.shutdown({ timeoutMs: 500 })));
});

function tallyFor(apiKey: string, baseUrl = app.baseUrl): { tally: Tally; reports: TallyErrorReport[] } {
  const reports: TallyErrorReport[] = [];
  const tally = new Tally({ apiKey, baseUrl, flushIntervalMs: 3_600_000, retry: { initialDelayMs: 20, maxDelayMs: 200 }, onError: (r) => reports.push(r) });
  tallies.push(tally);
  return { tally, reports };
}

/** Waits until the middleware has handed `n` events to the SDK (it records after the response). */
async function tracked(tally: Tally, n: number): Promise<void> {
  for (let i = 0; i < 500 && tally.stats().tracked < n; i++) await new Promise((resolve) => setTimeout(resolve, 10));
  expect(tally.stats().tracked).toBe(n);
}

async function eventsOf(licenseId: string) {
  const { rows } = await app.services.db.pool.query<{ route: string; method: string; status_code: number; duration_ms: number; user_id: string | null; quantity: string; idempotency_key: string }>(
    `SELECT route, method, status_code, duration_ms, user_id, trim_scale(quantity)::text AS quantity, idempotency_key
       FROM usage_events WHERE license_id = $1 ORDER BY route, received_at`,
    [licenseId],
  );
  return rows;
}

describe.each(adapters)('$name', (adapter) => {
  async function serve(tally: Tally, options: Partial<Common> = {}): Promise<Served> {
    const served = await adapter.serve({ tally, billableRoutes: BILLABLE, ...options });
    servers.push(served);
    return served;
  }

  it('bills billable routes with their pattern, method, status, duration, user and quantity; never free or excluded ones', async () => {
    const { ownerKey } = await app.createTenant();
    const { id: licenseId } = await app.createLicense(ownerKey);
    const { tally, reports } = tallyFor(ownerKey);
    const api = await serve(tally);
    const who = { 'x-license-id': licenseId, 'x-user-id': 'user-7' };

    expect((await api.request('POST', '/v1/generate', who)).status).toBe(201);
    expect((await api.request('GET', '/v1/items/42', who)).status).toBe(200);
    expect((await api.request('GET', '/v1/items/43?full=1', who)).status).toBe(200);
    expect((await api.request('GET', '/v1/search/a/b', who)).status).toBe(200);
    expect((await api.request('GET', '/v1/free', who)).status).toBe(200);
    expect((await api.request('GET', '/auth/login', who)).status).toBe(200); // billable pattern, but excluded by default
    expect((await api.request('GET', '/health', who)).status).toBe(200);
    expect((await api.request('GET', '/v1/items/44')).status).toBe(200); // no license: not billed
    await tracked(tally, 4);
    await tally.flush();

    const events = await eventsOf(licenseId);
    expect(events.map(({ route, method, status_code, user_id, quantity }) => ({ route, method, status_code, user_id, quantity }))).toEqual([
      { route: '/v1/generate', method: 'POST', status_code: 201, user_id: 'user-7', quantity: '42.5' },
      { route: '/v1/items/:id', method: 'GET', status_code: 200, user_id: 'user-7', quantity: '1' },
      { route: '/v1/items/:id', method: 'GET', status_code: 200, user_id: 'user-7', quantity: '1' },
      { route: '/v1/search/*', method: 'GET', status_code: 200, user_id: 'user-7', quantity: '1' },
    ]);
    expect(events.every((e) => Number.isInteger(e.duration_ms) && e.duration_ms >= 0)).toBe(true);
    expect(reports).toEqual([]);
    expect(api.handled.get('/auth/login')).toBe(1);
  });

  it('echoes X-Request-ID, bills a retried request id once, and replaces a malformed one', async () => {
    const { ownerKey } = await app.createTenant();
    const { id: licenseId } = await app.createLicense(ownerKey);
    const { tally, reports } = tallyFor(ownerKey);
    const api = await serve(tally);
    const who = { 'x-license-id': licenseId, 'x-request-id': 'req-2026-abc' };

    const first = await api.request('GET', '/v1/items/1', who);
    const retry = await api.request('GET', '/v1/items/1', who);
    expect([first.headers.get('x-request-id'), retry.headers.get('x-request-id')]).toEqual(['req-2026-abc', 'req-2026-abc']);
    const bad = await api.request('GET', '/v1/items/1', { 'x-license-id': licenseId, 'x-request-id': 'not valid!' });
    const none = await api.request('GET', '/v1/free');
    expect(bad.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
    expect(none.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
    await tracked(tally, 3);
    await tally.flush();

    const keys = (await eventsOf(licenseId)).map((e) => e.idempotency_key).sort();
    expect(keys).toEqual([`req:${licenseId}:${bad.headers.get('x-request-id')}`, `req:${licenseId}:req-2026-abc`].sort());
    // The retry is a duplicate, not an error, even though its duration (and so its payload) differs.
    expect(tally.stats()).toMatchObject({ accepted: 2, duplicates: 1, rejected: 0 });
    expect(reports).toEqual([]);
  });

  it('trustRequestId: false ignores the caller\'s id: every request is billed under an id of its own', async () => {
    const { ownerKey } = await app.createTenant();
    const { id: licenseId } = await app.createLicense(ownerKey);
    const { tally } = tallyFor(ownerKey);
    const api = await serve(tally, { trustRequestId: false });
    const who = { 'x-license-id': licenseId, 'x-request-id': 'same-id' };
    const answers = [await api.request('GET', '/v1/items/1', who), await api.request('GET', '/v1/items/1', who)];
    expect(answers.map((a) => a.headers.get('x-request-id'))).not.toContain('same-id');
    await tracked(tally, 2);
    await tally.flush();
    expect(await eventsOf(licenseId)).toHaveLength(2);
  });

  it('enforce: answers 429 with Tally\'s rate-limit headers once the quota is used up, without running the handler', async () => {
    const { ownerKey } = await app.createTenant();
    const { licenseId } = await licenseWithLimit(app, ownerKey, 'api_call', 2);
    const { tally } = tallyFor(ownerKey);
    const api = await serve(tally, { enforce: true });
    const who = { 'x-license-id': licenseId };

    for (let i = 1; i <= 2; i++) {
      expect((await api.request('GET', `/v1/items/${i}`, who)).status).toBe(200);
      await tracked(tally, i);
      await tally.flush(); // Tally counts it before the next check
    }
    const refused = await api.request('GET', '/v1/items/3', { ...who, 'x-request-id': 'r-3' });
    expect(refused.status).toBe(429);
    expect(refused.body).toMatchObject({ error: { code: 'QUOTA_EXCEEDED', usageType: 'api_call', period: 'daily', limit: '2', remaining: '0' } });
    const h = (name: string) => refused.headers.get(name);
    expect([h('ratelimit-limit'), h('ratelimit-remaining'), h('x-ratelimit-limit'), h('x-ratelimit-remaining'), h('x-request-id')]).toEqual(['2', '0', '2', '0', 'r-3']);
    expect(Number(h('retry-after'))).toBeGreaterThan(0);
    expect(Number(h('ratelimit-reset'))).toBe(Number(h('retry-after')));
    expect(Number(h('x-ratelimit-reset')) * 1000).toBe(Date.parse(refused.body.error.resetAt));
    expect(api.handled.get('/v1/items/:id')).toBe(2);
    // A free route is never checked.
    expect((await api.request('GET', '/v1/free', who)).status).toBe(200);
    await tally.flush();
    expect(await eventsOf(licenseId)).toHaveLength(2);
  });

  it('Tally unreachable: failOpen (default) serves and bills later; failOpen false answers 503', async () => {
    const { ownerKey } = await app.createTenant();
    const { id: licenseId } = await app.createLicense(ownerKey);
    const proxy = await TcpProxy.start(app.baseUrl);
    await proxy.stop();
    try {
      const { tally } = tallyFor(ownerKey, proxy.url);
      const open = await serve(tally, { enforce: true });
      const closed = await serve(tally, { enforce: true, failOpen: false });
      const who = { 'x-license-id': licenseId };

      expect((await open.request('GET', '/v1/items/1', who)).status).toBe(200);
      const refused = await closed.request('GET', '/v1/items/2', who);
      expect(refused.status).toBe(503);
      expect(refused.body).toEqual({ error: { code: 'USAGE_SERVICE_UNAVAILABLE', message: expect.any(String) } });
      expect(closed.handled.get('/v1/items/:id')).toBeUndefined();
      await tracked(tally, 1);

      await proxy.listen(); // Tally is back: what was served is billed
      await tally.flush();
      expect((await eventsOf(licenseId)).map((e) => e.route)).toEqual(['/v1/items/:id']);
    } finally {
      await proxy.stop();
    }
  });
});

describe('Fastify, registered twice on one instance', () => {
  it('each registration keeps its own decision on the request and bills its own routes once', async () => {
    const { ownerKey } = await app.createTenant();
    const { id: first } = await app.createLicense(ownerKey);
    const { id: second } = await app.createLicense(ownerKey);
    const { tally, reports } = tallyFor(ownerKey);
    const api = Fastify();
    await api.register(tallyFastify, { tally, billableRoutes: ['GET /v1/a', 'GET /v1/both'], licenseId: () => first });
    await api.register(tallyFastify, { tally, billableRoutes: ['GET /v1/b', 'GET /v1/both'], licenseId: () => second, usageType: () => 'search' });
    for (const url of ['/v1/a', '/v1/b', '/v1/both']) api.get(url, async () => ({ ok: true }));
    const baseUrl = await api.listen({ port: 0, host: '127.0.0.1' });
    servers.push({ handled: new Map(), request: (m, p, h) => overHttp(baseUrl, m, p, h), close: () => api.close() });

    for (const path of ['/v1/a', '/v1/b', '/v1/both']) expect((await overHttp(baseUrl, 'GET', path, { 'x-request-id': `id${path.replaceAll('/', '-')}` })).status).toBe(200);
    await tracked(tally, 4);
    await tally.flush();

    expect((await eventsOf(first)).map((e) => [e.route, e.idempotency_key])).toEqual([
      ['/v1/a', `req:${first}:id-v1-a`],
      ['/v1/both', `req:${first}:id-v1-both`],
    ]);
    expect((await eventsOf(second)).map((e) => [e.route, e.idempotency_key])).toEqual([
      ['/v1/b', `req:${second}:id-v1-b`],
      ['/v1/both', `req:${second}:id-v1-both`],
    ]);
    const { rows } = await app.services.db.pool.query<{ license_id: string; usage_type: string }>(
      'SELECT DISTINCT license_id, usage_type FROM usage_events WHERE license_id = ANY($1) ORDER BY usage_type',
      [[first, second]],
    );
    expect(rows).toEqual([
      { license_id: first, usage_type: 'api_call' },
      { license_id: second, usage_type: 'search' },
    ]);
    expect(reports).toEqual([]);
  });
});
