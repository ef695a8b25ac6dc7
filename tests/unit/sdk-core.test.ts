import { Tally, backoffDelay, retryAfterMs, type TallyErrorReport } from '../../sdk/src/index';
import { EventQueue } from '../../sdk/src/event-queue';
import { WireBuffer } from '../../sdk/src/wire-buffer';
import { type RequestEvent, TRACK_REQUEST, TRACK_WIRE, isoOf, requestEventBytes, requestEventWire, writeRequestEvent } from '../../sdk/src/client';
import { SDK_VERSION } from '../../sdk/src/version';
import { uuidV4 } from '../../sdk/src/uuid';
import { REQUEST_ID_PATTERN, compilePattern, createBillingCore, matchRoute, pathOf, refusalOf, requestIdFrom } from '../../sdk/src/middleware';

describe('route patterns', () => {
  const patterns = ['POST /v1/generate', '/v1/search/*', 'GET /v1/items/:id', 'GET /files/*.csv'].map(compilePattern);
  const match = (method: string, path: string) => matchRoute(patterns, method, path)?.pattern;

  it('matches method and path, :params as one segment, * as the rest', () => {
    expect(match('POST', '/v1/generate')).toBe('/v1/generate');
    expect(match('post', '/v1/generate/')).toBe('/v1/generate');
    expect(match('GET', '/v1/generate')).toBeUndefined();
    expect(match('DELETE', '/v1/search/a/b/c')).toBe('/v1/search/*');
    expect(match('GET', '/v1/search')).toBeUndefined();
    expect(match('GET', '/v1/items/42')).toBe('/v1/items/:id');
    expect(match('HEAD', '/v1/items/42')).toBe('/v1/items/:id');
    expect(match('GET', '/v1/items/42/parts')).toBeUndefined();
    expect(match('GET', '/files/report.csv')).toBe('/files/*.csv');
    expect(match('GET', '/files/a/report.csv')).toBeUndefined();
    expect(match('GET', '/v1/generateX')).toBeUndefined();
  });

  it('treats regex characters in patterns literally', () => {
    const [p] = [compilePattern('GET /v1/a.b+c')];
    expect(p!.regex.test('/v1/a.b+c')).toBe(true);
    expect(p!.regex.test('/v1/aXbbc')).toBe(false);
    expect(() => compilePattern('GET v1/no-slash')).toThrow(/must start with/);
  });

  it('takes the path of a request target or URL, without query or fragment', () => {
    expect(pathOf('/v1/items/1?x=2')).toBe('/v1/items/1');
    expect(pathOf('http://h:1/v1/x#f')).toBe('/v1/x');
    expect(pathOf('https://h')).toBe('/');
    expect(pathOf('')).toBe('/');
  });
});

describe('request ids', () => {
  it('keeps a well-formed caller id of up to 128 characters and replaces anything else', () => {
    expect(requestIdFrom('a'.repeat(128))).toBe('a'.repeat(128));
    expect(requestIdFrom('a'.repeat(129))).toMatch(/^[0-9a-f-]{36}$/);
    expect(requestIdFrom('req-1.2_3:4')).toBe('req-1.2_3:4');
    for (const bad of ['', 'has space', 'semi;colon', 'naïve', '../x', undefined, null]) expect(requestIdFrom(bad)).not.toBe(bad);
    expect(requestIdFrom(['first', 'second'])).toBe('first');
    expect(REQUEST_ID_PATTERN.test('x\n')).toBe(false);
  });

  it('made here are random version-4 UUIDs, unique across many draws of random bytes', () => {
    const ids = Array.from({ length: 20_000 }, () => uuidV4()); // 256 per draw: ~80 draws
    const v4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
    expect(ids.filter((id) => !v4.test(id))).toEqual([]);
    expect(new Set(ids).size).toBe(ids.length);
    // every random hex position takes all 16 values (a position stuck by a bug would not); the
    // variant's position takes its 4
    for (let at = 0; at < 36; at++) {
      if ([8, 13, 14, 18, 23].includes(at)) continue;
      expect(new Set(ids.map((id) => id[at])).size).toBe(at === 19 ? 4 : 16);
    }
    expect(requestIdFrom(undefined)).toMatch(v4);
  });
});

describe('refusals', () => {
  const now = Date.parse('2026-11-30T10:00:00Z');
  const limit = (periodType: 'daily' | 'monthly', periodEnd: string, allowed: boolean) => ({
    periodType, periodStart: '2026-11-01T00:00:00.000Z', periodEnd, limit: '5', cap: '5', hard: true, used: allowed ? '1' : '5', remaining: allowed ? '4' : '0', allowed,
  });

  it('describes the refusing hard limit that resets last, with Tally\'s headers', () => {
    const r = refusalOf(
      { allowed: false, usageType: 'api_call', limits: [limit('daily', '2026-12-01T00:00:00.000Z', false), limit('monthly', '2026-12-01T00:00:00.000Z', true)] },
      now,
    );
    expect(r.status).toBe(429);
    expect(r.headers).toEqual({
      'RateLimit-Limit': '5',
      'RateLimit-Remaining': '0',
      'RateLimit-Reset': '50400',
      'X-RateLimit-Limit': '5',
      'X-RateLimit-Remaining': '0',
      'X-RateLimit-Reset': String(Date.parse('2026-12-01T00:00:00Z') / 1000),
      'Retry-After': '50400',
    });
    expect(r.body).toMatchObject({ error: { code: 'QUOTA_EXCEEDED', period: 'daily', message: 'api_call quota of 5 per day used up; retry in 50400 s' } });
    const two = refusalOf({ allowed: false, usageType: 'api_call', limits: [limit('daily', '2026-12-01T00:00:00.000Z', false), limit('monthly', '2026-12-30T00:00:00.000Z', false)] }, now);
    expect(two.body).toMatchObject({ error: { period: 'monthly' } });
  });
});

describe('retry timing', () => {
  it('reads Retry-After as seconds or an HTTP date', () => {
    expect(retryAfterMs('3')).toBe(3000);
    expect(retryAfterMs('0')).toBe(0);
    expect(retryAfterMs('Mon, 30 Nov 2026 10:00:05 GMT', Date.parse('2026-11-30T10:00:00Z'))).toBe(5000);
    expect(retryAfterMs('Mon, 30 Nov 2026 09:00:00 GMT', Date.parse('2026-11-30T10:00:00Z'))).toBe(0);
    expect(retryAfterMs('soon')).toBeUndefined();
    expect(retryAfterMs(null)).toBeUndefined();
  });

  it('backs off exponentially with full jitter, capped', () => {
    expect([0, 1, 2, 3].map((a) => backoffDelay(a, 100, 1000, () => 1))).toEqual([100, 200, 400, 800]);
    expect(backoffDelay(4, 100, 1000, () => 1)).toBe(1000);
    expect(backoffDelay(500, 100, 1000, () => 1)).toBe(1000);
    expect(backoffDelay(3, 100, 1000, () => 0)).toBe(0);
  });
});

describe('client options', () => {
  it('takes batches of 1 to 1,000 events', async () => {
    const ok = new Tally({ apiKey: 'k', baseUrl: 'http://127.0.0.1:1', maxBatchSize: 1000 });
    await ok.shutdown({ timeoutMs: 10 });
    expect(() => new Tally({ apiKey: 'k', baseUrl: 'http://127.0.0.1:1', maxBatchSize: 1001 })).toThrow(RangeError);
    expect(() => new Tally({ apiKey: 'k', baseUrl: 'http://127.0.0.1:1', maxBatchSize: 0 })).toThrow(RangeError);
    expect(() => new Tally({ apiKey: '', baseUrl: 'http://x' })).toThrow(/apiKey/);
  });

  it('is not a thenable (the router proxy must not answer `then`)', async () => {
    const tally = new Tally({ apiKey: 'k', baseUrl: 'http://127.0.0.1:1' });
    expect((tally as unknown as { then?: unknown }).then).toBeUndefined();
    expect(await Promise.resolve(tally)).toBe(tally);
    expect(typeof tally.licenses.get.query).toBe('function');
    await tally.shutdown({ timeoutMs: 10 });
  });
});

describe('billing core', () => {
  it('answers a licenseId given as any thenable (not only a native promise) with a native promise of the decision', async () => {
    const tally = new Tally({ apiKey: 'k', baseUrl: 'http://127.0.0.1:1' });
    const thenable = { then: (resolve: (v: string) => void) => resolve('lic-1') };
    const core = createBillingCore<object, object>({ tally, billableRoutes: ['POST /v1/generate'], licenseId: () => thenable as unknown as Promise<string> });
    const decided = core.before({}, 'POST', '/v1/generate', 'req-1');
    expect(decided).toBeInstanceOf(Promise); // the adapters tell sync from async decisions this way
    await expect(decided).resolves.toMatchObject({ billable: true, licenseId: 'lic-1', requestId: 'req-1' });
    await tally.shutdown({ timeoutMs: 10 });
  });
});

describe('events on the wire', () => {
  /** The events of every trackEvents body the client sends, answered as Tally answers (all accepted). */
  function capturing() {
    const sent: Record<string, unknown>[] = [];
    const fetchImpl = (async (_url: string | URL | Request, init?: RequestInit) => {
      const body = JSON.parse(new TextDecoder().decode(init?.body as Uint8Array)) as { events: Record<string, unknown>[]; includeResults?: boolean };
      sent.push(...body.events);
      const results = body.includeResults === false ? [] : body.events.map((_, index) => ({ index, eventId: `e${index}`, status: 'accepted' }));
      return new Response(JSON.stringify({ result: { data: { accepted: body.events.length, duplicates: 0, rejected: [], results } } }), { status: 200 });
    }) as typeof fetch;
    return { sent, fetchImpl };
  }

  it('asks Tally to leave out the per-event results, and sends the same bytes plainly to a Tally that does not know the field', async () => {
    const bodies: string[] = [];
    let knowsIncludeResults = true;
    const fetchImpl = (async (_url: string | URL | Request, init?: RequestInit) => {
      const text = new TextDecoder().decode(init?.body as Uint8Array);
      bodies.push(text);
      const body = JSON.parse(text) as { events: unknown[]; includeResults?: boolean };
      if (!knowsIncludeResults && 'includeResults' in body) {
        // what a strict input schema answers for a key it does not know (tRPC's 400)
        const error = { message: '[{"code":"unrecognized_keys","keys":["includeResults"],"path":[],"message":"Unrecognized key: \\"includeResults\\""}]', code: -32600, data: { code: 'BAD_REQUEST', httpStatus: 400 } };
        return new Response(JSON.stringify({ error }), { status: 400 });
      }
      const results = body.includeResults === false ? [] : body.events.map((_, index) => ({ index, eventId: `e${index}`, status: 'accepted' }));
      return new Response(JSON.stringify({ result: { data: { accepted: body.events.length - 1, duplicates: 1, rejected: [], results } } }), { status: 200 });
    }) as typeof fetch;
    const reports: TallyErrorReport[] = [];
    const tally = new Tally({ apiKey: 'k', baseUrl: 'http://127.0.0.1:1', fetch: fetchImpl, maxBatchSize: 3, maxConcurrentBatches: 1, onError: (r) => reports.push(r) });
    for (let i = 0; i < 3; i++) await tally.track({ licenseId: 'lic', usageType: 'api_call', idempotencyKey: `a${i}` });
    await tally.flush();
    expect(bodies).toHaveLength(1);
    expect(bodies[0]).toMatch(/^\{"includeResults":false,"events":\[\{"licenseId":"lic","usageType":"api_call","idempotencyKey":"a0"/);
    expect(tally.stats()).toMatchObject({ accepted: 2, duplicates: 1 });

    knowsIncludeResults = false;
    for (let i = 0; i < 4; i++) await tally.track({ licenseId: 'lic', usageType: 'api_call', idempotencyKey: `b${i}` });
    await tally.flush();
    // the refused lean body, then the same batch plain; the next batch plain from the start
    expect(bodies.slice(1).map((b) => (JSON.parse(b) as { events: { idempotencyKey: string }[]; includeResults?: boolean }))).toEqual([
      { includeResults: false, events: [{ licenseId: 'lic', usageType: 'api_call', idempotencyKey: 'b0', occurredAt: expect.any(String), sdkVersion: expect.any(String) }, expect.objectContaining({ idempotencyKey: 'b1' }), expect.objectContaining({ idempotencyKey: 'b2' })] },
      { events: [expect.objectContaining({ idempotencyKey: 'b0' }), expect.objectContaining({ idempotencyKey: 'b1' }), expect.objectContaining({ idempotencyKey: 'b2' })] },
      { events: [expect.objectContaining({ idempotencyKey: 'b3' })] },
    ]);
    expect(bodies[2]!.startsWith('{"events":[')).toBe(true);
    expect(tally.stats()).toMatchObject({ accepted: 4, duplicates: 3, retries: 0, dropped: 0 });
    expect(reports).toEqual([]);
    await tally.shutdown({ timeoutMs: 100 });
  });

  it('keeps the key and time however the event object carries them (getters, prototypes, toJSON) and adds them when it has none', async () => {
    const { sent, fetchImpl } = capturing();
    const tally = new Tally({ apiKey: 'k', baseUrl: 'http://127.0.0.1:1', fetch: fetchImpl });
    class Billed {
      readonly licenseId = 'lic';
      get idempotencyKey() {
        return 'from-getter';
      }
    }
    const inherited = Object.create({ idempotencyKey: 'from-prototype', occurredAt: '2026-11-30T10:00:00.000Z' }) as Record<string, unknown>;
    inherited.licenseId = 'lic';
    const hidden = { licenseId: 'lic' };
    Object.defineProperty(hidden, 'idempotencyKey', { value: 'non-enumerable', enumerable: false });
    const withToJson = { licenseId: 'lic', toJSON: () => ({ licenseId: 'lic', idempotencyKey: 'from-toJSON' }) };
    const events = [new Billed(), inherited, hidden, withToJson, { licenseId: 'lic', idempotencyKey: 'plain' }, { licenseId: 'lic' }, { licenseId: 'lic', idempotencyKey: null }];
    for (const event of events) await tally.track(event as never);
    await tally.flush();
    expect(sent.map((e) => e.idempotencyKey).slice(0, 5)).toEqual(['from-getter', 'from-prototype', 'non-enumerable', 'from-toJSON', 'plain']);
    expect(sent[5]!.idempotencyKey).toMatch(/^[0-9a-f-]{36}$/);
    expect(sent[6]!.idempotencyKey).toMatch(/^[0-9a-f-]{36}$/);
    expect(sent[1]!.occurredAt).toBe('2026-11-30T10:00:00.000Z');
    for (const e of sent) {
      expect(Object.keys(e).filter((k) => k === 'idempotencyKey')).toHaveLength(1);
      expect(typeof e.occurredAt).toBe('string');
      expect(e.licenseId).toBe('lic');
      expect(e.toJSON).toBeUndefined();
    }
    await tally.shutdown({ timeoutMs: 100 });
  });

  it('reports an event that is not JSON (a BigInt, a cycle) to onError instead of throwing, and sends the others', async () => {
    const { sent, fetchImpl } = capturing();
    const reports: TallyErrorReport[] = [];
    const tally = new Tally({ apiKey: 'k', baseUrl: 'http://127.0.0.1:1', fetch: fetchImpl, onError: (r) => reports.push(r) });
    const cyclic: Record<string, unknown> = { licenseId: 'lic' };
    cyclic.properties = { self: cyclic };
    await expect(tally.track({ licenseId: 'lic', quantity: 10n } as never)).resolves.toBeUndefined();
    await expect(tally.track(cyclic as never)).resolves.toBeUndefined();
    await tally.track({ licenseId: 'lic', usageType: 'api_call' });
    await tally.flush();
    expect(reports.map((r) => (r.kind === 'rejected' ? r.code : r.kind))).toEqual(['UNSERIALIZABLE', 'UNSERIALIZABLE']);
    expect(sent).toHaveLength(1);
    expect(tally.stats()).toMatchObject({ tracked: 3, rejected: 2, accepted: 1 });
    await tally.shutdown({ timeoutMs: 100 });
  });
});

describe('request events written field by field', () => {
  const base: RequestEvent = {
    licenseId: 'lic-1',
    usageType: 'api_call',
    quantity: 1,
    idempotencyKey: 'req:lic-1:abc',
    route: '/v1/items/:id',
    method: 'GET',
    statusCode: 200,
    durationMs: 3,
  };

  it('give the JSON that JSON.stringify gives, for any text (quotes, backslashes, controls, unicode) and number', () => {
    const texts = ['plain', 'a"b', 'back\\slash', 'tab\tnew\nline', '\u0000\u001f\u007f', 'é ü 漢字 😀', '\ud800 lone', '', ' ~!#[]{}'];
    const quantities: (number | string)[] = [1, 0, 2.5, 1e21, 1e-7, -0, Number.NaN, Number.POSITIVE_INFINITY, '1.000001', '3'];
    let i = 0;
    for (const text of texts) {
      for (const quantity of quantities) {
        const event: RequestEvent = { ...base, licenseId: text, usageType: `t${text}`, route: text, quantity, idempotencyKey: `req:${text}:${i++}` };
        if (i % 2) Object.assign(event, { userId: text, userEmail: `${text}@x`, organization: text });
        if (i % 3 === 0) event.statusCode = undefined;
        const before = Date.now();
        const wire = requestEventWire(event)!;
        const parsed = JSON.parse(wire) as Record<string, unknown>;
        const { occurredAt, sdkVersion, ...rest } = parsed;
        expect(rest).toEqual(JSON.parse(JSON.stringify(event)));
        expect(sdkVersion).toBe(`tally-sdk-node/${SDK_VERSION}`);
        expect(Date.parse(occurredAt as string)).toBeGreaterThanOrEqual(before);
        expect(Date.parse(occurredAt as string)).toBeLessThanOrEqual(Date.now());
      }
    }
  });

  it('written straight into bytes are the bytes of requestEventWire, or -1 (and that JSON is taken) when a text needs escaping', () => {
    const texts = ['plain', 'a"b', 'back\\slash', 'tab\tnew\nline', '\u007f', 'é', '😀', '', ' ~!#[]{}'];
    const quantities: (number | string)[] = [1, 0, 2.5, 1e21, 1e-7, -0, -3, Number.NaN, Number.POSITIVE_INFINITY, '1.000001', 'é'];
    const decoder = new TextDecoder();
    let written = 0;
    let i = 0;
    for (const text of texts) {
      for (const quantity of quantities) {
        const event: RequestEvent = { ...base, licenseId: `lic-${text}`, route: `/v1/${text}`, quantity, idempotencyKey: `req:${text}:${i++}`, durationMs: i * 1.5 };
        if (i % 2) Object.assign(event, { userId: text, userEmail: `${text}@x`, organization: text });
        if (i % 3 === 0) event.statusCode = undefined;
        const max = requestEventBytes(event);
        const bytes = new Uint8Array(7 + max).fill(0x78);
        const end = writeRequestEvent(bytes, 7, event);
        const wire = requestEventWire(event)!;
        if (end === -1) {
          expect(/[^\x20-\x7e]|["\\]/.test(`${text}${typeof quantity === 'string' ? quantity : ''}`)).toBe(true);
          continue;
        }
        written += 1;
        expect(end).toBeLessThanOrEqual(7 + max);
        expect(bytes.subarray(0, 7).every((b) => b === 0x78)).toBe(true); // nothing before `at`
        // the same JSON, except the time (read twice: the two may be a millisecond apart)
        const mine = JSON.parse(decoder.decode(bytes.subarray(7, end))) as Record<string, unknown>;
        const theirs = JSON.parse(wire) as Record<string, unknown>;
        expect(Object.keys(mine)).toEqual(Object.keys(theirs));
        expect({ ...mine, occurredAt: undefined }).toEqual({ ...theirs, occurredAt: undefined });
        expect(Math.abs(Date.parse(mine.occurredAt as string) - Date.parse(theirs.occurredAt as string))).toBeLessThan(1000);
        expect(decoder.decode(bytes.subarray(7, end))).toBe(wire.replace(/"occurredAt":"[^"]*"/, `"occurredAt":"${mine.occurredAt as string}"`));
      }
    }
    expect(written).toBeGreaterThan(20);
    for (const odd of [{ licenseId: 7 }, { quantity: null }, { userId: 5 }, { statusCode: '200' }, { durationMs: undefined }]) {
      const event = { ...base, ...odd } as unknown as RequestEvent;
      expect(writeRequestEvent(new Uint8Array(requestEventBytes(event)), 0, event)).toBe(-1);
    }
  });

  it('are tracked from bytes, and the ones that need escaping or are odd through JSON and track, all in order', async () => {
    const bodies: { events: Record<string, unknown>[] }[] = [];
    const fetch = (async (_url: string, init: RequestInit) => {
      bodies.push(JSON.parse(new TextDecoder().decode(init.body as Uint8Array)) as { events: Record<string, unknown>[] });
      return new Response(JSON.stringify({ result: { data: { accepted: 5, duplicates: 0, rejected: [] } } }), { status: 200 });
    }) as typeof globalThis.fetch;
    const reports: TallyErrorReport[] = [];
    const tally = new Tally({ apiKey: 'k', baseUrl: 'http://127.0.0.1:1', fetch, onError: (r) => reports.push(r), maxBatchSize: 5 });
    const events: RequestEvent[] = [
      { ...base, idempotencyKey: 'k1' },
      { ...base, idempotencyKey: 'k2', userId: 'ü' },
      { ...base, idempotencyKey: 'k3', route: 'x'.repeat(5000) },
      { ...base, idempotencyKey: 'k4', organization: 'a"b' },
      { ...base, idempotencyKey: 'k5', statusCode: '200' as unknown as number },
    ];
    for (const e of events) tally[TRACK_REQUEST](e);
    await tally.flush();
    // the fifth is not of its type: it goes through track as given (Tally's schema refuses it)
    const sent = bodies.flatMap((b) => b.events);
    expect(sent.map((e) => e.idempotencyKey)).toEqual(['k1', 'k2', 'k3', 'k4', 'k5']);
    expect(sent[4]!.statusCode).toBe('200');
    expect(sent[1]!.userId).toBe('ü');
    expect(sent[2]!.route).toBe('x'.repeat(5000));
    expect(sent[3]!.organization).toBe('a"b');
    expect(tally.stats().tracked).toBe(5);
    await tally.shutdown({ timeoutMs: 100 });
  });

  it('are left to track (null) when a field is not of its type', () => {
    expect(requestEventWire(base)).not.toBeNull();
    for (const odd of [{ licenseId: 7 }, { usageType: undefined }, { quantity: 10n }, { quantity: null }, { userId: 5 }, { statusCode: '200' }, { durationMs: undefined }]) {
      expect(requestEventWire({ ...base, ...odd } as unknown as RequestEvent)).toBeNull();
    }
  });

  it('carry the time as toISOString writes it, whatever the millisecond', () => {
    const moments = [0, 1, 9, 10, 99, 100, 999, 1000, -1, -999, -1000, -62_167_219_200_001, 253_402_300_799_999, 253_402_300_800_000, 1_764_590_400_000];
    for (let k = 0; k < 2000; k++) moments.push(1_764_590_400_000 + Math.floor(k * 7.3));
    for (const ms of moments) expect(isoOf(ms)).toBe(new Date(ms).toISOString());
  });
});

describe('EventQueue', () => {
  it('keeps FIFO order across compaction', () => {
    const q = new EventQueue<number>();
    for (let i = 0; i < 5000; i++) q.push(i);
    const out: number[] = [];
    for (let i = 0; i < 3000; i++) out.push(q.shift()!);
    expect(out).toEqual(Array.from({ length: 3000 }, (_, i) => i));
    expect(q.length).toBe(2000);
    expect(q.peek()).toBe(3000);
    q.push(5000);
    const rest: number[] = [];
    while (q.length > 0) rest.push(q.shift()!);
    expect(rest).toEqual(Array.from({ length: 2001 }, (_, i) => i + 3000));
    expect(q.shift()).toBeUndefined();
    expect(q.peek()).toBeUndefined();
  });
});

describe('a full buffer without onError', () => {
  it('counts what it drops and reads nothing back from bytes for reports nobody hears', async () => {
    const never = (() => new Promise<Response>(() => undefined)) as typeof fetch;
    const tally = new Tally({ apiKey: 'k', baseUrl: 'http://127.0.0.1:1', fetch: never, maxBufferedEvents: 10, maxBatchSize: 5, maxConcurrentBatches: 1 });
    const parse = jest.spyOn(JSON, 'parse');
    try {
      for (let i = 0; i < 30; i++) await tally[TRACK_WIRE](`{"licenseId":"lic","usageType":"api_call","idempotencyKey":"k${i}"}`);
      expect(parse).not.toHaveBeenCalled();
    } finally {
      parse.mockRestore();
    }
    // 5 in the send that never ends, the newest 10 buffered, the 15 between them dropped
    expect(tally.stats()).toMatchObject({ tracked: 30, dropped: 15, buffered: 10, inFlight: 5 });
    await tally.shutdown({ timeoutMs: 10 });
    expect(tally.stats()).toMatchObject({ dropped: 25, buffered: 0 });
  });
});

describe('WireBuffer', () => {
  const decode = (body: Uint8Array) => JSON.parse(new TextDecoder().decode(body)) as { events: { i: number; s?: string }[] };
  const json = (i: number, s = '') => JSON.stringify({ i, s });

  it('holds events as request bodies in batches, in order, and reads back the ones it has no object for', () => {
    const buffer = new WireBuffer<{ i: number; s?: string }>(3, 2);
    const object = { i: 1, s: 'the app’s own object' };
    for (let i = 0; i < 7; i++) buffer.push(json(i, i % 2 ? 'é 漢字 😀 "q" \\' : ''), i === 4, i === 1 ? object : undefined);
    expect(buffer.length).toBe(7);
    expect(buffer.hasFullBatch).toBe(true);
    const first = buffer.take()!;
    expect(first.event(1)).toBe(object); // the object itself, not a copy
    expect(first.event(2)).toEqual({ i: 2, s: '' });
    expect(decode(first.body()).events.map((e) => e.i)).toEqual([0, 1, 2]);
    const second = buffer.take()!;
    expect([second.flag(0), second.flag(1), second.flag(2)]).toEqual([false, true, false]);
    expect(decode(second.body()).events).toEqual([0, 1, 2].map((k) => JSON.parse(json(3 + k, (3 + k) % 2 ? 'é 漢字 😀 "q" \\' : ''))));
    expect(buffer.hasFullBatch).toBe(false);
    expect(buffer.length).toBe(1);
    const last = buffer.take()!; // the one still filling
    expect(decode(last.body()).events.map((e) => e.i)).toEqual([6]);
    expect(buffer.take()).toBeUndefined();
    expect(buffer.length).toBe(0);
  });

  it('drops the oldest across batches, and a body after drops is still exactly the events held', () => {
    const buffer = new WireBuffer<{ i: number }>(4, 2);
    for (let i = 0; i < 10; i++) buffer.push(json(i), false);
    const dropped = [0, 1, 2, 3, 4].map(() => (buffer.dropOldest(true) as { event: { i: number } }).event.i);
    expect(dropped).toEqual([0, 1, 2, 3, 4]);
    expect(buffer.length).toBe(5);
    const batch = buffer.take()!;
    expect(batch.length).toBe(3);
    expect(batch.event(0)).toEqual({ i: 5, s: '' });
    expect(decode(batch.body()).events.map((e) => e.i)).toEqual([5, 6, 7]);
    expect(buffer.drain(true).map((e) => e.i)).toEqual([8, 9]);
    expect(buffer.dropOldest(true)).toBe(false);
  });

  it('takes events written in place beside pushed ones, grows for them, and keeps nothing of a write that gave up', () => {
    const buffer = new WireBuffer<{ i: number; s?: string }>(3, 2);
    const write = (bytes: Uint8Array, at: number, text: string) => {
      if (text === 'give up') {
        bytes.fill(0x7b, at, at + 4); // scribbled on before giving up: must not be sent
        return -1;
      }
      return new TextEncoder().encodeInto(text, bytes.subarray(at)).written + at;
    };
    buffer.push(json(0), false);
    expect(buffer.pushWritten(20, true, write, json(1))).toBe(true);
    expect(buffer.pushWritten(20, false, write, 'give up')).toBe(false);
    expect(buffer.length).toBe(2);
    const long = json(2, 'x'.repeat(100_000));
    expect(buffer.pushWritten(long.length, false, write, long)).toBe(true);
    expect(buffer.hasFullBatch).toBe(true);
    const batch = buffer.take()!;
    expect(decode(batch.body()).events).toEqual([{ i: 0, s: '' }, { i: 1, s: '' }, { i: 2, s: 'x'.repeat(100_000) }]);
    expect([batch.flag(0), batch.flag(1), batch.flag(2)]).toEqual([false, true, false]);
    expect(batch.event(1)).toEqual({ i: 1, s: '' });
  });

  it('writes a batch of the same events as the last full one without growing it, in place or pushed', () => {
    const buffer = new WireBuffer<{ i: number; s?: string }>(1000, 0); // nothing reused: every batch new
    const write = (bytes: Uint8Array, at: number, text: string) => new TextEncoder().encodeInto(text, bytes.subarray(at)).written + at;
    const capacities = (fill: (i: number) => void) => {
      const seen = new Set<number>();
      for (let i = 0; i < 1000; i++) {
        fill(i);
        if (i < 999) seen.add((buffer as unknown as { filling: { byteCapacity: number } }).filling.byteCapacity);
      }
      const batch = buffer.take()!;
      seen.add(batch.byteCapacity);
      expect(decode(batch.body()).events).toHaveLength(1000);
      return [...seen];
    };
    capacities((i) => buffer.push(json(i, 'ü'), false)); // sets the size a new batch starts at
    for (const fill of [(i: number) => buffer.push(json(i, 'ü'), false), (i: number) => buffer.pushWritten(400, true, write, json(i, 'ü'))]) {
      expect(capacities(fill)).toHaveLength(1);
    }
  });

  it('grows a batch past its first size, reuses a released batch with nothing of its past events, and lets an outsized one go', () => {
    const buffer = new WireBuffer<{ i: number; s?: string }>(1000, 1);
    for (let i = 0; i < 1000; i++) buffer.push(json(i, 'ü'), false); // ~19 kB: past the first 16 kB
    const first = buffer.take()!;
    const events = decode(first.body()).events;
    expect(events).toHaveLength(1000);
    expect(events[999]).toEqual({ i: 999, s: 'ü' });
    buffer.release(first);
    buffer.push(json(1), true, { i: 1, s: 'object' });
    const reused = buffer.take()!;
    expect(reused).toBe(first);
    expect(reused.length).toBe(1);
    expect(reused.event(0)).toEqual({ i: 1, s: 'object' });
    expect(reused.flag(0)).toBe(true);
    expect(decode(reused.body()).events).toEqual([{ i: 1, s: '' }]);
    buffer.release(reused);

    const long = 'x'.repeat(50_000);
    for (let i = 0; i < 1000; i++) buffer.push(json(i, i === 500 ? long : 'ü'), false);
    const big = buffer.take()!;
    expect(decode(big.body()).events[500]!.s).toBe(long);
    buffer.release(big);
    buffer.push(json(2), false);
    expect(buffer.take()).not.toBe(big);
  });
});
