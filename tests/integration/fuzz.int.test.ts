import { createHash, randomUUID } from 'node:crypto';
import fc from 'fast-check';
import type { z } from 'zod';
import { appRouter } from '../../src/server/router';
import type { Meta } from '../../src/server/trpc';
import { usageEventInputSchema } from '../../src/domain/usage/event-schema';
import { exportQuerySchema } from '../../src/domain/analytics/export';
import { TestApp } from '../helpers/harness';
import { createIsolatedDatabase } from '../helpers/isolated-db';
import { EDGE_DATES, RawJson, arbitraryFor, describeValue, hostileValue, jsonLength, toJsonText, type ArbitraryOptions } from '../helpers/zod-arbitrary';
import { eventCount, readScoreboard, scoreboardChanges, type Scoreboard } from '../helpers/scoreboard';

/**
 * Every procedure of the router (enumerated from it, so a new one is fuzzed too), with inputs
 * derived from its own zod schema, valid-ish and hostile, sent over HTTP as curl would (queries
 * as GET ?input=, mutations as POST) with each kind of caller. Per call: no 5xx; every 4xx
 * names a field or a reason; a refused mutation writes nothing (audit rows aside); the server
 * still answers /health after each procedure.
 *
 * FUZZ_RUNS (default 20) sets the cases per procedure and caller allowed to reach the input
 * parser (callers refused before it get a fifth); FUZZ_SEED (default 1111) the seed.
 */
const RUNS = Number(process.env.FUZZ_RUNS ?? 20);
const SEED = Number(process.env.FUZZ_SEED ?? 1111);

interface Procedure {
  path: string;
  type: 'query' | 'mutation';
  meta: Meta;
  input: z.ZodType;
}

const procedures: Procedure[] = Object.entries(
  appRouter._def.procedures as unknown as Record<string, { _def: { type: 'query' | 'mutation'; meta: Meta; inputs: z.ZodType[] } }>,
).map(([path, p]) => ({ path, type: p._def.type, meta: p._def.meta, input: p._def.inputs[0]! }));
// Updating, deleting, revoking and suspending last, so that earlier procedures meet live fixtures
// (licenses.update turns usage tracking off, webhooks.update disables endpoints).
const DESTRUCTIVE = /\.(update|delete|revoke|remove|setStatus)$/;
procedures.sort((a, b) => Number(DESTRUCTIVE.test(a.path)) - Number(DESTRUCTIVE.test(b.path)));

interface Caller {
  name: string;
  key: () => string | null;
  headers?: () => Record<string, string>;
  /** Reaches the input parser of procedure `p` (not refused by authentication or role first). */
  reaches: (p: Procedure) => boolean;
}

const WEIRD_ZONES = [
  'Pacific/Apia', 'Pacific/Fakaofo', 'Pacific/Kwajalein', 'Pacific/Kiritimati', 'Pacific/Chatham', 'Australia/Lord_Howe',
  'Asia/Kathmandu', 'America/St_Johns', 'Etc/GMT+12', 'Etc/GMT-14', 'UTC', 'Europe/Berlin', 'America/Sao_Paulo',
];
const ZONES = Intl.supportedValuesOf('timeZone');

type Kind = 'tenant' | 'license' | 'threshold' | 'overage' | 'key' | 'webhook';
/** What an `id` names, by router; other uuid fields by their name. */
const KIND_OF_ROUTER: Record<string, Kind> = { tenants: 'tenant', licenses: 'license', thresholds: 'threshold', overages: 'overage', apiKeys: 'key', webhooks: 'webhook' };
const KIND_OF_FIELD: Record<string, Kind> = { licenseId: 'license', endpointId: 'webhook', actorKeyId: 'key', targetId: 'license' };

/**
 * Dictionaries for nodes a schema cannot describe: fixture ids of the kind a uuid field names
 * (this tenant's and the other's, mixed with random ones), time-zone names, batch events.
 */
function hintFor(p: Procedure | null) {
  const hint = (path: readonly string[], schema: z.ZodType, opts: ArbitraryOptions): fc.Arbitrary<unknown> | undefined => {
    const last = path[path.length - 1] ?? '';
    const kind = last === 'id' && p ? KIND_OF_ROUTER[p.path.split('.')[0]!] : KIND_OF_FIELD[last];
    if (kind && opts.mix === 'valid' && (schema as unknown as { _zod: { def: { format?: string } } })._zod.def.format === 'uuid') {
      return fc.oneof({ weight: 6, arbitrary: fc.constantFrom(...fixtures[kind]) }, fc.constantFrom(...fixtureIds()), fc.uuid());
    }
    if (last === 'timezone') {
      return fc.oneof(
        { weight: 3, arbitrary: fc.constantFrom(...WEIRD_ZONES) },
        { weight: 3, arbitrary: fc.constantFrom(...ZONES) },
        { weight: 1, arbitrary: fc.constantFrom('utc', 'Europe/Nowhere', 'GMT+1', '+01:00', 'Etc/../../etc/passwd', 'x'.repeat(65)) },
      );
    }
    // usage.trackEvents checks its events one by one in the domain with usageEventInputSchema
    if (path.length === 2 && path[0] === 'events' && last === '[]') {
      return fc.oneof({ weight: 4, arbitrary: arbitraryFor(usageEventInputSchema, { ...opts, hint: hintFor(null) }) }, fc.jsonValue({ maxDepth: 2 }));
    }
    return undefined;
  };
  return hint;
}

/** A valid-ish range has its start first (a reversed one is a 400 every time). */
function ordered(value: unknown): unknown {
  if (!value || typeof value !== 'object' || Array.isArray(value) || value instanceof RawJson) return value;
  const v = value as Record<string, unknown>;
  for (const [from, to] of [['startDate', 'endDate'], ['from', 'to']] as const) {
    if (typeof v[from] === 'string' && typeof v[to] === 'string' && v[from] > v[to]) return { ...v, [from]: v[to], [to]: v[from] };
  }
  return value;
}

/** Days a zone skipped or repeated, DST changes, leap days: as one-day ranges in a weird zone. */
const EDGE_DAYS = EDGE_DATES.filter((d) => !Number.isNaN(Date.parse(d)) && d >= '1970' && d <= '2040');
function fieldsOf(schema: z.ZodType): string[] {
  let def = (schema as unknown as { _zod: { def: { innerType?: z.ZodType; shape?: Record<string, unknown> } } })._zod.def;
  while (def.innerType) def = (def.innerType as unknown as { _zod: { def: typeof def } })._zod.def;
  return Object.keys(def.shape ?? {});
}
function withEdgeRange(value: unknown, zoned: boolean): fc.Arbitrary<unknown> {
  if (!value || typeof value !== 'object' || !('startDate' in value)) return fc.constant(value);
  return fc.tuple(fc.constantFrom(...EDGE_DAYS), fc.constantFrom(...WEIRD_ZONES)).map(([day, timezone]) => ({
    ...value,
    startDate: day,
    endDate: new Date(Date.parse(day) + 86_400_000).toISOString().slice(0, 10),
    ...(zoned ? { timezone } : {}),
  }));
}

/** Inputs for `p`: valid-ish (reaching the domain code), hostile, or hostile as a whole. */
function inputsFor(p: Procedure): fc.Arbitrary<unknown> {
  const opts = (mix: 'valid' | 'hostile'): ArbitraryOptions => ({ mix, ids: fixtureIds(), hint: hintFor(p) });
  return fc.oneof(
    { weight: 4, arbitrary: arbitraryFor(p.input, opts('valid')).map(ordered) },
    { weight: 1, arbitrary: arbitraryFor(p.input, opts('valid')).chain((v) => withEdgeRange(v, fieldsOf(p.input).includes('timezone'))) },
    { weight: 4, arbitrary: arbitraryFor(p.input, opts('hostile')) },
    { weight: 1, arbitrary: hostileValue() },
  );
}

function seedFor(...parts: string[]): number {
  return SEED ^ createHash('sha256').update(parts.join('|')).digest().readInt32LE(0);
}

let app: TestApp;
let db: ReturnType<typeof createIsolatedDatabase>;
let tenantA: string;
let keys: Record<'owner' | 'member' | 'ingest' | 'read', string>;
let fixtures: Record<Kind, string[]>;
const fixtureIds = () => Object.values(fixtures).flat();
let casesRun = 0;
/** Answers by status, printed at the end: a fuzz run that only ever sees 400s reaches nothing. */
const statuses = new Map<number, number>();
const tally = (status: number) => statuses.set(status, (statuses.get(status) ?? 0) + 1);
/** Procedures whose fuzzed calls succeeded at least once (the rest only ever met refusals). */
const succeeded = new Set<string>();

beforeAll(async () => {
  db = createIsolatedDatabase('fuzz');
  // signup.register open, with a limit the run cannot reach, so that its input parser is fuzzed too
  app = await TestApp.start({ DATABASE_URL: db.url, SIGNUP_MODE: 'open', SIGNUP_LIMIT: '1000000' });
  const a = await app.createTenant();
  const b = await app.createTenant();
  tenantA = a.tenantId;
  keys = {
    owner: a.ownerKey,
    member: (await app.createKey(a.ownerKey, 'member')).key,
    ingest: (await app.createKey(a.ownerKey, 'ingest')).key,
    read: (await app.createKey(a.ownerKey, 'read')).key,
  };
  const licenseA = (await app.createLicense(a.ownerKey)).id;
  const licenseA2 = (await app.createLicense(a.ownerKey, { plan: 'trial', timezone: 'Pacific/Apia' })).id;
  const licenseB = (await app.createLicense(b.ownerKey)).id;
  const threshold = async (owner: string, licenseId: string) => {
    const res = await app.call('thresholds.create', { licenseId, usageType: 'api_call', periodType: 'monthly', limitQuantity: 1000 }, owner);
    return res.data.id as string;
  };
  const webhook = async (owner: string) => (await app.call('webhooks.create', { url: 'https://example.com/hook' }, owner)).data?.id as string | undefined;
  const thresholdA = await threshold(a.ownerKey, licenseA);
  const thresholdB = await threshold(b.ownerKey, licenseB);
  const now = new Date();
  const overage = (tenantId: string, licenseId: string, thresholdId: string) =>
    app.prisma.usageOverage.create({
      data: {
        tenantId, licenseId, thresholdId, usageType: 'api_call', periodType: 'monthly',
        periodStart: now, periodEnd: now, quantity: '1', rateCents: 1, feeCents: 1n,
      },
    });
  const events = Array.from({ length: 50 }, (_, i) => ({
    licenseId: licenseA, usageType: i % 2 ? 'api_call' : 'storage.gb', quantity: i + 1, platform: 'ios', userId: `u${i % 7}`,
    occurredAt: new Date(now.getTime() - i * 3_600_000).toISOString(),
  }));
  await app.call('usage.trackEvents', { events }, a.ownerKey);
  const webhooks = [await webhook(a.ownerKey), await webhook(b.ownerKey)].filter((id): id is string => id !== undefined);
  fixtures = {
    tenant: [tenantA, b.tenantId],
    license: [licenseA, licenseA2, licenseB],
    threshold: [thresholdA, thresholdB],
    overage: [(await overage(a.tenantId, licenseA, thresholdA)).id, (await overage(b.tenantId, licenseB, thresholdB)).id],
    // not the keys the callers use: revoking those would end the run for that role
    key: [(await app.createKey(a.ownerKey, 'read')).id, (await app.createKey(b.ownerKey, 'read')).id],
    webhook: webhooks.length ? webhooks : [randomUUID()],
  };
});

afterAll(async () => {
  const byStatus = [...statuses].sort(([a], [b]) => a - b).map(([status, n]) => `${status}: ${n}`).join(', ');
  console.log(`fuzz: ${casesRun} cases over ${procedures.length} procedures (FUZZ_RUNS=${RUNS}, FUZZ_SEED=${SEED}); answers ${byStatus}`);
  const neverOk = procedures.filter((p) => !succeeded.has(p.path)).map((p) => p.path);
  if (neverOk.length) console.log(`fuzz: no fuzzed call succeeded for ${neverOk.join(', ')}`);
  await app?.close();
  await db?.drop();
});

const allows = (p: Procedure, role: string) => p.meta.scope === 'public' || (p.meta.scope !== 'platform' && (p.meta.roles as readonly string[]).includes(role));
const callers: Caller[] = [
  { name: 'admin+tenant', key: () => app.adminKey, headers: () => ({ 'x-tally-tenant': tenantA }), reaches: () => true },
  { name: 'admin', key: () => app.adminKey, reaches: (p) => p.meta.scope !== 'tenant' },
  ...(['owner', 'member', 'ingest', 'read'] as const).map((role) => ({ name: role, key: () => keys[role], reaches: (p: Procedure) => allows(p, role) })),
  { name: 'no key', key: () => null, reaches: (p) => p.meta.scope === 'public' },
  { name: 'bad key', key: () => `tk_live_${randomUUID().replace(/-/g, '').slice(0, 24)}`, reaches: (p) => p.meta.scope === 'public' },
];

interface Answer {
  status: number;
  text: string;
  body: any;
}

/** As curl would send it: a query as GET ?input=<json>, a mutation as a POST of JSON. */
async function send(p: Procedure, input: unknown, caller: Caller): Promise<Answer> {
  const headers: Record<string, string> = { 'content-type': 'application/json', ...caller.headers?.() };
  const key = caller.key();
  if (key !== null) headers.authorization = `Bearer ${key}`;
  const json = input === undefined ? undefined : toJsonText(input);
  const url =
    p.type === 'query'
      ? `${app.baseUrl}/api/trpc/${p.path}${json === undefined ? '' : `?input=${encodeURIComponent(json)}`}`
      : `${app.baseUrl}/api/trpc/${p.path}`;
  const response = await fetch(url, { method: p.type === 'query' ? 'GET' : 'POST', headers, body: p.type === 'mutation' ? (json ?? '') : undefined });
  const text = await response.text();
  let body: any;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  return { status: response.status, text, body };
}

/** What is wrong with a refusal's body, or null: it must name a field (issues with a path) or a reason. */
export function refusalProblem(answer: Answer): string | null {
  const error = answer.body?.error;
  if (!error) return `no error body: ${answer.text.slice(0, 200) || '(empty)'}`;
  const issues: unknown = error.data?.issues ?? error.issues;
  if (Array.isArray(issues) && issues.length > 0 && issues.every((i) => Array.isArray(i?.path))) return null;
  const code = error.data?.code ?? error.code;
  if (typeof error.message === 'string' && error.message.trim() !== '' && typeof code === 'string' && code !== '') return null;
  return `a refusal without a field or reason: ${answer.text.slice(0, 300)}`;
}

/** Sends one case and returns what is wrong with the answer, or null. */
async function fuzzCall(p: Procedure, input: unknown, caller: Caller): Promise<string | null> {
  const before: Scoreboard | null = p.type === 'mutation' ? await readScoreboard(app.services.db.pool) : null;
  let answer: Answer;
  try {
    answer = await send(p, input, caller);
  } catch (err) {
    return `no answer: ${String((err as Error).cause ?? err)}`;
  } finally {
    casesRun++;
  }
  tally(answer.status);
  if (answer.status < 300) succeeded.add(p.path);
  if (process.env.FUZZ_TRACE) process.stderr.write(`  -> ${answer.status} ${process.memoryUsage().heapUsed >> 20}MB ${answer.text.slice(0, 150)}\n`);
  if (answer.status >= 500) return `${answer.status}: ${answer.text.slice(0, 300)}`;
  if (answer.status >= 400) {
    const problem = refusalProblem(answer);
    if (problem) return `${answer.status}: ${problem}`;
  }
  if (before) {
    const after = await readScoreboard(app.services.db.pool);
    if (answer.status >= 400) {
      const changes = scoreboardChanges(before, after);
      if (changes.length) return `refused with ${answer.status} yet wrote: ${changes.join(', ')}`;
    } else if (p.path === 'usage.trackEvents') {
      const stored = eventCount(after) - eventCount(before);
      if (stored !== answer.body.result.data.accepted) return `accepted ${answer.body.result.data.accepted} events, stored ${stored}`;
    } else if (p.path === 'usage.trackEvent') {
      const stored = eventCount(after) - eventCount(before);
      if (stored !== (answer.body.result.data.duplicate ? 0 : 1)) return `answered ${answer.text.slice(0, 200)}, stored ${stored}`;
    }
  }
  return null;
}

describe.each(procedures)('fuzz $path', (p) => {
  it('answers every caller with no 5xx, a named reason for each refusal, and no write on a refusal', async () => {
    const failures: string[] = [];
    for (const caller of callers) {
      const runs = caller.reaches(p) ? RUNS : Math.max(2, Math.ceil(RUNS / 5));
      const seed = seedFor(p.path, caller.name);
      const cases = fc.sample(inputsFor(p), { numRuns: runs, seed });
      for (const [index, input] of cases.entries()) {
        if (process.env.FUZZ_TRACE) process.stderr.write(`${p.path} ${caller.name} ${index} ${process.memoryUsage().heapUsed >> 20}MB ${jsonLength(input, 1e9)} chars ${jsonLength(input, 1000) < 1000 ? describeValue(input) : ''}\n`);
        const problem = await fuzzCall(p, input, caller);
        if (problem) failures.push(`${caller.name} (seed ${seed}, case ${index}): ${problem}\n    input: ${describeValue(input)}`);
      }
    }
    const health = await fetch(`${app.baseUrl}/health`);
    expect(health.status).toBe(200);
    expect(failures).toEqual([]);
  }, 60_000 + RUNS * 8 * 1_000);
});

/** Reads an answer as `send` does. */
async function request(path: string, init: RequestInit): Promise<Answer> {
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

/**
 * Runs `cases` raw requests and checks each answer as `fuzzCall` does (a batch answers an
 * array: each refused element names its reason); with `writes: false`, nothing may be written
 * on a refusal.
 */
async function fuzzRaw<T>(name: string, arbitrary: fc.Arbitrary<T>, runs: number, toRequest: (value: T) => [string, RequestInit]): Promise<string[]> {
  const failures: string[] = [];
  const seed = seedFor('raw', name);
  for (const [index, value] of fc.sample(arbitrary, { numRuns: runs, seed }).entries()) {
    const [path, init] = toRequest(value);
    const before = await readScoreboard(app.services.db.pool);
    let answer: Answer;
    try {
      answer = await request(path, init);
      tally(answer.status);
    } catch (err) {
      failures.push(`${name} (seed ${seed}, case ${index}): no answer: ${String((err as Error).cause ?? err)} for ${init.method} ${path.slice(0, 200)}`);
      continue;
    } finally {
      casesRun++;
    }
    const problems: string[] = [];
    if (answer.status >= 500) problems.push(`${answer.status}: ${answer.text.slice(0, 300)}`);
    const parts: Answer[] = Array.isArray(answer.body) ? answer.body.map((body: any) => ({ status: body?.error?.data?.httpStatus ?? 200, text: JSON.stringify(body), body })) : [answer];
    for (const part of parts) {
      if (part.status >= 500) problems.push(`${part.status}: ${part.text.slice(0, 300)}`);
      else if (part.status >= 400) {
        const problem = refusalProblem(part);
        if (problem) problems.push(`${part.status}: ${problem}`);
      }
    }
    if (answer.status >= 400 || parts.every((part) => part.status >= 400)) {
      const changes = scoreboardChanges(before, await readScoreboard(app.services.db.pool));
      if (changes.length) problems.push(`refused with ${answer.status} yet wrote: ${changes.join(', ')}`);
    }
    for (const problem of problems) {
      failures.push(`${name} (seed ${seed}, case ${index}): ${problem}\n    request: ${init.method} ${path.slice(0, 300)} ${describeValue(init.headers, 200)} ${String(init.body ?? '').slice(0, 300)}`);
    }
  }
  return failures;
}

const RAW_RUNS = Math.max(10, RUNS * 2);
const mutations = () => procedures.filter((p) => p.type === 'mutation');
const anyCaller = () => fc.constantFrom(...callers);
const headersOf = (caller: Caller, extra: Record<string, string> = {}): Record<string, string> => {
  const key = caller.key();
  return { ...(key === null ? {} : { authorization: `Bearer ${key}` }), ...caller.headers?.(), ...extra };
};
const validInput = (p: Procedure) => arbitraryFor(p.input, { mix: 'valid', ids: fixtureIds(), hint: hintFor(p) }).map(ordered);

describe('fuzz raw HTTP', () => {
  it('answers bodies that are not JSON (or not whole) with a named reason and writes nothing', async () => {
    const body = fc.oneof(
      fc.constantFrom('{', '{"a":', '[1,2', '{"a":1}}', 'nul', 'undefined', "{'a':1}", '{"a":1,}', '\u0000', '\uFEFF{}', '{"name":"x"}garbage', '1e400', '"\\uD800"', '{"__proto__":{"polluted":true}}'),
      fc.string({ maxLength: 200, unit: 'binary' }),
      fc.uint8Array({ maxLength: 200 }).map((bytes) => Buffer.from(bytes).toString('latin1')),
      fc.constantFrom(10, 1_000, 100_000).map((n) => '['.repeat(n)),
    );
    const failures = await fuzzRaw('invalid JSON', fc.tuple(fc.constantFrom(...mutations()), anyCaller(), body), RAW_RUNS, ([p, caller, text]) => [
      `/api/trpc/${p.path}`,
      { method: 'POST', headers: headersOf(caller, { 'content-type': 'application/json' }), body: text },
    ]);
    expect(failures).toEqual([]);
  });

  it('answers other content types and methods with a named reason', async () => {
    const contentType = fc.constantFrom(
      'text/plain', 'multipart/form-data; boundary=x', 'application/xml', 'application/json; charset=utf-16', 'application/jsonl',
      'APPLICATION/JSON', 'application/x-www-form-urlencoded', 'application/octet-stream', 'application/json, text/plain', '',
    );
    const method = fc.constantFrom('POST', 'POST', 'GET', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'HEAD');
    const arbitrary = fc.constantFrom(...procedures).chain((p) => fc.tuple(fc.constant(p), validInput(p), anyCaller(), contentType, method));
    const failures = await fuzzRaw('content types', arbitrary, RAW_RUNS, ([p, input, caller, type, verb]) => {
      const json = toJsonText(input);
      const query = verb === 'GET' || verb === 'HEAD' || verb === 'DELETE' || verb === 'OPTIONS';
      return [
        `/api/trpc/${p.path}${query ? `?input=${encodeURIComponent(json)}` : ''}`,
        { method: verb, headers: headersOf(caller, type ? { 'content-type': type } : {}), body: query ? undefined : json },
      ];
    });
    // HEAD answers carry no body by definition: their status alone is checked
    expect(failures.filter((f) => !/ HEAD \//.test(f) || /: 5\d\d:/.test(f))).toEqual([]);
  });

  it('answers batch calls (a,b?batch=1) element by element, without a 5xx', async () => {
    const pair = fc.tuple(fc.constantFrom(...procedures), fc.constantFrom(...procedures)).filter(([a, b]) => a.type === b.type);
    const arbitrary = pair.chain(([a, b]) =>
      fc.tuple(fc.constant([a, b] as const), validInput(a), fc.oneof(validInput(b), hostileValue()), anyCaller(), fc.constantFrom('?batch=1', '?batch=true', '?batch=0', '')),
    );
    const failures = await fuzzRaw('batch', arbitrary, RAW_RUNS, ([[a, b], inputA, inputB, caller, batch]) => {
      const inputs = `{"0":${toJsonText(inputA)},"1":${toJsonText(inputB)}}`;
      return a.type === 'query'
        ? [`/api/trpc/${a.path},${b.path}${batch}${batch ? '&' : '?'}input=${encodeURIComponent(inputs)}`, { method: 'GET', headers: headersOf(caller) }]
        : [`/api/trpc/${a.path},${b.path}${batch}`, { method: 'POST', headers: headersOf(caller, { 'content-type': 'application/json' }), body: inputs }];
    });
    expect(failures).toEqual([]);
  });

  it('answers random paths under /api/trpc and /api/export with a named reason', async () => {
    const segment = fc.oneof(
      fc.stringMatching(/^[A-Za-z0-9_.,$-]{0,40}$/),
      fc.constantFrom('..', '%2e%2e', '%zz', '%00', '%F0%9F%92%A9', '%uD800', 'usage.trackEvent/', 'usage..trackEvent', 'licenses.create.', '__proto__', 'constructor', 'events', 'rollups', 'events/../rollups'),
      fc.constant('a'.repeat(2_000)),
      fc.constantFrom(...procedures.map((p) => p.path)),
    );
    const query = fc.oneof(fc.constant(''), fc.constantFrom('?input=', '?input=%7B', '?input=null', '?input={}&input={}', '?batch=1', '?format=json&startDate=2026-01-01&endDate=2026-01-02', '?%zz'));
    const arbitrary = fc.tuple(fc.constantFrom('/api/trpc/', '/api/export/'), fc.array(segment, { minLength: 1, maxLength: 3 }), query, anyCaller(), fc.constantFrom('GET', 'POST'));
    const failures = await fuzzRaw('random paths', arbitrary, RAW_RUNS, ([base, segments, q, caller, verb]) => [
      `${base}${segments.join('/')}${q}`,
      { method: verb, headers: headersOf(caller, { 'content-type': 'application/json' }), body: verb === 'POST' ? '{}' : undefined },
    ]);
    expect(failures).toEqual([]);
  });

  it('answers exports with inputs from their own schema with a named reason', async () => {
    const arbitrary = fc.tuple(
      fc.constantFrom('events', 'rollups'),
      inputsFor({ path: 'export', type: 'query', meta: { roles: [], scope: 'tenant' }, input: exportQuerySchema }),
      anyCaller(),
    );
    const failures = await fuzzRaw('exports', arbitrary, RAW_RUNS, ([kind, input, caller]) => {
      const params = new URLSearchParams();
      if (input && typeof input === 'object' && !Array.isArray(input) && !(input instanceof RawJson)) {
        for (const [k, v] of Object.entries(input)) if (v !== undefined) params.append(k, typeof v === 'string' ? v : toJsonText(v));
      }
      return [`/api/export/${kind}?${params.toString()}`, { method: 'GET', headers: headersOf(caller) }];
    });
    expect(failures).toEqual([]);
  });

  it('answers huge, odd and many headers with a named reason', async () => {
    const header = fc.oneof(
      fc.constantFrom(1_000, 15_000, 17_000, 100_000).map((n) => ({ authorization: `Bearer tk_live_${'A'.repeat(n)}` })),
      fc.constantFrom(1_000, 15_000, 17_000).map((n) => ({ 'user-agent': `tally-sdk/${'9'.repeat(n)}` })),
      fc.constantFrom(100, 15_000, 17_000).map((n) => ({ 'x-request-id': 'r'.repeat(n) })),
      fc.constantFrom('not-a-uuid', '', ' ', '00000000-0000-0000-0000-000000000000', 'x'.repeat(10_000)).map((t) => ({ 'x-tally-tenant': t })),
      fc.constantFrom('Basic YTpi', 'Bearer', 'Bearer ', 'bearer tk_live_x', 'Bearer tk_live_\u00e9', 'Token x', 'Bearer a b c').map((a) => ({ authorization: a })),
      fc.integer({ min: 50, max: 300 }).map((n) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`x-h${i}`, 'v'.repeat(40)]))),
    );
    const arbitrary = fc.constantFrom(...procedures).chain((p) => fc.tuple(fc.constant(p), validInput(p), anyCaller(), header));
    const failures = await fuzzRaw('headers', arbitrary, RAW_RUNS, ([p, input, caller, extra]) => {
      const json = toJsonText(input);
      const init: RequestInit =
        p.type === 'query'
          ? { method: 'GET', headers: headersOf(caller, extra) }
          : { method: 'POST', headers: headersOf(caller, { 'content-type': 'application/json', ...extra }), body: json };
      return [`/api/trpc/${p.path}${p.type === 'query' ? `?input=${encodeURIComponent(json)}` : ''}`, init];
    });
    expect(failures).toEqual([]);
  });

  it('still answers /health', async () => {
    expect((await fetch(`${app.baseUrl}/health`)).status).toBe(200);
  });
});
