import { createHash, randomUUID } from 'node:crypto';
import http from 'node:http';
import fc from 'fast-check';
import Stripe from 'stripe';
import type { z } from 'zod';
import { appRouter } from '../../src/server/router';
import { REST_BASE, REST_ROUTES, type RestRoute, pathFields, readsQuery } from '../../src/server/rest/routes';
import { usageEventInputSchema } from '../../src/domain/usage/event-schema';
import { TestApp } from '../helpers/harness';
import { createIsolatedDatabase } from '../helpers/isolated-db';
import { RawJson, arbitraryFor, hostileValue, toJsonText } from '../helpers/zod-arbitrary';
import { readScoreboard, scoreboardChanges } from '../helpers/scoreboard';
import { secretKey, useFakeStripe, webhookSecret } from '../helpers/billing';

/**
 * The REST face under random input: for every route of the route table, inputs derived from its
 * procedure's zod schema (valid-ish and hostile) sent as REST (path, query string or JSON body)
 * by callers of every kind; then random paths, methods, query strings, content types and bodies
 * under /api/v1. Per request: no 5xx, every refusal names a field or a reason, a refusal writes
 * nothing (audit rows aside), and /health still answers.
 *
 * FUZZ_RUNS (default 20) and FUZZ_SEED (default 1111) as in fuzz.int.test.ts.
 */
const RUNS = Number(process.env.FUZZ_RUNS ?? 20);
/** The Stripe webhook's body limit in this suite's app (small, so the edge cases are cheap). */
const WEBHOOK_MAX_BYTES = 8192;
const SEED = Number(process.env.FUZZ_SEED ?? 1111);

const inputOf = (route: RestRoute) =>
  (appRouter._def.procedures as unknown as Record<string, { _def: { inputs: z.ZodType[] } }>)[route.procedure]!._def.inputs[0]!;
const seedFor = (...parts: string[]) => SEED ^ createHash('sha256').update(parts.join('|')).digest().readInt32LE(0);

// The billing routes call Stripe: the fake one, started (in its own beforeAll) before the app.
useFakeStripe();
let app: TestApp;
let db: ReturnType<typeof createIsolatedDatabase>;
let ids: string[];
/** This tenant's (and the other tenant's) ids by the kind a uuid field names. */
let idsOf: Record<string, string[]>;
const KIND_OF_ROUTE: Record<string, string> = { licenses: 'license', thresholds: 'threshold', overages: 'overage', apiKeys: 'key', webhooks: 'webhook' };
const KIND_OF_FIELD: Record<string, string> = { licenseId: 'license', endpointId: 'webhook' };
let callers: { name: string; headers: () => Record<string, string> }[];
/** Answers by status, and the routes a fuzzed call succeeded on, printed at the end: a run that only meets refusals reaches nothing. */
const statuses = new Map<number, number>();
const succeeded = new Set<string>();

beforeAll(async () => {
  db = createIsolatedDatabase('restfuzz');
  app = await TestApp.start({ DATABASE_URL: db.url, BILLING_WEBHOOK_MAX_BYTES: String(WEBHOOK_MAX_BYTES) });
  const a = await app.createTenant();
  const b = await app.createTenant();
  const read = (await app.createKey(a.ownerKey, 'read')).key;
  const licenseA = (await app.createLicense(a.ownerKey)).id;
  const licenseB = (await app.createLicense(b.ownerKey)).id;
  const threshold = await app.call('thresholds.create', { licenseId: licenseA, usageType: 'api_call', periodType: 'monthly', limitQuantity: 1000 }, a.ownerKey);
  const webhook = await app.call('webhooks.create', { url: 'https://93.184.215.14/fuzz' }, a.ownerKey);
  ids = [a.tenantId, licenseA, licenseB, threshold.data.id, webhook.data.id];
  const overage = await app.prisma.usageOverage.create({
    data: {
      tenantId: a.tenantId, licenseId: licenseA, thresholdId: threshold.data.id, usageType: 'api_call', periodType: 'monthly',
      periodStart: new Date(), periodEnd: new Date(), quantity: '1', rateCents: 1, feeCents: 1n,
    },
  });
  idsOf = {
    license: [licenseA, licenseB],
    threshold: [threshold.data.id],
    overage: [overage.id],
    key: [(await app.createKey(a.ownerKey, 'read')).id],
    webhook: [webhook.data.id],
  };
  await app.call('usage.trackEvents', { events: Array.from({ length: 20 }, (_, i) => ({ licenseId: licenseA, usageType: 'api_call', userId: `u${i % 3}`, platform: 'ios' })) }, a.ownerKey);
  const bearer = (key: string) => ({ authorization: `Bearer ${key}` });
  callers = [
    { name: 'owner', headers: () => bearer(a.ownerKey) },
    { name: 'read', headers: () => bearer(read) },
    { name: 'admin+tenant', headers: () => ({ ...bearer(app.adminKey), 'x-tally-tenant': a.tenantId }) },
    { name: 'no key', headers: () => ({}) },
    { name: 'bad key', headers: () => bearer(`tk_live_${randomUUID().replace(/-/g, '').slice(0, 24)}`) },
  ];
}, 180_000);

afterAll(async () => {
  const byStatus = [...statuses].sort(([x], [y]) => x - y).map(([status, n]) => `${status}: ${n}`).join(', ');
  const never = REST_ROUTES.map((r) => `${r.method} ${r.path}`).filter((name) => !succeeded.has(name));
  console.log(`REST fuzz (FUZZ_RUNS=${RUNS}, FUZZ_SEED=${SEED}): answers ${byStatus}${never.length ? `; no fuzzed call succeeded for ${never.join(', ')}` : ''}`);
  await app?.close();
  await db?.drop();
});

interface Answer {
  status: number;
  text: string;
  body: any;
}

/** What is wrong with an answer, or null: no 5xx, and a refusal names a field or a reason. */
function problemOf(answer: Answer, method: string): string | null {
  if (answer.status >= 500) return `${answer.status}: ${answer.text.slice(0, 300)}`;
  if (answer.status < 400 || method === 'HEAD') return null;
  const error = answer.body?.error;
  if (!error) return `${answer.status} without an error body: ${answer.text.slice(0, 200) || '(empty)'}`;
  if (Array.isArray(error.issues) && error.issues.length > 0 && error.issues.every((i: { path?: unknown }) => Array.isArray(i?.path))) return null;
  if (typeof error.message === 'string' && error.message.trim() !== '' && typeof error.code === 'string' && error.code !== '') return null;
  return `${answer.status}: a refusal without a field or reason: ${answer.text.slice(0, 300)}`;
}

async function send(path: string, init: RequestInit): Promise<Answer> {
  const response = await fetch(`${app.baseUrl}${path}`, init);
  const text = await response.text();
  let body: any;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  return { status: response.status, text, body };
}

/** A path segment or query value for a fuzz value: strings as they are, anything else as JSON. */
const asText = (value: unknown) => (typeof value === 'string' ? value : toJsonText(value));

/** Every byte of the UTF-8 text percent-encoded (encodeURIComponent throws on a lone surrogate). */
const percentEncoded = (text: string) => [...Buffer.from(text, 'utf8')].map((b) => `%${b.toString(16).padStart(2, '0')}`).join('');

/** The REST request for a fuzz input of `route`, as `restRequest` makes it, but for any value. */
function requestFor(route: RestRoute, input: unknown, headers: Record<string, string>): [string, RequestInit] {
  const isObject = input !== null && typeof input === 'object' && !Array.isArray(input) && !(input instanceof RawJson);
  const rest: Record<string, unknown> = isObject ? { ...(input as Record<string, unknown>) } : {};
  let path = route.path;
  for (const field of pathFields(route)) {
    path = path.replace(`{${field}}`, percentEncoded(asText(rest[field] ?? '')));
    delete rest[field];
  }
  if (readsQuery(route)) {
    const params = new URLSearchParams();
    if (isObject) {
      for (const [k, v] of Object.entries(rest)) if (v !== undefined) params.append(k, asText(v));
    } else params.append('input', asText(input));
    const query = params.toString();
    return [`${REST_BASE}${path}${query ? `?${query}` : ''}`, { method: route.method, headers }];
  }
  return [`${REST_BASE}${path}`, { method: route.method, headers: { 'content-type': 'application/json', ...headers }, body: isObject ? toJsonText(rest) : toJsonText(input) }];
}

/** Runs `cases` and returns each failure with the request that caused it. */
async function fuzz<T>(name: string, arbitrary: fc.Arbitrary<T>, runs: number, toRequest: (value: T) => [string, RequestInit]): Promise<string[]> {
  const failures: string[] = [];
  const seed = seedFor(name);
  for (const [index, value] of fc.sample(arbitrary, { numRuns: runs, seed }).entries()) {
    const [path, init] = toRequest(value);
    const before = await readScoreboard(app.services.db.pool);
    let answer: Answer;
    try {
      answer = await send(path, init);
      statuses.set(answer.status, (statuses.get(answer.status) ?? 0) + 1);
      if (answer.status < 300) succeeded.add(name);
    } catch (err) {
      failures.push(`${name} (seed ${seed}, case ${index}): no answer: ${String((err as Error).cause ?? err)} for ${init.method} ${path.slice(0, 200)}`);
      continue;
    }
    const problems: string[] = [];
    const problem = problemOf(answer, String(init.method));
    if (problem) problems.push(problem);
    if (answer.status >= 400) {
      const changes = scoreboardChanges(before, await readScoreboard(app.services.db.pool));
      if (changes.length) problems.push(`refused with ${answer.status} yet wrote: ${changes.join(', ')}`);
    }
    for (const p of problems) {
      failures.push(`${name} (seed ${seed}, case ${index}): ${p}\n    request: ${init.method} ${path.slice(0, 300)} ${String(init.body ?? '').slice(0, 300)}`);
    }
  }
  return failures;
}

describe.each(REST_ROUTES.map((route) => ({ route, name: `${route.method} ${route.path}` })))('fuzz REST $name', ({ route }) => {
  it('answers inputs from its own schema, from every caller, with no 5xx and a named reason for each refusal', async () => {
    const hint = (path: readonly string[], schema: z.ZodType, opts: { mix: string }): fc.Arbitrary<unknown> | undefined => {
      const last = path[path.length - 1] ?? '';
      const kind = last === 'id' ? KIND_OF_ROUTE[route.procedure.split('.')[0]!] : KIND_OF_FIELD[last];
      const format = (schema as unknown as { _zod: { def: { format?: string } } })._zod.def.format;
      if (kind && opts.mix === 'valid' && format === 'uuid') return fc.oneof({ weight: 6, arbitrary: fc.constantFrom(...idsOf[kind]!) }, fc.uuid());
      if (path.length === 2 && path[0] === 'events' && last === '[]') return arbitraryFor(usageEventInputSchema, { mix: 'valid', ids, hint });
      return undefined;
    };
    // a valid-ish range has its start first (a reversed one is a 400 every time)
    const ordered = (value: unknown) => {
      const v = value as Record<string, unknown> | null;
      if (v && typeof v === 'object' && typeof v.startDate === 'string' && typeof v.endDate === 'string' && v.startDate > v.endDate) {
        return { ...v, startDate: v.endDate, endDate: v.startDate };
      }
      return value;
    };
    const inputs = fc.oneof(
      { weight: 5, arbitrary: arbitraryFor(inputOf(route), { mix: 'valid', ids, hint }).map(ordered) },
      { weight: 4, arbitrary: arbitraryFor(inputOf(route), { mix: 'hostile', ids, hint }) },
      { weight: 1, arbitrary: hostileValue() },
    );
    const failures = await fuzz(`${route.method} ${route.path}`, fc.tuple(inputs, fc.constantFrom(...callers)), RUNS * 2, ([input, caller]) =>
      requestFor(route, input, caller.headers()),
    );
    expect((await fetch(`${app.baseUrl}/health`)).status).toBe(200);
    expect(failures).toEqual([]);
  }, 120_000 + RUNS * 4_000);
});

describe('fuzz REST raw HTTP', () => {
  const RAW = Math.max(20, RUNS * 4);

  it('answers random paths, methods and query strings under /api/v1 with a named reason', async () => {
    const templates = REST_ROUTES.map((r) => r.path);
    const segment = fc.oneof(
      fc.stringMatching(/^[A-Za-z0-9_.,$~-]{0,30}$/),
      fc.constantFrom('..', '%2e%2e', '%zz', '%00', '%F0%9F%92%A9', '%uD800', '__proto__', 'constructor', 'licenses', 'events', 'batch', 'usage', '{id}', ''),
      fc.constant('a'.repeat(3_000)),
      fc.uuid(),
    );
    const path = fc.oneof(
      fc.array(segment, { minLength: 0, maxLength: 5 }).map((s) => `/${s.join('/')}`),
      fc.tuple(fc.constantFrom(...templates), segment).map(([t, s]) => t.replace(/\{[A-Za-z]+\}/g, s)),
      fc.tuple(fc.constantFrom(...templates), fc.constantFrom('/', '//', '/x', '?')).map(([t, tail]) => `${t.replace(/\{[A-Za-z]+\}/g, randomUUID())}${tail}`),
    );
    const query = fc.oneof(
      fc.constant(''),
      fc.constantFrom('?limit=1e400', '?limit=-0', '?limit=NaN', '?limit=1&limit=2', '?%zz=1', '?__proto__=1', '?status=', '?licenseId=null', '?includeRevoked=yes', '?input={}', '?&&&=&'),
      fc.dictionary(fc.stringMatching(/^[a-zA-Z_]{1,12}$/), fc.string({ maxLength: 40 })).map((d) => `?${new URLSearchParams(d).toString()}`),
    );
    const method = fc.constantFrom('GET', 'POST', 'PATCH', 'DELETE', 'PUT', 'OPTIONS', 'HEAD');
    const body = fc.oneof(fc.constant(undefined), fc.constantFrom('{}', '{', '[]', 'null', '{"id":"x"}', '\uFEFF{}'), fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)));
    const arbitrary = fc.tuple(path, query, method, fc.constantFrom(...callers.map((_, i) => i)), body);
    const failures = await fuzz('random requests', arbitrary, RAW, ([p, q, verb, who, text]) => [
      `${REST_BASE}${p}${q}`,
      { method: verb, headers: { 'content-type': 'application/json', ...callers[who]!.headers() }, body: verb === 'GET' || verb === 'HEAD' ? undefined : text },
    ]);
    expect(failures).toEqual([]);
  }, 300_000);

  it('answers bodies that are not JSON objects, odd content types and large bodies with a named reason', async () => {
    const bodyRoutes = REST_ROUTES.filter((r) => !readsQuery(r));
    const body = fc.oneof(
      fc.constantFrom('{', '{"a":', '[1,2', 'nul', "{'a':1}", '{"a":1,}', '\u0000', '1e400', '"\\uD800"', '{"__proto__":{"polluted":true}}', ''),
      fc.string({ maxLength: 200, unit: 'binary' }),
      fc.constantFrom(10, 1_000, 100_000).map((n) => '['.repeat(n)),
      fc.constantFrom(10, 1_000, 100_000).map((n) => `${'{"a":'.repeat(n)}1${'}'.repeat(n)}`),
      fc.constantFrom(1_048_576, 1_048_577).map((n) => `{"pad":"${'x'.repeat(n - 10)}"}`),
    );
    const type = fc.constantFrom('application/json', 'text/plain', 'application/xml', 'multipart/form-data; boundary=x', 'APPLICATION/JSON; charset=utf-8', 'application/x-www-form-urlencoded', '');
    const arbitrary = fc.tuple(fc.constantFrom(...bodyRoutes), body, type, fc.constantFrom(...callers.map((_, i) => i)));
    const failures = await fuzz('bodies', arbitrary, RAW, ([route, text, contentType, who]) => [
      `${REST_BASE}${route.path.replace(/\{[A-Za-z]+\}/g, ids[1]!)}`,
      { method: route.method, headers: { ...(contentType ? { 'content-type': contentType } : {}), ...callers[who]!.headers() }, body: text },
    ]);
    expect(failures).toEqual([]);
    expect((await fetch(`${app.baseUrl}/health`)).status).toBe(200);
  }, 300_000);
});

/**
 * POST /api/stripe/webhook/:tenantId: public (no API key), guarded by the Stripe signature of
 * the tenant's own webhook secret. Random bodies, headers, signatures and tenant ids; bodies at
 * the limit and just past it (with and without Content-Length). Per request: never a 5xx; a
 * refusal names its reason; only a body signed with the path tenant's own secret writes
 * anything (one recorded event), everything else writes nothing.
 */
describe('fuzz the Stripe webhook', () => {
  const RAW = Math.max(40, RUNS * 6);
  const TYPES = [
    'customer.subscription.created', 'customer.subscription.updated', 'customer.subscription.deleted', 'invoice.created', 'invoice.finalized',
    'billing.meter.error_report_triggered', 'charge.succeeded', '', 'x'.repeat(300),
  ];

  async function connect(owner: string): Promise<string> {
    const whsec = webhookSecret();
    const res = await app.call('billing.connect', { secretKey: secretKey('live'), webhookSecret: whsec }, owner);
    if (res.status !== 200) throw new Error(`billing.connect: ${JSON.stringify(res.body)}`);
    return whsec;
  }

  /** Sends raw bytes; `chunked` leaves Content-Length out (the limit is then found while reading). */
  function post(path: string, body: Buffer, headers: Record<string, string>, chunked: boolean): Promise<Answer> {
    return new Promise((resolve, reject) => {
      const url = new URL(`${app.baseUrl}${path}`);
      const req = http.request(
        { host: url.hostname, port: url.port, path: url.pathname + url.search, method: 'POST', headers: { ...headers, ...(chunked ? {} : { 'content-length': String(body.length) }) } },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let parsed: any;
            try {
              parsed = JSON.parse(text);
            } catch {
              parsed = undefined;
            }
            resolve({ status: res.statusCode ?? 0, text, body: parsed });
          });
          res.on('error', reject);
        },
      );
      // the server may answer 413 and close before it has read everything: that answer counts
      req.on('error', reject);
      if (chunked) {
        for (let i = 0; i < body.length; i += 1024) req.write(body.subarray(i, i + 1024));
        req.end();
      } else req.end(body);
    });
  }

  const recorded = async () => Number((await app.services.db.pool.query<{ n: string }>('SELECT count(*)::text AS n FROM stripe_webhook_events')).rows[0]!.n);

  it('answers random bodies, headers, signatures and tenant ids with no 5xx, and writes only what the tenant signed', async () => {
    const a = await app.createTenant();
    const b = await app.createTenant();
    const secrets = { a: await connect(a.ownerKey), b: await connect(b.ownerKey) };
    // a customer linked to a license, so that signed events reach the handlers' writes too
    const customer = `cus_${randomUUID().replace(/-/g, '').slice(0, 14)}`;
    await app.createLicense(a.ownerKey, { stripeCustomerId: customer });

    const tenantPath = fc.oneof(
      { weight: 6, arbitrary: fc.constant(a.tenantId) },
      { weight: 2, arbitrary: fc.constant(b.tenantId) },
      { weight: 1, arbitrary: fc.uuid() },
      { weight: 1, arbitrary: fc.constantFrom('', 'nope', '..%2f..', '%00', a.tenantId.toUpperCase(), `${a.tenantId}/x`, `${a.tenantId}?x=1`, 'a'.repeat(2_000), '%zz') },
    );
    const number = fc.oneof(fc.integer(), fc.double(), fc.constantFrom(1e300, -1e300, 0, 253402300800, -62135596800), fc.string({ maxLength: 12 }));
    const object = fc.record(
      {
        id: fc.oneof(fc.constant(`in_${randomUUID().slice(0, 8)}`), fc.string({ maxLength: 30 }), fc.integer()),
        customer: fc.oneof({ weight: 4, arbitrary: fc.constant(customer) }, fc.string({ maxLength: 30 }), fc.constant(null), fc.integer()),
        status: fc.oneof(fc.constantFrom('active', 'past_due', 'canceled', 'unpaid', 'trialing', 'incomplete'), fc.string({ maxLength: 12 })),
        items: fc.oneof(fc.record({ data: fc.array(fc.record({ price: fc.record({ id: fc.oneof(fc.constant('price_x'), fc.string({ maxLength: 20 })) }) }), { maxLength: 3 }) }), fc.jsonValue({ maxDepth: 2 })),
        lines: fc.oneof(fc.record({ data: fc.array(fc.record({ metadata: fc.record({ tally_overage_id: fc.oneof(fc.uuid(), fc.string()) }) }), { maxLength: 3 }) }), fc.jsonValue({ maxDepth: 2 })),
        period_start: number,
        period_end: number,
        meter: fc.oneof(fc.string({ maxLength: 20 }), fc.record({ id: fc.string({ maxLength: 20 }) })),
        reason: fc.oneof(fc.record({ error_count: number, error_types: fc.array(fc.jsonValue({ maxDepth: 2 }), { maxLength: 20 }) }), fc.jsonValue({ maxDepth: 2 })),
      },
      { requiredKeys: [] },
    );
    const event = fc.record(
      {
        id: fc.oneof({ weight: 5, arbitrary: fc.uuid().map((u) => `evt_${u.replace(/-/g, '')}`) }, fc.string({ maxLength: 40 }), fc.integer(), fc.constant(null)),
        type: fc.oneof({ weight: 5, arbitrary: fc.constantFrom(...TYPES) }, fc.string({ maxLength: 40 }), fc.integer()),
        data: fc.oneof({ weight: 5, arbitrary: fc.record({ object }) }, fc.jsonValue({ maxDepth: 2 })),
      },
      { requiredKeys: [] },
    );
    const body = fc.oneof(
      { weight: 6, arbitrary: event.map((e) => Buffer.from(JSON.stringify(e))) },
      { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }).map((v) => Buffer.from(JSON.stringify(v) ?? 'null')) },
      { weight: 1, arbitrary: fc.uint8Array({ maxLength: 300 }).map((u) => Buffer.from(u)) },
      { weight: 1, arbitrary: fc.constantFrom('', '{', 'null', '[]', '"x"', '{"id":"evt_1"}', '\uFEFF{}', '{"__proto__":{"polluted":true}}').map((t) => Buffer.from(t)) },
      // at the limit and just past it (padding inside a JSON event)
      { weight: 2, arbitrary: fc.tuple(event, fc.constantFrom(0, 1)).map(([e, extra]) => padTo(e, WEBHOOK_MAX_BYTES + extra)) },
    );
    // which secret signs, and how the header is made
    const signer = fc.constantFrom('path-tenant', 'path-tenant', 'path-tenant', 'other-tenant', 'random-secret', 'none', 'garbage', 'stale', 'future', 'two-v1');
    const extra = fc.record(
      {
        'content-type': fc.constantFrom('application/json', 'text/plain', 'application/x-www-form-urlencoded', '', 'application/json; charset=latin1'),
        authorization: fc.constantFrom(`Bearer ${a.ownerKey}`, `Bearer ${app.adminKey}`, 'Bearer nope', 'Basic eDp5'),
        'x-tally-tenant': fc.constant(a.tenantId),
      },
      { requiredKeys: [] },
    );
    const arbitrary = fc.tuple(tenantPath, body, signer, extra, fc.boolean());
    const now = () => Math.floor(Date.now() / 1000);
    const secretOfPath = (tenant: string) => (tenant === a.tenantId ? secrets.a : tenant === b.tenantId ? secrets.b : webhookSecret());

    const failures: string[] = [];
    const seed = seedFor('stripe webhook');
    for (const [index, [tenant, payload, how, headers, chunked] ] of fc.sample(arbitrary, { numRuns: RAW, seed }).entries()) {
      const text = payload.toString('utf8');
      const sign = (secret: string, timestamp = now()) => Stripe.webhooks.generateTestHeaderString({ payload: text, secret, timestamp });
      const pathSecret = secretOfPath(tenant);
      const otherSecret = tenant === a.tenantId ? secrets.b : secrets.a;
      const signature: Record<string, string | undefined> = {
        'path-tenant': sign(pathSecret),
        'other-tenant': sign(otherSecret),
        'random-secret': sign(webhookSecret()),
        none: undefined,
        garbage: fc.sample(fc.oneof(fc.string({ maxLength: 80 }), fc.constantFrom('t=,v1=', 't=abc,v1=zz', 'v1=', 't=1', ',,,', `t=${now()},v1=${'0'.repeat(64)}`)), { numRuns: 1, seed: seed + index })[0],
        stale: sign(pathSecret, now() - 301),
        future: sign(pathSecret, now() + 3_600),
        'two-v1': `${sign(webhookSecret())},v1=${sign(pathSecret).split('v1=')[1]}`,
      };
      const sig = signature[how];
      const all: Record<string, string> = { ...Object.fromEntries(Object.entries(headers).filter(([, v]) => v !== '')) as Record<string, string> };
      if (sig !== undefined && /^[\t\x20-\x7e]*$/.test(sig)) all['stripe-signature'] = sig;
      const path = `/api/stripe/webhook/${tenant}`;
      const before = await recorded();
      let answer: Answer;
      try {
        answer = await post(path, payload, all, chunked);
      } catch (err) {
        failures.push(`case ${index}: no answer: ${String(err)} for ${path.slice(0, 80)} (${how}, ${payload.length} bytes)`);
        continue;
      }
      statuses.set(answer.status, (statuses.get(answer.status) ?? 0) + 1);
      const after = await recorded();
      const problems: string[] = [];
      const problem = problemOf(answer, 'POST');
      if (problem) problems.push(problem);
      const mayWrite =
        (tenant === a.tenantId || tenant === b.tenantId) && all['stripe-signature'] !== undefined && ['path-tenant', 'future', 'two-v1'].includes(how) && payload.length <= WEBHOOK_MAX_BYTES;
      if (payload.length > WEBHOOK_MAX_BYTES && answer.status !== 413) problems.push(`a body of ${payload.length} bytes answered ${answer.status}, not 413`);
      if (payload.length <= WEBHOOK_MAX_BYTES && answer.status === 413) problems.push(`a body of ${payload.length} bytes (within the limit) answered 413`);
      if (!mayWrite && answer.status === 200) problems.push(`accepted without the path tenant's signature (${how})`);
      if (!mayWrite && after !== before) problems.push(`wrote ${after - before} event rows without the path tenant's signature (${how})`);
      if (answer.status >= 400 && after !== before) problems.push(`refused (${answer.status}) but wrote ${after - before} rows`);
      if (after - before > 1) problems.push(`one delivery wrote ${after - before} rows`);
      for (const p of problems) failures.push(`case ${index} (seed ${seed}): ${p}\n    request: POST ${path.slice(0, 120)} signer=${how} chunked=${chunked} ${text.slice(0, 300)}`);
    }
    expect((await fetch(`${app.baseUrl}/health`)).status).toBe(200);
    expect(failures).toEqual([]);
  }, 300_000);

  it('takes a body of exactly BILLING_WEBHOOK_MAX_BYTES and refuses one byte more with 413, with and without Content-Length, writing nothing', async () => {
    const t = await app.createTenant();
    const whsec = await connect(t.ownerKey);
    const before = await recorded();
    for (const chunked of [false, true]) {
      const event = { id: `evt_${randomUUID().replace(/-/g, '')}`, type: 'charge.succeeded', data: { object: {} } };
      const at = padTo(event, WEBHOOK_MAX_BYTES);
      expect(at.length).toBe(WEBHOOK_MAX_BYTES);
      const sign = (payload: Buffer) => Stripe.webhooks.generateTestHeaderString({ payload: payload.toString('utf8'), secret: whsec, timestamp: Math.floor(Date.now() / 1000) });
      const past = padTo({ ...event, id: `evt_${randomUUID().replace(/-/g, '')}` }, WEBHOOK_MAX_BYTES + 1);
      expect(past.length).toBe(WEBHOOK_MAX_BYTES + 1);
      const refused = await post(`/api/stripe/webhook/${t.tenantId}`, past, { 'stripe-signature': sign(past), 'content-type': 'application/json' }, chunked);
      expect([refused.status, refused.body?.error?.code]).toEqual([413, 'PAYLOAD_TOO_LARGE']);
      expect(await recorded()).toBe(before + (chunked ? 1 : 0));
      const taken = await post(`/api/stripe/webhook/${t.tenantId}`, at, { 'stripe-signature': sign(at), 'content-type': 'application/json' }, chunked);
      expect([taken.status, taken.body?.outcome]).toEqual([200, 'ignored']);
      expect(await recorded()).toBe(before + (chunked ? 2 : 1));
    }
  });
});

/** The event as JSON padded (inside a `padding` field) to exactly `bytes` bytes. */
function padTo(event: Record<string, unknown>, bytes: number): Buffer {
  const bare = Buffer.byteLength(JSON.stringify({ ...event, padding: '' }));
  return Buffer.from(JSON.stringify({ ...event, padding: 'x'.repeat(Math.max(0, bytes - bare)) }));
}
