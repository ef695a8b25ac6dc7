import { Decimal } from 'decimal.js';
import fc from 'fast-check';
import { createHash } from 'node:crypto';
import {
  canonicalJson,
  decimalQuantityText,
  fastParseEvent,
  fastQuantityText,
  payloadHashOf,
  quantitySchema,
  usageEventInputSchema,
} from '../../src/domain/usage/event-schema';
import { MAX_JSON_DEPTH } from '../../src/lib/json-value';
import { normalizeEvent } from '../../src/domain/usage/ingest';

const licenseId = '7c9e6679-7425-40de-944b-e07fc1f90ae7';
const parse = (e: Record<string, unknown>) => usageEventInputSchema.parse({ licenseId, usageType: 'x', ...e });

describe('quantity', () => {
  it.each([
    [1, '1'],
    ['1.50', '1.5'],
    [0.1, '0.1'],
    ['999999999999999', '999999999999999'],
    ['0.000001', '0.000001'],
    ['1e3', '1000'],
  ])('accepts %p as %p', (input, out) => {
    expect(quantitySchema.parse(input)).toBe(out);
  });

  it.each(['1000000000000000', '0.0000001', '-1', 'NaN', '', ' 1', '1,5', Infinity, Number.NaN, '12345678901.234567'])(
    'refuses %p',
    (input) => {
      expect(quantitySchema.safeParse(input).success).toBe(false);
    },
  );

  it('gives the same answer on the fast path as decimal.js, or leaves the value to it', () => {
    const digits = (min: number, max: number) => fc.string({ unit: fc.constantFrom(...'0123456789'), minLength: min, maxLength: max });
    const text = fc.oneof(
      fc.tuple(digits(1, 18), fc.option(digits(0, 9))).map(([w, f]) => (f === null ? w : `${w}.${f}`)),
      fc.constantFrom('0', '0.0', '00', '01', '1.', '.5', '-0', '-1', '1e3', '0.000001', '0.0000001', '999999999999999', '1000000000000000', '12.340'),
    );
    const number = fc.oneof(fc.integer(), fc.double(), fc.constantFrom(0, -0, 1e15 - 1, 1e15, 2 ** 53, 2 ** 53 + 2, 1e21, 0.1));
    fc.assert(
      fc.property(fc.oneof(text, number), (value) => {
        const fast = fastQuantityText(value);
        if (fast === null) return true;
        const slow = decimalQuantityText(value);
        return slow.ok && slow.text === fast;
      }),
      { numRuns: 20_000 },
    );
    // and it does take the common cases
    for (const v of [1, 4000, '12', '3.142', '0.5', '0.000001', '999999999999999']) expect(fastQuantityText(v)).toBe(String(v));
  });

  it('keeps every number of up to 15 digits and 6 decimals exact, and refuses 16 digits', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: 10n ** 16n - 1n }), fc.integer({ min: 0, max: 6 }), (digits, scale) => {
        const s = digits.toString().padStart(scale + 1, '0');
        const text = scale ? `${s.slice(0, -scale)}.${s.slice(-scale)}` : s;
        const parsed = quantitySchema.safeParse(text);
        const [intPart = '', fracPart = ''] = text.split('.');
        const significant = `${intPart}${fracPart.replace(/0+$/, '')}`.replace(/^0+/, '').length;
        if (significant > 15) expect([text, parsed.success]).toEqual([text, false]);
        else expect([text, parsed.success && new Decimal(parsed.data).equals(new Decimal(text))]).toEqual([text, true]);
      }),
    );
  });
});

describe('event fast path', () => {
  // mostly valid values (so that many events take the fast path), with the edges and misfits
  const string = (max: number) =>
    fc.oneof(
      { weight: 6, arbitrary: fc.string({ maxLength: Math.min(max, 40) }) },
      fc.string({ unit: 'grapheme', maxLength: 4 }),
      fc.constantFrom('', 'a\u0000b', '\ud800', 'x'.repeat(max), 'x'.repeat(max + 1), '😀'.repeat(Math.ceil(max / 2))),
    );
  const int = fc.oneof(
    { weight: 6, arbitrary: fc.integer({ min: 100, max: 599 }) },
    fc.integer({ min: -10, max: 700 }),
    fc.constantFrom(99, 100, 599, 600, 2_147_483_647, 2_147_483_648, 2 ** 53, 1.5, -0, Number.NaN, Infinity),
  );
  const anything = fc.oneof(fc.constant(null), fc.constant(undefined), fc.boolean(), fc.double(), fc.array(fc.integer(), { maxLength: 2 }), fc.object({ maxDepth: 1 }));
  const fields = {
    licenseId: fc.oneof({ weight: 6, arbitrary: fc.constant(licenseId) }, fc.uuid(), fc.constantFrom(licenseId, licenseId.toUpperCase(), '00000000-0000-0000-0000-000000000000', `${licenseId}x`, 'not-a-uuid'), fc.string()),
    usageType: fc.oneof({ weight: 6, arbitrary: fc.constantFrom('api_call', 'tokens') }, fc.constantFrom('api_call', 'tokens', 'storage.gb', 'a:b-c', 'x'.repeat(64), 'x'.repeat(65), 'API', ''), fc.string({ maxLength: 5 })),
    quantity: fc.oneof({ weight: 4, arbitrary: fc.nat().map(String) }, { weight: 2, arbitrary: fc.nat() }, fc.integer(), fc.double(), fc.constantFrom('1', '1.50', '0.000001', '1e3', '-1', '1000000000000000', 'x', 2.5, 0.1, 1e-7, 1e21)),
    occurredAt: fc.oneof(
      fc.date({ min: new Date('1999-01-01'), max: new Date('2100-01-01'), noInvalidDate: true }).map((d) => d.toISOString()),
      fc.constantFrom('2026-11-23T10:00:00Z', '2026-11-23T10:00:00+05:30', '2026-11-23T10:00Z', '2026-02-30T00:00:00Z', '2024-02-29T00:00:00.123456Z', '2026-11-23 10:00:00Z', '2026-11-23'),
    ),
    idempotencyKey: string(255),
    platform: string(64),
    deviceType: string(64),
    userId: string(256),
    route: string(512),
    method: string(16),
    sdkVersion: string(100),
    statusCode: int,
    durationMs: int,
    ipAddress: fc.constantFrom('10.0.0.1', '::1', '999.1.1.1'),
    properties: fc.constantFrom({}, { plan: 'pro' }, { a: { b: [1, 2] } }),
  };
  // Each field absent, valid-ish, or of any other type (ipAddress and properties, which the fast
  // path leaves to zod, mostly absent); mostly with the two required fields, so many are valid.
  const ABSENT = Symbol('absent');
  const event = fc
    .tuple(
      fc.boolean(),
      fc.record(
        Object.fromEntries(
          Object.entries(fields).map(([k, arb]) => [
            k,
            fc.oneof(
              { weight: 40, arbitrary: arb as fc.Arbitrary<unknown> },
              { weight: 1, arbitrary: anything },
              { weight: k === 'ipAddress' || k === 'properties' ? 400 : 20, arbitrary: fc.constant(ABSENT) },
            ),
          ]),
        ),
      ),
    )
    .map(([withRequired, e]) => {
      const present = Object.fromEntries(Object.entries(e).filter(([, v]) => v !== ABSENT));
      return withRequired ? { licenseId, usageType: 'tokens', ...present } : present;
    });
  const events = fc.oneof(event, fc.tuple(event, fc.constantFrom('extra', '__proto__', 'constructor')).map(([e, k]) => JSON.parse(JSON.stringify({ ...e, [k]: 1 }))), anything);

  it('answers exactly as zod does, or leaves the event to zod', () => {
    let taken = 0;
    fc.assert(
      fc.property(events, (raw) => {
        const fast = fastParseEvent(raw);
        if (fast === null) return true;
        taken += 1;
        const slow = usageEventInputSchema.safeParse(raw);
        expect(slow.success).toBe(true);
        expect(fast).toStrictEqual(slow.data);
        return true;
      }),
      { numRuns: 20_000 },
    );
    expect(taken).toBeGreaterThan(500); // the property was tested on the fast path, not only on its refusals
  });

  it('refuses properties nested past MAX_JSON_DEPTH with their path, however deep, without throwing', () => {
    const nested = (levels: number) => JSON.parse(`{"a":${'['.repeat(levels - 1)}${']'.repeat(levels - 1)}}`) as Record<string, unknown>;
    expect(usageEventInputSchema.safeParse({ licenseId, usageType: 'x', properties: nested(MAX_JSON_DEPTH) }).success).toBe(true);
    for (const levels of [MAX_JSON_DEPTH + 1, 4_000, 100_000]) {
      const raw = { licenseId, usageType: 'x', properties: nested(levels) };
      expect(fastParseEvent(raw)).toBeNull();
      const parsed = usageEventInputSchema.safeParse(raw);
      expect(parsed.error?.issues.map((i) => i.path)).toEqual([['properties', 'a', ...Array<number>(MAX_JSON_DEPTH - 1).fill(0)]]);
    }
  });

  it('takes the events clients usually send', () => {
    const typical = [
      { licenseId, usageType: 'api_call' },
      { licenseId, usageType: 'tokens', quantity: '1500', occurredAt: '2026-11-23T10:00:00.000Z', idempotencyKey: 'req-1', userId: 'u1', route: '/v1/items/:id', method: 'GET', statusCode: 200, durationMs: 12 },
      { licenseId, usageType: 'storage.gb', quantity: 2.5, occurredAt: '2026-11-23T10:00:00+05:30', platform: 'web', deviceType: 'desktop', sdkVersion: '1.2.3' },
    ];
    for (const e of typical) expect(fastParseEvent(e)).toStrictEqual(usageEventInputSchema.parse(e));
  });

  it('leaves to zod what it does not check itself, and every invalid event', () => {
    for (const e of [
      { licenseId, usageType: 'x', properties: {} },
      { licenseId, usageType: 'x', ipAddress: '10.0.0.1' },
      { licenseId, usageType: 'x', quantity: '1.50' },
      { licenseId, usageType: 'x', extra: 1 },
      { licenseId, usageType: 'x', statusCode: 600 },
      { licenseId, usageType: 'x', durationMs: 2_147_483_648 },
      { licenseId, usageType: 'x', idempotencyKey: '' },
      { licenseId, usageType: 'x', method: 'x'.repeat(17) },
      { licenseId, usageType: 'x', occurredAt: '2026-02-30T00:00:00Z' },
      { licenseId },
      { usageType: 'x' },
      [licenseId],
      null,
    ]) {
      expect(fastParseEvent(e)).toBeNull();
    }
  });
});

describe('payload hash', () => {
  it('is the same for the same event written differently', () => {
    const a = parse({ quantity: 1.5, occurredAt: '2026-11-23T10:00:00Z', properties: { a: 1, b: 2 } });
    const b = parse({ quantity: '1.500', occurredAt: '2026-11-23T11:00:00+01:00', properties: { b: 2, a: 1 } });
    expect(payloadHashOf(a)).toBe(payloadHashOf(b));
  });

  it('differs when anything the client sent differs, but not for the idempotency key', () => {
    const base = parse({ quantity: 1 });
    expect(payloadHashOf(parse({ quantity: 2 }))).not.toBe(payloadHashOf(base));
    expect(payloadHashOf(parse({ quantity: 1, userId: 'u' }))).not.toBe(payloadHashOf(base));
    expect(payloadHashOf(parse({ quantity: 1, idempotencyKey: 'k' }))).toBe(payloadHashOf(base));
  });

  it('is the hash of the canonical JSON of the event without its key, as stored hashes were made', () => {
    // The plain definition; payloadHashOf writes the same text faster, and must never drift from it.
    const reference = (event: Record<string, unknown>) => {
      const { idempotencyKey: _key, ...payload } = event;
      const normalized = { ...payload, occurredAt: event.occurredAt ? new Date(event.occurredAt as string).toISOString() : undefined };
      return createHash('sha256').update(canonicalJson(normalized)).digest('hex');
    };
    const optional = <T>(arb: fc.Arbitrary<T>) => fc.option(arb, { nil: undefined });
    fc.assert(
      fc.property(
        fc.record(
          {
            licenseId: fc.uuid(),
            usageType: fc.constantFrom('api_call', 'tokens', 'a.b:c-d_e'),
            quantity: optional(fc.oneof(fc.integer({ min: 0, max: 10 ** 9 }), fc.constantFrom('1.5', '0.000001', '12.340'))),
            occurredAt: optional(fc.constantFrom('2026-11-23T10:00:00Z', '2026-11-23T11:00:00.123+01:00')),
            idempotencyKey: optional(fc.string({ minLength: 1, maxLength: 20 })),
            platform: optional(fc.string({ maxLength: 10 })),
            userId: optional(fc.string({ maxLength: 10 })),
            statusCode: optional(fc.integer({ min: 100, max: 599 })),
            durationMs: optional(fc.nat()),
            properties: optional(fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 6 })),
          },
          { requiredKeys: ['licenseId', 'usageType'] },
        ),
        (input) => {
          const parsed = usageEventInputSchema.safeParse(Object.fromEntries(Object.entries(input).filter(([, v]) => v !== undefined)));
          if (!parsed.success) return true; // e.g. a property value that is not storable text
          expect(payloadHashOf(parsed.data)).toBe(reference(parsed.data));
          // and as ingestion computes it, with the instant it already has
          const normalized = normalizeEvent('7c9e6679-7425-40de-944b-e07fc1f90ae7', 'live', parsed.data, { maxAgeMs: Infinity, maxFutureMs: Infinity }, new Date());
          expect('payloadHash' in normalized && normalized.payloadHash).toBe(reference(parsed.data));
          return true;
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('time bounds', () => {
  const limits = { maxAgeMs: 35 * 86_400_000, maxFutureMs: 300_000 };
  const now = new Date('2026-11-23T12:00:00.000Z');
  const at = (ms: number) => parse({ occurredAt: new Date(now.getTime() + ms).toISOString() });

  it('accepts exactly 5 minutes ahead and exactly 35 days old, refuses 1 ms beyond either', () => {
    expect('status' in normalizeEvent('t', 'live', at(300_000), limits, now)).toBe(false);
    expect(normalizeEvent('t', 'live', at(300_001), limits, now)).toMatchObject({ status: 'rejected', code: 'OUT_OF_RANGE' });
    expect('status' in normalizeEvent('t', 'live', at(-35 * 86_400_000), limits, now)).toBe(false);
    expect(normalizeEvent('t', 'live', at(-35 * 86_400_000 - 1), limits, now)).toMatchObject({ status: 'rejected', code: 'OUT_OF_RANGE' });
  });

  it('defaults occurredAt to the receive time and ipAddress to the caller', () => {
    const e = normalizeEvent('t', 'live', parse({}), limits, now, '10.0.0.1');
    expect(e).toMatchObject({ occurredAt: now, ipAddress: '10.0.0.1', quantity: '1' });
  });
});
