import { Decimal } from 'decimal.js';
import fc from 'fast-check';
import { usageEventInputSchema } from '../../src/domain/usage/event-schema';
import { normalizeEvent } from '../../src/domain/usage/ingest';
import { rehashErased, replaceTokens, replaceTokensInJson, type StoredEvent } from '../../src/domain/privacy/scrub';

const tenantId = '0b7d4a52-3c57-4a3e-8d8c-2f1f9a0c1e11';
const licenseId = '7c9e6679-7425-40de-944b-e07fc1f90ae7';
const NOW = new Date('2026-11-30T08:00:00.000Z');
const LIMITS = { maxAgeMs: 35 * 86_400_000, maxFutureMs: 300_000 };

describe('replaceTokens', () => {
  it.each([
    ['/users/u-42/files', ['u-42'], '/users/P/files'],
    ['u-42', ['u-42'], 'P'],
    ['u-42,u-42', ['u-42'], 'P,P'],
    ['xu-42', ['u-42'], 'xu-42'], // glued to a letter: another id
    ['u-421', ['u-42'], 'u-421'],
    ['/v1/items', ['1'], '/v1/items'],
    ['/users/1/x', ['1'], '/users/P/x'],
    ['from 10.0.0.1 and 10.0.0.12', ['10.0.0.1'], 'from P and 10.0.0.12'],
    ['a@b.c', ['a@b.c', ''], 'P'],
  ])('%p without %p is %p', (text, needles, out) => {
    expect(replaceTokens(text, needles, 'P')).toBe(out);
  });

  it('reaches every string and key of a JSON value, and nothing else', () => {
    const value = { 'u-7': [1, 'see u-7', { deep: 'u-7' }], n: null, t: true, other: 'u-70' };
    expect(replaceTokensInJson(value, ['u-7'], 'P')).toEqual({ P: [1, 'see P', { deep: 'P' }], n: null, t: true, other: 'u-70' });
  });
});

/** The row ingestion stores for a client's event sent from 10.0.0.1, and its payload hash. */
function stored(raw: Record<string, unknown>): { row: StoredEvent; hash: string } {
  const e = normalizeEvent(tenantId, 'live', usageEventInputSchema.parse(raw), LIMITS, NOW, '10.0.0.1');
  if ('status' in e) throw new Error(e.message);
  return {
    hash: e.payloadHash,
    row: {
      licenseId: e.licenseId,
      usageType: e.usageType,
      quantity: new Decimal(e.quantity).toFixed(6), // numeric(21,6) as PostgreSQL writes it
      occurredAt: e.occurredAt,
      platform: e.platform,
      deviceType: e.deviceType,
      userId: e.userId,
      userEmail: e.userEmail,
      organization: e.organization,
      route: e.route,
      method: e.method,
      statusCode: e.statusCode,
      durationMs: e.durationMs,
      sdkVersion: e.sdkVersion,
      ipAddress: e.ipAddress,
      country: e.country,
      properties: JSON.parse(JSON.stringify(e.properties)), // through jsonb
    },
  };
}

describe('rehashErased', () => {
  const event = fc.record(
    {
      quantity: fc.oneof(fc.integer({ min: 0, max: 10_000 }), fc.constantFrom('1.5', '0.000001', '2.50', '1e3')),
      occurredAt: fc.integer({ min: 0, max: 86_400_000 }).map((ms) => new Date(NOW.getTime() - ms).toISOString()),
      userId: fc.string({ maxLength: 20 }),
      userEmail: fc.stringMatching(/^[a-z0-9_+-]{1,10}@[a-z0-9]{1,10}\.[a-z]{2,6}$/),
      organization: fc.string({ minLength: 1, maxLength: 20 }),
      route: fc.string({ maxLength: 20 }),
      platform: fc.constantFrom('web', 'ios'),
      statusCode: fc.integer({ min: 100, max: 599 }),
      durationMs: fc.nat(),
      ipAddress: fc.ipV4(),
      properties: fc.dictionary(fc.string({ maxLength: 8 }), fc.oneof(fc.string({ maxLength: 8 }), fc.integer(), fc.boolean(), fc.constant(null)), {
        maxKeys: 4,
      }),
    },
    { requiredKeys: [] },
  );

  it('finds which optional parts the client sent: "erasing" nothing gives back the stored hash', () => {
    fc.assert(
      fc.property(event, (raw) => {
        const { row, hash } = stored({ licenseId, usageType: 'api_call', ...raw });
        expect(rehashErased(row, hash, row)).toBe(hash);
      }),
      { numRuns: 500 },
    );
  });

  it('hashes the erased event as ingestion hashes the same event sent as it now stands', () => {
    fc.assert(
      fc.property(event, (raw) => {
        const original = stored({ licenseId, usageType: 'api_call', ...raw, userId: 'u-1' });
        const { ipAddress: _ip, properties: _p, userEmail: _email, ...rest } = raw;
        const sentProperties = 'properties' in raw ? { properties: {} } : {};
        const erased = stored({ licenseId, usageType: 'api_call', ...rest, ...sentProperties, userId: 'erased:p' });
        const after = { ...original.row, userId: 'erased:p', userEmail: null, ipAddress: null, properties: {} };
        expect(rehashErased(original.row, original.hash, after)).toBe(erased.hash);
      }),
      { numRuns: 500 },
    );
  });
});
