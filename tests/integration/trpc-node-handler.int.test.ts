import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import { createHTTPHandler } from '@trpc/server/adapters/standalone';
import { appRouter } from '../../src/server/router';
import { createContextFactory } from '../../src/server/context';
import { TestApp } from '../helpers/harness';
import { createIsolatedDatabase } from '../helpers/isolated-db';

/**
 * Single JSON mutations skip tRPC's fetch adapter (src/server/trpc-node-handler.ts). Every
 * request here is sent both to the API and to a server running tRPC's own standalone adapter
 * on the same services; the answers (status, headers clients read, body) must be the same.
 */
let app: TestApp;
let reference: http.Server;
let referenceUrl: string;
let ownerKey: string;
let readKey: string;
let licenseId: string;

// A database of its own: platform-wide answers (analytics.platform, tenants.list) are compared
// between two calls, and other test files would write between them in the run's shared one;
let db: ReturnType<typeof createIsolatedDatabase>;

beforeAll(async () => {
  db = createIsolatedDatabase('trpc_handler');
  // key usage (lastUsedAt, request counts, shown by analytics.platform) is not written mid-test
  app = await TestApp.start({ DATABASE_URL: db.url, API_KEY_USAGE_FLUSH_SECONDS: '3600' });
  ({ ownerKey } = await app.createTenant());
  ({ key: readKey } = await app.createKey(ownerKey, 'read'));
  ({ id: licenseId } = await app.createLicense(ownerKey));
  const adapter = createHTTPHandler({
    router: appRouter,
    basePath: '/api/trpc/',
    createContext: createContextFactory(app.services),
    maxBodySize: app.services.env.MAX_BODY_BYTES,
  });
  reference = http.createServer((req, res) => {
    // as src/server/http.ts does for curl's default content type
    const type = req.headers['content-type'];
    if (req.method === 'POST' && (!type || type.startsWith('application/x-www-form-urlencoded'))) req.headers['content-type'] = 'application/json';
    adapter(req, res);
  });
  await new Promise<void>((resolve) => reference.listen(0, '127.0.0.1', resolve));
  referenceUrl = `http://127.0.0.1:${(reference.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await new Promise<void>((resolve) => {
    reference.close(() => resolve());
    reference.closeAllConnections();
  });
  await app.close();
  await db.drop();
});

interface Sent {
  path: string;
  body?: string;
  headers?: Record<string, string>;
  method?: 'GET' | 'POST';
}

async function send(base: string, { path, body, headers = {}, method = 'POST' }: Sent) {
  const res = await fetch(`${base}/api/trpc/${path}`, { method, headers, body });
  const text = await res.text();
  return {
    status: res.status,
    contentType: res.headers.get('content-type'),
    vary: res.headers.get('vary'),
    allow: res.headers.get('allow'),
    // ids and times differ between the two calls; everything else must not
    body: text
      .replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g, '<uuid>')
      // an on-demand run's job id ends in a random tag (billing.reportNow)
      .replace(/~now-[0-9a-f]{8}/g, '~now-<tag>')
      .replace(/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z/g, '<time>'),
  };
}

/** Sends `make(tag)` to both servers; `tag` keeps idempotency keys apart where that matters. */
async function expectSameAnswer(make: (tag: string) => Sent) {
  const viaAdapter = await send(referenceUrl, make('adapter'));
  const direct = await send(app.baseUrl, make('direct'));
  expect(direct).toEqual(viaAdapter);
  return direct;
}

const json = (key: string | null, extra: Record<string, string> = {}) => ({
  'content-type': 'application/json',
  ...(key ? { authorization: `Bearer ${key}` } : {}),
  ...extra,
});
const event = (extra: Record<string, unknown> = {}) => JSON.stringify({ licenseId, usageType: 'equal', ...extra });

it.each<[string, (tag: string) => Sent, number]>([
  ['an accepted event', (t) => ({ path: 'usage.trackEvent', body: event({ idempotencyKey: `ok-${t}` }), headers: json(ownerKey) }), 200],
  ['invalid input (zod issues)', () => ({ path: 'usage.trackEvent', body: event({ usageType: 'A!' }), headers: json(ownerKey) }), 400],
  ['an unknown field', () => ({ path: 'usage.trackEvent', body: event({ nope: 1 }), headers: json(ownerKey) }), 400],
  ['a body that is not JSON', () => ({ path: 'usage.trackEvent', body: '{not json', headers: json(ownerKey) }), 400],
  ['an empty body', () => ({ path: 'usage.trackEvent', body: '', headers: json(ownerKey) }), 400],
  ['a byte-order mark before the JSON', (t) => ({ path: 'usage.trackEvent', body: `\ufeff${event({ idempotencyKey: `bom-${t}` })}`, headers: json(ownerKey) }), 200],
  ['no key', () => ({ path: 'usage.trackEvent', body: event(), headers: json(null) }), 401],
  ['a malformed key', () => ({ path: 'usage.trackEvent', body: event(), headers: json(null, { authorization: 'Bearer nope' }) }), 401],
  // (not a usage.* call: a refusal is audited, and another suite counts usage.* audit rows)
  ['a role without the right', () => ({ path: 'licenses.create', body: JSON.stringify({ name: 'No', plan: 'starter' }), headers: json(readKey) }), 403],
  ['another tenant\'s license', () => ({ path: 'usage.trackEvent', body: event({ licenseId: randomUUID() }), headers: json(ownerKey) }), 404],
  ['an event too old', () => ({ path: 'usage.trackEvent', body: event({ occurredAt: '2001-01-01T00:00:00Z' }), headers: json(ownerKey) }), 400],
  ['curl\'s form content type', (t) => ({ path: 'usage.trackEvent', body: event({ idempotencyKey: `form-${t}` }), headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Bearer ${ownerKey}` } }), 200],
  ['JSON with a charset', (t) => ({ path: 'usage.trackEvent', body: event({ idempotencyKey: `cs-${t}` }), headers: json(ownerKey, { 'content-type': 'Application/JSON; charset=utf-8' }) }), 200],
  ['an unsupported content type', () => ({ path: 'usage.trackEvent', body: event(), headers: json(ownerKey, { 'content-type': 'text/plain' }) }), 415],
  ['an unknown procedure', () => ({ path: 'usage.nothing', body: '{}', headers: json(ownerKey) }), 404],
  ['a POST to a query', () => ({ path: 'licenses.get', body: JSON.stringify({ id: licenseId }), headers: json(ownerKey) }), 405],
  ['a GET of a mutation', () => ({ path: 'usage.trackEvent', method: 'GET', headers: { authorization: `Bearer ${ownerKey}` } }), 405],
  ['a batch of events with a bad one', (t) => ({ path: 'usage.trackEvents', body: JSON.stringify({ events: [JSON.parse(event({ idempotencyKey: `b-${t}` })), { licenseId, usageType: 'Q!' }] }), headers: json(ownerKey) }), 200],
  ['a body over the limit', () => ({ path: 'usage.trackEvents', body: JSON.stringify({ events: [{ licenseId, usageType: 'x', properties: { pad: 'x'.repeat(1_100_000) } }] }), headers: json(ownerKey) }), 413],
  ['a body over the limit without a key', () => ({ path: 'usage.trackEvents', body: 'x'.repeat(1_100_000), headers: json(null) }), 401],
  ['a mutation that is audited', () => ({ path: 'licenses.create', body: JSON.stringify({ name: 'Equal', plan: 'starter' }), headers: json(ownerKey) }), 200],
  ['a tRPC batch call', (t) => ({ path: 'usage.trackEvent?batch=1', body: JSON.stringify({ 0: JSON.parse(event({ idempotencyKey: `tb-${t}` })) }), headers: json(ownerKey) }), 200],
  ['a query', () => ({ path: `licenses.get?input=${encodeURIComponent(JSON.stringify({ id: licenseId }))}`, method: 'GET', headers: { authorization: `Bearer ${readKey}` } }), 200],
  ['an analytics query', () => ({ path: `analytics.usage?input=${encodeURIComponent(JSON.stringify({ licenseId, startDate: '2026-01-01', endDate: '2026-01-31', granularity: 'weekly', timezone: 'Asia/Kolkata' }))}`, method: 'GET', headers: { authorization: `Bearer ${ownerKey}` } }), 200],
  ['a query with invalid input', () => ({ path: `analytics.usage?input=${encodeURIComponent(JSON.stringify({ licenseId, startDate: '2026-02-30', endDate: '2026-01-31', granularity: 'daily' }))}`, method: 'GET', headers: { authorization: `Bearer ${ownerKey}` } }), 400],
  ['a query whose input is not JSON', () => ({ path: 'licenses.get?input=%7Bnot', method: 'GET', headers: { authorization: `Bearer ${ownerKey}` } }), 400],
  ['a query without its input', () => ({ path: 'licenses.get', method: 'GET', headers: { authorization: `Bearer ${ownerKey}` } }), 400],
  ['a query with an empty input', () => ({ path: 'licenses.get?input=', method: 'GET', headers: { authorization: `Bearer ${ownerKey}` } }), 400],
  ['a query with no key', () => ({ path: `licenses.get?input=${encodeURIComponent(JSON.stringify({ id: licenseId }))}`, method: 'GET' }), 401],
  ['a query of another tenant\'s license', () => ({ path: `licenses.get?input=${encodeURIComponent(JSON.stringify({ id: randomUUID() }))}`, method: 'GET', headers: { authorization: `Bearer ${ownerKey}` } }), 404],
  ['a query with another parameter', () => ({ path: `licenses.get?input=${encodeURIComponent(JSON.stringify({ id: licenseId }))}&x=1`, method: 'GET', headers: { authorization: `Bearer ${ownerKey}` } }), 200],
  ['a batched query', () => ({ path: `licenses.get,licenses.list?batch=1&input=${encodeURIComponent(JSON.stringify({ 0: { id: licenseId }, 1: {} }))}`, method: 'GET', headers: { authorization: `Bearer ${ownerKey}` } }), 200],
  ['a query with a JSON content type', () => ({ path: `licenses.get?input=${encodeURIComponent(JSON.stringify({ id: licenseId }))}`, method: 'GET', headers: json(ownerKey) }), 200],
])('%s: the same answer as through tRPC\'s adapter', async (_name, make, status) => {
  expect((await expectSameAnswer(make)).status).toBe(status);
});

it('a repeat and a conflicting reuse of a key: the same answers', async () => {
  const key = randomUUID();
  await send(app.baseUrl, { path: 'usage.trackEvent', body: event({ idempotencyKey: key }), headers: json(ownerKey) });
  expect((await expectSameAnswer(() => ({ path: 'usage.trackEvent', body: event({ idempotencyKey: key }), headers: json(ownerKey) }))).body).toMatch(/"duplicate":true/);
  expect((await expectSameAnswer(() => ({ path: 'usage.trackEvent', body: event({ idempotencyKey: key, quantity: 2 }), headers: json(ownerKey) }))).status).toBe(409);
});

describe('every procedure of the router', () => {
  const procedures = Object.entries(appRouter._def.procedures as unknown as Record<string, { _def: { type: string; meta?: { scope: string } } }>);

  it.each(procedures.map(([path, p]) => [path, p._def.type, p._def.meta?.scope]))(
    '%s (%s): no key, an empty input and an input of the wrong type answer as through tRPC\'s adapter',
    async (path, type, scope) => {
      const send = (key: string | null, input: unknown): Sent =>
        type === 'query'
          ? { path: `${path}?input=${encodeURIComponent(JSON.stringify(input))}`, method: 'GET', headers: key ? { authorization: `Bearer ${key}` } : {} }
          : { path, body: JSON.stringify(input), headers: json(key) };
      // a public procedure reads no key: signup.register is refused as SIGNUP_MODE is off here
      expect((await expectSameAnswer(() => send(null, {}))).status).toBe(scope === 'public' ? 403 : 401);
      for (const input of [{}, [1, 2], 'text']) {
        const answer = await expectSameAnswer(() => send(ownerKey, input));
        expect(answer.status).toBeLessThan(500);
      }
      const admin = await expectSameAnswer(() => send(app.adminKey, {}));
      expect(admin.status).toBeLessThan(500);
    },
  );
});
