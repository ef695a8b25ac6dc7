import { useTestApp } from '../helpers/harness';
import { MAX_JSON_DEPTH } from '../../src/lib/json-value';

const app = useTestApp();
let ownerKey: string;
let tenantId: string;
let licenseId: string;

beforeAll(async () => {
  ({ ownerKey, tenantId } = await app.createTenant());
  ({ id: licenseId } = await app.createLicense(ownerKey));
});

/** `{"a":[[…]]}` as JSON text, `depth` levels deep counting the object (so `levels - 1` arrays). */
const nestedText = (levels: number) => `{"a":${'['.repeat(levels - 1)}${']'.repeat(levels - 1)}}`;
const nested = (levels: number) => JSON.parse(nestedText(levels)) as Record<string, unknown>;
/** Where the first level past the limit sits, below the field: the key, then an index per array. */
const tooDeepPath = (field: string) => [field, 'a', ...Array<number>(MAX_JSON_DEPTH - 1).fill(0)];
const DEPTH_MESSAGE = `must be nested at most ${MAX_JSON_DEPTH} levels deep`;

const eventCount = () => app.prisma.usageEvent.count({ where: { licenseId } });
const event = (properties?: unknown) => ({ licenseId, usageType: 'api_call', ...(properties === undefined ? {} : { properties }) });

describe('free JSON nests at most MAX_JSON_DEPTH levels', () => {
  it(`usage.trackEvent: properties ${MAX_JSON_DEPTH} levels deep are stored; ${MAX_JSON_DEPTH + 1}, 4,000 and 100,000 are a 400 naming the path`, async () => {
    const ok = await app.call('usage.trackEvent', event(nested(MAX_JSON_DEPTH)), ownerKey);
    expect(ok.status).toBe(200);
    const row = await app.prisma.usageEvent.findFirstOrThrow({ where: { id: ok.data.eventId } });
    expect(row.properties).toEqual(nested(MAX_JSON_DEPTH));

    const before = await eventCount();
    for (const levels of [MAX_JSON_DEPTH + 1, 4_000, 100_000]) {
      const rawBody = `{"licenseId":"${licenseId}","usageType":"api_call","properties":${nestedText(levels)}}`;
      const res = await app.call('usage.trackEvent', undefined, ownerKey, { rawBody });
      expect({ levels, status: res.status }).toEqual({ levels, status: 400 });
      expect(res.body.error!.data.issues).toEqual([expect.objectContaining({ path: tooDeepPath('properties'), message: DEPTH_MESSAGE })]);
    }
    expect(await eventCount()).toBe(before);
  });

  it('usage.trackEvents: the deep event of a batch is rejected on its own with its path; the valid ones beside it are stored', async () => {
    const deep = nestedText(4_001); // 8,006 bytes: within the 8 KB rule for properties
    expect(Buffer.byteLength(deep)).toBe(8_006);
    const before = await eventCount();
    const rawBody = `{"events":[${JSON.stringify(event({ n: 1 }))},{"licenseId":"${licenseId}","usageType":"api_call","properties":${deep}},${JSON.stringify(event(nested(MAX_JSON_DEPTH)))},{"licenseId":"${licenseId}","usageType":"api_call","properties":${nestedText(100_000)}}]}`;
    const res = await app.call<{ accepted: number; rejected: { index: number; code: string; message: string }[] }>('usage.trackEvents', undefined, ownerKey, { rawBody });
    expect(res.status).toBe(200);
    expect(res.data.accepted).toBe(2);
    const message = `${tooDeepPath('properties').join('.')}: ${DEPTH_MESSAGE}`;
    expect(res.data.rejected).toEqual([
      { index: 1, code: 'INVALID_EVENT', message },
      { index: 3, code: 'INVALID_EVENT', message },
    ]);
    expect(await eventCount()).toBe(before + 2);
  });

  it('usage.trackEvents and usage.trackEvent: a body that is 100,000 levels of arrays is a 400, not a 500', async () => {
    const arrays = `${'['.repeat(100_000)}${']'.repeat(100_000)}`;
    const batch = await app.call('usage.trackEvents', undefined, ownerKey, { rawBody: `{"events":${arrays}}` });
    expect(batch.status).toBe(400);
    expect(batch.body.error!.data.issues).toEqual([expect.objectContaining({ path: ['events', 0] })]);
    const single = await app.call('usage.trackEvent', undefined, ownerKey, { rawBody: arrays });
    expect(single.status).toBe(400);
    const unknownKey = await app.call('usage.trackEvent', undefined, ownerKey, { rawBody: `{"licenseId":"${licenseId}","usageType":"api_call","extra":${arrays}}` });
    expect(unknownKey.status).toBe(400);
    // tRPC's own adapter (a batch call) parses the same body.
    const viaAdapter = await fetch(`${app.baseUrl}/api/trpc/usage.trackEvent?batch=1`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${ownerKey}` },
      body: `{"0":{"licenseId":"${licenseId}","usageType":"api_call","properties":${nestedText(100_000)}}}`,
    });
    expect(viaAdapter.status).toBe(400);
    const [answer] = (await viaAdapter.json()) as { error: { data: { issues: { path: unknown[] }[] } } }[];
    expect(answer!.error.data.issues[0]!.path).toEqual(tooDeepPath('properties'));
  });

  it.each([
    ['licenses.create', () => ({ name: 'Deep' }), () => app.prisma.license.count({ where: { tenantId } })],
    ['licenses.update', () => ({ id: licenseId }), async () => (await app.prisma.license.findUniqueOrThrow({ where: { id: licenseId } })).metadata],
    ['apiKeys.create', () => ({ name: 'Deep', role: 'read' }), () => app.prisma.apiKey.count({ where: { tenantId } })],
  ] as const)(`%s: metadata ${MAX_JSON_DEPTH} levels deep is kept; ${MAX_JSON_DEPTH + 1}, 4,000 and 100,000 are a 400 naming the path`, async (path, input, count) => {
    const before = await count();
    for (const levels of [MAX_JSON_DEPTH + 1, 4_000, 100_000]) {
      const rawBody = `${JSON.stringify(input()).slice(0, -1)},"metadata":${nestedText(levels)}}`;
      const res = await app.call(path, undefined, ownerKey, { rawBody });
      expect({ levels, status: res.status }).toEqual({ levels, status: 400 });
      expect(res.body.error!.data.issues).toEqual([expect.objectContaining({ path: tooDeepPath('metadata'), message: DEPTH_MESSAGE })]);
    }
    expect(await count()).toEqual(before);
    const ok = await app.call(path, { ...input(), metadata: nested(MAX_JSON_DEPTH) }, ownerKey);
    expect(ok.status).toBe(200);
  });
});
