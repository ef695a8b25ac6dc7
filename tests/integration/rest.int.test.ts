import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { promisify } from 'node:util';
import { appRouter } from '../../src/server/router';
import type { Meta, TenantRole } from '../../src/server/trpc';
import { OPENAPI_PATH, REST_ROUTES, type RestRoute, pathFields } from '../../src/server/rest/routes';
import { useTestApp, type CallResult } from '../helpers/harness';
import { licenseWithLimit } from '../helpers/quota';
import { secretKey, useFakeStripe, webhookSecret } from '../helpers/billing';
import { rawRest, restCall, restRouteOf, type RestResult } from '../helpers/rest';

/**
 * The REST face (/api/v1) against its tRPC twins: for every route of the route table, the same
 * input gives the same answer (data, status, error code, message and the fields at fault); the
 * OpenAPI document validates as OpenAPI 3.1; a client in another language (python3's standard
 * library) tracks an event and reads usage; the API reference at /docs is served offline.
 */

const BODY_LIMIT = 4096;
// Stripe is the fake one (billing.connect and billing.createCustomer call it); started before the app.
useFakeStripe();
const app = useTestApp({ MAX_BODY_BYTES: String(BODY_LIMIT), QUOTA_REDIS_TIMEOUT_MS: '10000' });
const WEBHOOK_URL = 'https://93.184.215.14/tally-rest';
const TODAY = new Date().toISOString().slice(0, 10);
const YESTERDAY = new Date(Date.now() - 86_400_000).toISOString().slice(0, 10);
const range = { startDate: YESTERDAY, endDate: TODAY };
const TENANT_ROLES: TenantRole[] = ['owner', 'member', 'ingest', 'read'];

interface World {
  owner: string;
  keys: Record<TenantRole, string>;
  license: string;
  threshold: string;
  webhook: string;
}
let w: World;
let other: { owner: string; license: string };

const procedureOf = (route: RestRoute) =>
  (appRouter._def.procedures as unknown as Record<string, { _def: { type: 'query' | 'mutation'; meta: Meta } }>)[route.procedure]!;
const trpc = (route: RestRoute, input: unknown, key: string | null, headers?: Record<string, string>) =>
  app.call(route.procedure, input, key, { method: procedureOf(route)._def.type === 'query' ? 'GET' : 'POST', headers });

async function freshOverage(): Promise<string> {
  const start = new Date(Date.UTC(2000, 0, 1) + Math.floor(Math.random() * 1e11));
  const overage = await app.prisma.usageOverage.create({
    data: {
      tenantId: (await app.prisma.license.findUniqueOrThrow({ where: { id: w.license } })).tenantId,
      licenseId: w.license, thresholdId: w.threshold, usageType: 'rest_t', periodType: 'monthly',
      periodStart: start, periodEnd: new Date(start.getTime() + 86_400_000), quantity: '1', rateCents: 1, feeCents: 1n,
    },
  });
  return overage.id;
}
const freshLicense = async () => (await app.createLicense(w.owner)).id;
const connectStripe = async () => {
  const res = await app.call('billing.connect', { secretKey: secretKey('live'), webhookSecret: webhookSecret() }, w.owner);
  if (res.status !== 200) throw new Error(`billing.connect: ${JSON.stringify(res.body)}`);
};

/**
 * A valid call in the world's tenant for each procedure a REST route serves. `fresh` calls
 * `input` once per twin (for calls that use their target up); `ignore` lists answer fields
 * that differ by construction between two such calls (besides ids, secrets and timestamps).
 */
const twins: Record<string, { input: () => unknown; fresh?: boolean; ignore?: string[] }> = {
  'usage.trackEvent': { input: () => ({ licenseId: w.license, usageType: 'rest_t', quantity: '1.5', userId: 'u1' }) },
  'usage.trackEvents': {
    input: () => ({ events: [{ licenseId: w.license, usageType: 'rest_t', quantity: 2 }, { licenseId: w.license, usageType: 'BAD TYPE' }] }),
  },
  'usage.check': { input: () => ({ licenseId: w.license, usageType: 'rest_t', quantity: '2' }) },
  'usage.current': { input: () => ({ licenseId: w.license }) },
  'licenses.list': { input: () => ({ limit: 100, status: 'ACTIVE' }) },
  'licenses.create': { input: () => ({ name: 'twin', timezone: 'Asia/Kathmandu', metadata: { a: 1 } }), ignore: ['billingAnchor'] },
  'licenses.get': { input: () => ({ id: w.license }) },
  'licenses.update': { input: () => ({ id: w.license, name: 'Renamed', metadata: { b: [1, 2] } }) },
  'licenses.delete': { input: async () => ({ id: await freshLicense() }), fresh: true, ignore: ['billingAnchor'] },
  'licenses.setStatus': { input: () => ({ id: w.license, status: 'ACTIVE' }) },
  'thresholds.status': { input: () => ({ licenseId: w.license }) },
  'forecasts.get': { input: () => ({ licenseId: w.license, usageType: 'rest_t' }) },
  'thresholds.list': { input: () => ({ licenseId: w.license }) },
  'thresholds.create': {
    input: () => ({ licenseId: w.license, usageType: `t${randomUUID().slice(0, 8)}`, periodType: 'weekly', limitQuantity: '12.5', warningLevels: [10, 90] }),
    fresh: true,
    ignore: ['usageType'],
  },
  'thresholds.update': { input: () => ({ id: w.threshold, limitQuantity: 2000, gracePercentage: 5 }) },
  'thresholds.remove': {
    input: async () => {
      const res = await app.call('thresholds.create', { licenseId: w.license, usageType: `r${randomUUID().slice(0, 8)}`, periodType: 'daily', limitQuantity: 5 }, w.owner);
      return { id: res.data.id };
    },
    fresh: true,
  },
  'alerts.list': { input: () => ({ licenseId: w.license, minLevel: 10 }) },
  'overages.list': { input: () => ({ licenseId: w.license, limit: 5 }) },
  'overages.approve': { input: async () => ({ id: await freshOverage() }), fresh: true, ignore: ['periodStart', 'periodEnd'] },
  'overages.waive': { input: async () => ({ id: await freshOverage() }), fresh: true, ignore: ['periodStart', 'periodEnd'] },
  'analytics.usage': { input: () => ({ licenseId: w.license, ...range, granularity: 'hourly', timezone: 'Asia/Kathmandu' }) },
  'analytics.breakdown': { input: () => ({ licenseId: w.license, ...range, by: 'platform', limit: 3 }) },
  'analytics.topLicenses': { input: () => ({ ...range, limit: 10 }) },
  'forecasts.list': { input: () => ({ limit: 10 }) },
  'apiKeys.list': { input: () => ({ includeRevoked: true }) },
  'apiKeys.create': { input: () => ({ name: 'twin', role: 'ingest' }) },
  'apiKeys.revoke': { input: async () => ({ id: (await app.createKey(w.owner, 'read')).id }), fresh: true },
  'webhooks.list': { input: () => ({}) },
  'webhooks.create': { input: () => ({ url: WEBHOOK_URL, events: ['usage.threshold.warning'], description: 'twin' }) },
  'webhooks.update': { input: () => ({ id: w.webhook, enabled: true, description: 'updated' }) },
  'webhooks.delete': { input: async () => ({ id: (await app.call('webhooks.create', { url: WEBHOOK_URL }, w.owner)).data.id }), fresh: true },
  'webhooks.rotateSecret': { input: () => ({ id: w.webhook, overlapHours: 1 }) },
  'webhooks.deliveries': { input: () => ({ limit: 5 }) },
  'usage.voidEvents': {
    input: async () => {
      const res = await app.call('usage.trackEvent', { licenseId: w.license, usageType: 'rest_t', quantity: 1 }, w.owner);
      return { eventIds: [res.data.eventId], reason: 'sent twice by mistake' };
    },
    fresh: true,
    ignore: ['recomputeJobId'],
  },
  'forecasts.accuracy': { input: () => ({ licenseId: w.license }) },
  'auditLogs.list': { input: () => ({ targetId: w.license, limit: 20 }) },
  'billing.connect': { input: () => ({ secretKey: secretKey('live'), webhookSecret: webhookSecret() }), fresh: true, ignore: ['keyHint', 'reportFrom'] },
  'billing.disconnect': {
    input: async () => {
      await connectStripe();
      return {};
    },
    fresh: true,
  },
  'billing.createCustomer': {
    input: async () => {
      await connectStripe();
      return { licenseId: await freshLicense(), email: 'billing@example.com' };
    },
    fresh: true,
    ignore: ['stripeCustomerId', 'licenseId'],
  },
  'billing.meters.list': { input: () => ({}) },
  'billing.meters.upsert': { input: () => ({ usageType: 'rest_t', eventName: 'rest_events', unitMultiplier: '0.001' }) },
  'billing.planPrices.set': { input: () => ({ stripePriceId: 'price_rest', plan: 'starter' }) },
  'billing.reportNow': { input: () => ({}), ignore: ['jobId'] },
  'billing.health': { input: () => ({}) },
  'billing.reconciliation': { input: () => ({ licenseId: w.license, from: YESTERDAY, to: TODAY }) },
  'billing.usageSummary': { input: () => ({ licenseId: w.license }) },
  'billing.usageReport': { input: () => ({ licenseId: w.license, from: new Date(Date.now() - 86_400_000).toISOString(), to: new Date().toISOString() }) },
};

/** What differs between two calls by construction: new ids, secrets and times. */
function normalized(value: unknown, ignore: string[] = []): unknown {
  if (Array.isArray(value)) return value.map((v) => normalized(v, ignore));
  if (value && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [
        k,
        v !== null && (/^(id|eventId|key|prefix|secret|lastUsedAt)$/.test(k) || /(At|Secret)$/.test(k) || ignore.includes(k)) ? '<varies>' : normalized(v, ignore),
      ]),
    );
  }
  return value;
}

beforeAll(async () => {
  const a = await app.createTenant();
  const b = await app.createTenant();
  const license = (await app.createLicense(a.ownerKey)).id;
  const threshold = await app.call('thresholds.create', { licenseId: license, usageType: 'rest_t', periodType: 'monthly', limitQuantity: 1000 }, a.ownerKey);
  const webhook = await app.call('webhooks.create', { url: WEBHOOK_URL }, a.ownerKey);
  const keys = { owner: a.ownerKey } as Record<TenantRole, string>;
  for (const role of ['member', 'ingest', 'read'] as const) keys[role] = (await app.createKey(a.ownerKey, role)).key;
  w = { owner: a.ownerKey, keys, license, threshold: threshold.data.id, webhook: webhook.data.id };
  const now = new Date();
  await app.prisma.usageForecast.create({
    data: {
      tenantId: a.tenantId, licenseId: license, usageType: 'rest_t', periodType: 'monthly', timezone: 'UTC', thresholdId: w.threshold, limitQuantity: '1000',
      periodStart: new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1)), periodEnd: new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1)),
      usedSoFar: '1', predictedTotal: '2', lowerBound: '1', upperBound: '3', method: 'run_rate', historyDays: 7, asOf: now, generatedAt: now,
    },
  });
  other = { owner: b.ownerKey, license: (await app.createLicense(b.ownerKey)).id };
  await app.call('usage.trackEvents', { events: Array.from({ length: 5 }, (_, i) => ({ licenseId: license, usageType: 'rest_t', userId: `u${i}`, platform: 'ios' })) }, a.ownerKey);
});

it('has a twin fixture for every REST route, and every route names a procedure of the router', () => {
  const procedures = Object.keys(appRouter._def.procedures);
  expect(REST_ROUTES.filter((r) => !procedures.includes(r.procedure))).toEqual([]);
  expect(REST_ROUTES.filter((r) => !twins[r.procedure]).map((r) => r.procedure)).toEqual([]);
  const seen = REST_ROUTES.map((r) => `${r.method} ${r.path}`);
  expect(new Set(seen).size).toBe(seen.length);
});

describe.each(REST_ROUTES.map((route) => ({ route, name: `${route.method} ${route.path}` })))('$name', ({ route }) => {
  const twin = () => twins[route.procedure]!;

  it('answers a valid call as its tRPC twin does', async () => {
    const first = await twin().input();
    const viaTrpc = await trpc(route, first, w.owner);
    const viaRest = await restCall(app, route, twin().fresh ? await twin().input() : first, w.owner);
    expect([viaTrpc.status, viaTrpc.body.error?.message]).toEqual([200, undefined]);
    expect([viaRest.status, viaRest.body.error?.message]).toEqual([route.status ?? 200, undefined]);
    expect(normalized(viaRest.data, twin().ignore)).toEqual(normalized(viaTrpc.data, twin().ignore));
    expect(viaRest.headers.get('content-type')).toBe('application/json');
  });

  it('refuses a call without a key (401), from a role its meta refuses (403), as the twin does', async () => {
    const input = await twin().input();
    const pair = async (key: string | null): Promise<[CallResult<any>, RestResult]> => [await trpc(route, input, key), await restCall(app, route, input, key)];
    const [t401, r401] = await pair(null);
    expect([r401.status, r401.body.error.code, r401.body.error.message]).toEqual([401, 'UNAUTHORIZED', t401.body.error?.message]);
    expect(t401.status).toBe(401);
    const meta = procedureOf(route)._def.meta;
    for (const role of TENANT_ROLES.filter((r) => !(meta.roles as readonly string[]).includes(r))) {
      const [t, r] = await pair(w.keys[role]);
      expect([role, r.status, r.body.error.code, r.body.error.message]).toEqual([role, 403, 'FORBIDDEN', t.body.error?.message]);
      expect(t.status).toBe(403);
    }
  });

  it('refuses bad input with 400 naming the same fields as the twin, and writes nothing', async () => {
    const fields = pathFields(route);
    const valid = (await twin().input()) as Record<string, unknown>;
    const bad = fields.length ? { ...valid, [fields[0]!]: 'not-a-uuid' } : { ...valid, bogus: 1 };
    // this tenant's events only: other test files write events to the same database meanwhile
    const { tenantId } = await app.prisma.license.findUniqueOrThrow({ where: { id: w.license } });
    const events = () => app.prisma.usageEvent.count({ where: { tenantId } });
    const before = await events();
    const t = await trpc(route, bad, w.owner);
    const r = await restCall(app, route, bad, w.owner);
    expect(t.status).toBe(400);
    expect([r.status, r.body.error.code, r.body.error.message]).toEqual([400, 'BAD_REQUEST', t.body.error?.message]);
    const issues = (list: { path: unknown[]; code?: string }[] | undefined) => (list ?? []).map((i) => ({ path: i.path, code: i.code }));
    expect(issues(r.body.error.issues)).toEqual(issues(t.body.error?.data.issues));
    expect(r.body.error.issues.length).toBeGreaterThan(0);
    expect(r.body.error.issues.every((i: { in: string }) => i.in === (fields.length ? 'path' : route.method === 'GET' || route.method === 'DELETE' ? 'query' : 'body'))).toBe(true);
    expect(await events()).toBe(before);
  });
});

describe('tenants apart', () => {
  it("answers another tenant's license, threshold and webhook with 404, as the twins do", async () => {
    const cases: [string, unknown][] = [
      ['licenses.get', { id: other.license }],
      ['usage.current', { licenseId: other.license }],
      ['licenses.update', { id: other.license, name: 'stolen' }],
      ['usage.trackEvent', { licenseId: other.license, usageType: 'rest_t' }],
    ];
    for (const [procedure, input] of cases) {
      const route = restRouteOf(procedure)!;
      const t = await trpc(route, input, w.owner);
      const r = await restCall(app, route, input, w.owner);
      expect([procedure, r.status, r.body.error.code, r.body.error.message]).toEqual([procedure, 404, 'NOT_FOUND', t.body.error?.message]);
      expect(t.status).toBe(404);
    }
    expect((await app.prisma.license.findUniqueOrThrow({ where: { id: other.license } })).name).toBe('License');
  });
});

describe('quotas', () => {
  it('refuses the event past a hard limit with 429 and the same rate-limit headers as tRPC', async () => {
    const { licenseId } = await licenseWithLimit(app, w.owner, 'api_call', 2);
    const route = restRouteOf('usage.trackEvent')!;
    const first = await restCall(app, route, { licenseId, usageType: 'api_call' }, w.owner);
    expect([first.status, first.headers.get('ratelimit-limit'), first.headers.get('ratelimit-remaining'), first.headers.get('x-ratelimit-remaining')]).toEqual([200, '2', '1', '1']);
    expect((await app.call('usage.trackEvent', { licenseId, usageType: 'api_call' }, w.owner)).status).toBe(200);
    const t = await app.call('usage.trackEvent', { licenseId, usageType: 'api_call' }, w.owner);
    const r = await restCall(app, route, { licenseId, usageType: 'api_call' }, w.owner);
    expect([t.status, r.status, r.body.error.code, r.body.error.message]).toEqual([429, 429, 'TOO_MANY_REQUESTS', t.body.error?.message]);
    for (const name of ['ratelimit-limit', 'ratelimit-remaining', 'x-ratelimit-limit', 'x-ratelimit-remaining']) {
      expect([name, r.headers.get(name)]).toEqual([name, t.headers.get(name)]);
    }
    expect(Number(r.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(Math.abs(Number(r.headers.get('retry-after')) - Number(t.headers.get('retry-after')))).toBeLessThanOrEqual(2);
    expect(r.headers.get('x-ratelimit-reset')).toBe(t.headers.get('x-ratelimit-reset'));
    // the two calls may fall either side of a second: retryAfterSeconds may differ by one or two
    const { retryAfterSeconds: restRetry, ...restDetails } = r.body.error.details as { retryAfterSeconds: number };
    const { retryAfterSeconds: trpcRetry, ...trpcDetails } = (t.body.error?.data as unknown as { details: { retryAfterSeconds: number } }).details;
    expect(restDetails).toEqual(trpcDetails);
    expect(Math.abs(restRetry - trpcRetry)).toBeLessThanOrEqual(2);
    expect(await app.prisma.usageEvent.count({ where: { licenseId } })).toBe(2);
  });

  it('refuses a key past its hourly rate limit with 429 and the limit headers', async () => {
    const key = await app.call('apiKeys.create', { name: 'limited', role: 'read', rateLimitPerHour: 1 }, w.owner);
    expect(key.status).toBe(200);
    const route = restRouteOf('licenses.get')!;
    expect((await restCall(app, route, { id: w.license }, key.data.key)).status).toBe(200);
    const refused = await restCall(app, route, { id: w.license }, key.data.key);
    expect([refused.status, refused.body.error.code, refused.headers.get('ratelimit-limit'), refused.headers.get('ratelimit-remaining')]).toEqual([429, 'TOO_MANY_REQUESTS', '1', '0']);
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
  });
});

describe('bodies and routes', () => {
  const route = () => restRouteOf('usage.trackEvent')!;
  const padded = (size: number) => {
    const base = { licenseId: w.license, usageType: 'rest_pad', properties: { pad: '' } };
    const pad = size - Buffer.byteLength(JSON.stringify(base));
    return JSON.stringify({ ...base, properties: { pad: 'x'.repeat(pad) } });
  };
  const post = (p: string, body: string, headers: Record<string, string> = { 'content-type': 'application/json' }) =>
    rawRest(app, p, { method: 'POST', headers: { authorization: `Bearer ${w.owner}`, ...headers }, body });

  it(`takes a body of ${BODY_LIMIT} bytes and refuses one byte more with 413, as tRPC does`, async () => {
    expect(Buffer.byteLength(padded(BODY_LIMIT))).toBe(BODY_LIMIT);
    const atLimit = await post('/api/v1/events', padded(BODY_LIMIT));
    expect(atLimit.status).not.toBe(413);
    expect(atLimit.status).toBeLessThan(500);
    const past = await post('/api/v1/events', padded(BODY_LIMIT + 1));
    const pastTrpc = await post('/api/trpc/usage.trackEvent', padded(BODY_LIMIT + 1));
    expect([past.status, past.body.error.code, pastTrpc.status]).toEqual([413, 'PAYLOAD_TOO_LARGE', 413]);
    void route;
  });

  it('refuses bodies that are not a JSON object, other content types, and query strings on POST, naming why', async () => {
    for (const body of ['{', '[1]', 'null', '"x"', '{"licenseId":1}garbage']) {
      const res = await post('/api/v1/events', body);
      expect([body, res.status, res.body.error.code]).toEqual([body, 400, 'BAD_REQUEST']);
      expect(res.body.error.issues.length).toBeGreaterThan(0);
    }
    const xml = await post('/api/v1/events', '<x/>', { 'content-type': 'application/xml' });
    expect([xml.status, xml.body.error.code]).toEqual([415, 'UNSUPPORTED_MEDIA_TYPE']);
    const query = await post(`/api/v1/events?licenseId=${w.license}`, JSON.stringify({ licenseId: w.license, usageType: 'x' }));
    expect(query.status).toBe(400);
    // curl -d sends a form content type: read as JSON, as the tRPC door does
    const curl = await post('/api/v1/events', JSON.stringify({ licenseId: w.license, usageType: 'rest_curl' }), { 'content-type': 'application/x-www-form-urlencoded' });
    expect(curl.status).toBe(200);
  });

  it('refuses a path id that differs from the one in the body', async () => {
    const other = await freshLicense();
    const res = await rawRest(app, `/api/v1/licenses/${w.license}`, {
      method: 'PATCH',
      headers: { authorization: `Bearer ${w.owner}`, 'content-type': 'application/json' },
      body: JSON.stringify({ id: other, name: 'x' }),
    });
    expect([res.status, res.body.error.issues?.[0]?.path]).toEqual([400, ['id']]);
    expect((await app.prisma.license.findUniqueOrThrow({ where: { id: other } })).name).toBe('License');
  });

  it('reads typed query parameters and refuses ones that do not parse, naming them', async () => {
    const ok = await rawRest(app, '/api/v1/licenses?limit=1&status=ACTIVE', { headers: { authorization: `Bearer ${w.owner}` } });
    expect([ok.status, ok.data.items.length]).toEqual([200, 1]);
    for (const [query, field] of [['limit=ten', 'limit'], ['limit=0', 'limit'], ['limit=101', 'limit'], ['status=GONE', 'status'], ['whatever=1', undefined]] as const) {
      const res = await rawRest(app, `/api/v1/licenses?${query}`, { headers: { authorization: `Bearer ${w.owner}` } });
      expect([query, res.status]).toEqual([query, 400]);
      if (field) expect(res.body.error.issues.map((i: { path: string[] }) => i.path[0])).toContain(field);
    }
    expect((await rawRest(app, '/api/v1/licenses?limit=100', { headers: { authorization: `Bearer ${w.owner}` } })).status).toBe(200);
    const keys = await rawRest(app, '/api/v1/api-keys?includeRevoked=true', { headers: { authorization: `Bearer ${w.owner}` } });
    expect(keys.status).toBe(200);
  });

  it('answers unknown paths with 404 and known paths with another method with 405 and Allow', async () => {
    const missing = await rawRest(app, '/api/v1/nothing/here', { headers: { authorization: `Bearer ${w.owner}` } });
    expect([missing.status, missing.body.error.code]).toEqual([404, 'NOT_FOUND']);
    const put = await rawRest(app, `/api/v1/licenses/${w.license}`, { method: 'PUT', headers: { authorization: `Bearer ${w.owner}` } });
    expect([put.status, put.body.error.code, put.headers.get('allow')]).toEqual([405, 'METHOD_NOT_SUPPORTED', 'GET, PATCH, DELETE']);
  });

  it('labels metrics with route templates, never raw paths', async () => {
    await rawRest(app, `/api/v1/licenses/${w.license}`, { headers: { authorization: `Bearer ${w.owner}` } });
    await rawRest(app, `/api/v1/licenses/${randomUUID()}/usage`, { headers: { authorization: `Bearer ${w.owner}` } });
    await rawRest(app, '/api/v1/webhooks/deliveries', { headers: { authorization: `Bearer ${w.owner}` } });
    await rawRest(app, `/api/v1/no/${randomUUID()}`, {});
    const metrics = await (await fetch(`${app.baseUrl}/metrics`)).text();
    expect(metrics).toContain('procedure="/api/v1/licenses/{id}"');
    expect(metrics).toContain('procedure="/api/v1/licenses/{licenseId}/usage"');
    expect(metrics).toContain('procedure="/api/v1/webhooks/deliveries"');
    expect(metrics).not.toContain(`procedure="/api/v1/licenses/${w.license}"`);
    expect(metrics).not.toMatch(/procedure="\/api\/v1\/no\//);
  });
});

/**
 * @seriousme/openapi-schema-validator (the OpenAPI Initiative's JSON Schemas, with ajv) is an
 * ES module, which this jest setup cannot require: it runs in a child node process.
 */
async function validateOpenApi(text: string): Promise<{ valid: boolean; version?: string; errors?: unknown }> {
  const code = `
    import { Validator } from '@seriousme/openapi-schema-validator';
    let text = '';
    for await (const chunk of process.stdin) text += chunk;
    const validator = new Validator();
    const result = await validator.validate(JSON.parse(text));
    process.stdout.write(JSON.stringify(result.valid ? { valid: true, version: validator.version } : { valid: false, errors: result.errors }));
  `;
  const child = execFile(process.execPath, ['--input-type=module', '-e', code], { cwd: path.join(__dirname, '..', '..') });
  child.stdin!.end(text);
  let out = '';
  child.stdout!.on('data', (chunk: string) => (out += chunk));
  let err = '';
  child.stderr!.on('data', (chunk: string) => (err += chunk));
  await new Promise<void>((resolve, reject) => child.on('close', (status) => (status === 0 ? resolve() : reject(new Error(`validator failed: ${err}`)))));
  return JSON.parse(out) as { valid: boolean; version?: string; errors?: unknown };
}

describe('the OpenAPI document', () => {
  it('is valid OpenAPI 3.1 with an operation for every route, from the procedures\' schemas', async () => {
    const res = await rawRest(app, OPENAPI_PATH);
    expect(res.status).toBe(200);
    const doc = res.body;
    expect(await validateOpenApi(res.text)).toEqual({ valid: true, version: '3.1' });
    for (const route of REST_ROUTES) {
      const op = doc.paths[route.path]?.[route.method.toLowerCase()];
      expect([route.path, route.method, op?.['x-tally-procedure']]).toEqual([route.path, route.method, route.procedure]);
    }
    // from the zod schemas: bounds and required fields as the procedure checks them
    const list = doc.paths['/licenses'].get.parameters.find((p: { name: string }) => p.name === 'limit');
    expect(list.schema).toMatchObject({ type: 'integer', minimum: 1, maximum: 100 });
    const event = doc.paths['/events'].post.requestBody.content['application/json'].schema;
    expect(event.required).toEqual(expect.arrayContaining(['licenseId', 'usageType']));
    expect(doc.paths['/events/batch'].post.requestBody.content['application/json'].schema.properties.events.items.properties.licenseId).toBeDefined();
    const license = doc.paths['/licenses/{id}'].get.responses['200'].content['application/json'].schema;
    expect(license.properties.createdAt).toEqual({ type: 'string', format: 'date-time' });
    expect(doc.paths['/licenses/{id}'].patch.requestBody.content['application/json'].schema.properties.id).toBeUndefined();
    expect(doc.paths['/events'].post.responses['200'].content['application/json'].schema.required).toEqual(['eventId', 'duplicate']);
    expect(doc.paths['/events'].post.responses['200'].headers['RateLimit-Remaining']).toBeDefined();
    expect(JSON.stringify(doc)).not.toMatch(/tk_(live|test)_[A-Za-z0-9]{8}/);
  });
});

describe('a client in another language', () => {
  it('tracks an event and reads usage with python3 and its standard library only', async () => {
    const script = path.join(__dirname, '..', 'helpers', 'rest_client.py');
    const run = promisify(execFile);
    const license = await freshLicense();
    let out: string;
    try {
      ({ stdout: out } = await run('python3', [script], { env: { PATH: process.env.PATH, TALLY_URL: app.baseUrl, TALLY_KEY: w.owner, LICENSE_ID: license } }));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new Error('python3 is not installed: this test needs it', { cause: err });
      throw err;
    }
    const result = JSON.parse(out) as { tracked: { eventId: string; duplicate: boolean }; usage: { usage: { usageType: string; used: string }[] }; refused: { status: number; code: string } };
    expect(result.tracked.duplicate).toBe(false);
    expect(result.usage.usage).toEqual(expect.arrayContaining([expect.objectContaining({ usageType: 'py_call', used: '3.5' })]));
    expect(result.refused).toEqual({ status: 401, code: 'UNAUTHORIZED' });
    expect(await app.prisma.usageEvent.count({ where: { licenseId: license } })).toBe(1);
  });
});

describe('the API reference at /docs', () => {
  it('serves Swagger UI from this server only (no CDN), pointed at the OpenAPI document', async () => {
    const page = await fetch(`${app.baseUrl}/docs`);
    const html = await page.text();
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toContain('text/html');
    expect(html).not.toMatch(/https?:\/\//);
    const csp = page.headers.get('content-security-policy')!;
    expect(csp).toContain("script-src 'self'");
    expect(csp).not.toMatch(/https?:/);
    const sources = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]!);
    expect(sources.length).toBeGreaterThanOrEqual(3);
    for (const source of sources) {
      const asset = await fetch(`${app.baseUrl}${source}`);
      expect([source, asset.status]).toEqual([source, 200]);
      expect((await asset.arrayBuffer()).byteLength).toBeGreaterThan(100);
    }
    const init = await (await fetch(`${app.baseUrl}/docs/init.js`)).text();
    expect(init).toContain(JSON.stringify(OPENAPI_PATH));
    expect(init).toContain('validatorUrl: null');
    expect((await fetch(`${app.baseUrl}/docs/../package.json`)).status).toBe(404);
    expect((await fetch(`${app.baseUrl}/docs/swagger-ui-bundle.js.map`)).status).toBe(404);
  });
});
