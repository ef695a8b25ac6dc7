import { useTestApp } from '../helpers/harness';
import { localDateOf, localMidnight } from '../../src/domain/analytics/buckets';

/**
 * apiKeys.me: every valid key, of every role, learns about itself (never its hash), its tenant
 * and the tenant's usage this calendar month in the tenant's zone, over licenses of the key's
 * environment.
 */

const app = useTestApp();
/** A half-hour zone: its month starts at :30 UTC, so hourly rollups alone cannot cut it. */
const ZONE = 'Asia/Kolkata';

const me = (key: string, headers?: Record<string, string>) => app.call('apiKeys.me', undefined, key, { method: 'GET', headers });

let tenant: { id: string; name: string; slug: string };
let owner: { key: string; id: string };
let monthStart: number;

beforeAll(async () => {
  const slug = `me-${Date.now().toString(36)}`;
  const created = await app.call('tenants.create', { name: 'Who Am I Ltd', slug, timezone: ZONE, ownerEmail: 'owner@whoami.example', organization: 'Who Am I Ltd' }, app.adminKey);
  expect(created.status).toBe(200);
  tenant = { id: created.data.tenant.id, name: 'Who Am I Ltd', slug };
  owner = { key: created.data.apiKey.key, id: created.data.apiKey.id };
  const [y, m] = localDateOf(Date.now(), ZONE).split('-').map(Number) as [number, number];
  monthStart = localMidnight(y, m - 1, 1, ZONE);
});

it('answers every role with its own key, its tenant and identification, never the hash', async () => {
  for (const role of ['owner', 'member', 'ingest', 'read'] as const) {
    const key =
      role === 'owner'
        ? owner
        : (await app.call('apiKeys.create', { name: `${role} key`, role, userEmail: `${role}@whoami.example`, organization: 'Support Org' }, owner.key)).data;
    const res = await me(key.key);
    expect([role, res.status]).toEqual([role, 200]);
    const stored = await app.prisma.apiKey.findUniqueOrThrow({ where: { id: key.id } });
    expect(res.data).toMatchObject({
      id: key.id,
      prefix: stored.prefix,
      name: stored.name,
      role,
      environment: 'live',
      userEmail: stored.userEmail,
      organization: stored.organization,
      createdAt: stored.createdAt.toISOString(),
      tenant: { ...tenant, timezone: ZONE },
    });
    expect(res.data.lastUsedAt).not.toBeNull(); // this very call used it
    expect(Object.keys(res.data)).not.toContain('keyHash');
    expect(JSON.stringify(res.body)).not.toContain(stored.keyHash);
    expect(JSON.stringify(res.body)).not.toContain(key.key);
  }
});

it('answers a platform admin key with no tenant and no usage, or with the tenant it names', async () => {
  const alone = await me(app.adminKey);
  expect(alone.status).toBe(200);
  expect(alone.data).toMatchObject({ role: 'admin', environment: 'live', tenant: null, usage: null });
  const acting = await me(app.adminKey, { 'x-tally-tenant': tenant.id });
  expect(acting.status).toBe(200);
  expect([acting.data.role, acting.data.id, acting.data.tenant?.id]).toEqual(['admin', alone.data.id, tenant.id]);
});

it("sums the tenant's usage this month in its zone per usage type, exactly, over licenses of the key's environment", async () => {
  const testOwner = (await app.call('apiKeys.create', { name: 'test owner', role: 'owner', environment: 'test' }, owner.key)).data;
  const live = (await app.createLicense(owner.key)).id;
  const live2 = (await app.createLicense(owner.key)).id;
  const testLicense = (await app.createLicense(testOwner.key)).id;
  await app.prisma.license.update({ where: { id: testLicense }, data: { environment: 'test' } });
  const at = (ms: number) => new Date(ms).toISOString();
  const events = [
    // this month: the first instant of it counts, the one before does not (last month in Kolkata, this month in UTC)
    { licenseId: live, usageType: 'api_call', quantity: '1.5', occurredAt: at(monthStart) },
    { licenseId: live, usageType: 'api_call', quantity: '2.25', occurredAt: at(Date.now() - 1000) },
    { licenseId: live2, usageType: 'tokens', quantity: '0.000001', occurredAt: at(Date.now() - 2000) },
    { licenseId: live, usageType: 'api_call', quantity: '100', occurredAt: at(monthStart - 1) },
  ];
  for (const event of events) expect((await app.call('usage.trackEvent', event, owner.key)).status).toBe(200);
  expect((await app.call('usage.trackEvent', { licenseId: testLicense, usageType: 'api_call', quantity: 7 }, testOwner.key)).status).toBe(200);

  const res = await me(owner.key);
  expect(res.status).toBe(200);
  const [y, m] = localDateOf(Date.now(), ZONE).split('-');
  expect(res.data.usage).toEqual({
    period: { month: `${y}-${m}`, timezone: ZONE, start: expect.stringMatching(new RegExp(`^${y}-${m}-01T00:00:00\\+05:30$`)), end: expect.stringMatching(/T00:00:00\+05:30$/) },
    environment: 'live',
    byUsageType: [
      { usageType: 'api_call', quantity: '3.75', events: 2 },
      { usageType: 'tokens', quantity: '0.000001', events: 1 },
    ],
  });
  // the same, read by any role of that environment; a test key sees the test licenses only
  const read = (await app.call('apiKeys.create', { name: 'reader', role: 'read' }, owner.key)).data;
  expect((await me(read.key)).data.usage.byUsageType).toEqual(res.data.usage.byUsageType);
  const test = await me(testOwner.key);
  expect([test.data.environment, test.data.usage.environment, test.data.usage.byUsageType]).toEqual([
    'test', 'test', [{ usageType: 'api_call', quantity: '7', events: 1 }],
  ]);
});

it('refuses input it does not know with 400', async () => {
  const res = await app.call('apiKeys.me', { keyId: owner.id }, owner.key, { method: 'GET' });
  expect(res.status).toBe(400);
});
