import { randomUUID } from 'node:crypto';
import { appRouter } from '../../src/server/router';
import type { Meta, TenantRole } from '../../src/server/trpc';
import { TestApp } from '../helpers/harness';

/**
 * Every procedure of the router, enumerated from the router itself: a new procedure without
 * a fixture here fails the suite. For each: no key, malformed key, unknown key and revoked key
 * are 401; a role the procedure does not allow is 403 (and an allowed one is not); another
 * tenant's ids are 404.
 */
interface Ids {
  thresholdA: string;
  thresholdB: string;
  webhookA: string;
  webhookB: string;
  overageB: string;
  licenseA: string;
  licenseB: string;
  keyA: string;
  keyB: string;
  tenantA: string;
}

interface Fixture {
  input: (ids: Ids) => unknown;
  /** The same call aimed at tenant B's resources, made with tenant A's owner key. */
  foreign?: (ids: Ids) => unknown;
  foreignExpect?: (res: { status: number; data: any }) => void;
}

const fixtures: Record<string, Fixture> = {
  'tenants.create': { input: () => ({ name: 'Matrix', slug: `m-${randomUUID().slice(0, 8)}` }) },
  'tenants.list': { input: () => ({}) },
  'tenants.get': { input: (ids) => ({ id: ids.tenantA }) },
  'apiKeys.create': { input: () => ({ name: 'matrix', role: 'read' }) },
  'apiKeys.list': { input: () => ({}) },
  'apiKeys.revoke': { input: (ids) => ({ id: ids.keyA }), foreign: (ids) => ({ id: ids.keyB }) },
  'licenses.create': { input: () => ({ name: 'matrix' }) },
  'licenses.get': { input: (ids) => ({ id: ids.licenseA }), foreign: (ids) => ({ id: ids.licenseB }) },
  'licenses.list': { input: () => ({}) },
  'licenses.update': { input: (ids) => ({ id: ids.licenseA, name: 'renamed' }), foreign: (ids) => ({ id: ids.licenseB, name: 'x' }) },
  'licenses.setStatus': {
    input: (ids) => ({ id: ids.licenseA, status: 'ACTIVE' }),
    foreign: (ids) => ({ id: ids.licenseB, status: 'SUSPENDED' }),
  },
  'licenses.delete': { input: () => ({ id: randomUUID() }), foreign: (ids) => ({ id: ids.licenseB }) },
  'usage.trackEvent': {
    input: (ids) => ({ licenseId: ids.licenseA, usageType: 'matrix' }),
    foreign: (ids) => ({ licenseId: ids.licenseB, usageType: 'matrix' }),
  },
  'usage.trackEvents': {
    input: (ids) => ({ events: [{ licenseId: ids.licenseA, usageType: 'matrix' }] }),
    foreign: (ids) => ({ events: [{ licenseId: ids.licenseB, usageType: 'matrix' }] }),
    // a batch judges each event: the foreign one is refused as not found, nothing is stored
    foreignExpect: (res) => {
      expect(res.status).toBe(200);
      expect(res.data.rejected).toEqual([expect.objectContaining({ code: 'LICENSE_NOT_FOUND' })]);
    },
  },
  'usage.current': { input: (ids) => ({ licenseId: ids.licenseA }), foreign: (ids) => ({ licenseId: ids.licenseB }) },
  'usage.recalculateAggregates': { input: () => ({ startDate: '2026-01-01', endDate: '2026-01-02' }) },
  'usage.jobStatus': { input: () => ({ jobId: 'usage.recalculate@none' }) },
  'analytics.usage': {
    input: (ids) => ({ licenseId: ids.licenseA, startDate: '2026-01-01', endDate: '2026-01-02', granularity: 'daily' }),
    foreign: (ids) => ({ licenseId: ids.licenseB, startDate: '2026-01-01', endDate: '2026-01-02', granularity: 'daily' }),
  },
  'analytics.breakdown': {
    input: (ids) => ({ licenseId: ids.licenseA, startDate: '2026-01-01', endDate: '2026-01-02', by: 'platform' }),
    foreign: (ids) => ({ licenseId: ids.licenseB, startDate: '2026-01-01', endDate: '2026-01-02', by: 'platform' }),
  },
  'analytics.topLicenses': { input: () => ({ startDate: '2026-01-01', endDate: '2026-01-02' }) },
  'analytics.platform': { input: () => ({}) },
  'analytics.export': {
    input: (ids) => ({ licenseId: ids.licenseA, startDate: '2026-01-01', endDate: '2026-01-02' }),
    foreign: (ids) => ({ licenseId: ids.licenseB, startDate: '2026-01-01', endDate: '2026-01-02' }),
  },
  'forecasts.get': {
    input: (ids) => ({ licenseId: ids.licenseA, usageType: 'matrix' }),
    foreign: (ids) => ({ licenseId: ids.licenseB, usageType: 'matrix' }),
  },
  'forecasts.list': { input: () => ({}) },
  'forecasts.accuracy': { input: () => ({}), foreign: (ids) => ({ licenseId: ids.licenseB }) },
  'analytics.forecastAccuracy': { input: () => ({}), foreign: (ids) => ({ licenseId: ids.licenseB }) },
  'auditLogs.list': { input: () => ({}) },
  'jobs.list': { input: () => ({}) },
  'jobs.get': { input: () => ({ id: randomUUID() }) },
  'jobs.trigger': { input: () => ({ name: 'usage.partitions.maintain' }) },
  'usage.check': {
    input: (ids) => ({ licenseId: ids.licenseA, usageType: 'matrix', quantity: 1 }),
    foreign: (ids) => ({ licenseId: ids.licenseB, usageType: 'matrix' }),
  },
  'thresholds.create': {
    input: (ids) => ({ licenseId: ids.licenseA, usageType: `m${randomUUID().slice(0, 8)}`, periodType: 'daily', limitQuantity: 10 }),
    foreign: (ids) => ({ licenseId: ids.licenseB, usageType: 'foreign', periodType: 'daily', limitQuantity: 10 }),
  },
  'thresholds.list': { input: (ids) => ({ licenseId: ids.licenseA }) },
  'thresholds.update': {
    input: (ids) => ({ id: ids.thresholdA, limitQuantity: 10 }),
    foreign: (ids) => ({ id: ids.thresholdB, limitQuantity: 1 }),
  },
  'thresholds.remove': { input: () => ({ id: randomUUID() }), foreign: (ids) => ({ id: ids.thresholdB }) },
  'thresholds.status': { input: (ids) => ({ licenseId: ids.licenseA }), foreign: (ids) => ({ licenseId: ids.licenseB }) },
  'alerts.list': { input: () => ({}) },
  'overages.list': { input: () => ({}) },
  'overages.approve': { input: () => ({ id: randomUUID() }), foreign: (ids) => ({ id: ids.overageB }) },
  'overages.waive': { input: () => ({ id: randomUUID() }), foreign: (ids) => ({ id: ids.overageB }) },
  'webhooks.create': { input: () => ({ url: 'http://127.0.0.1:9/hook' }) },
  'webhooks.list': { input: () => ({}) },
  'webhooks.update': { input: (ids) => ({ id: ids.webhookA, enabled: false }), foreign: (ids) => ({ id: ids.webhookB, enabled: false }) },
  'webhooks.delete': { input: () => ({ id: randomUUID() }), foreign: (ids) => ({ id: ids.webhookB }) },
  'webhooks.rotateSecret': { input: (ids) => ({ id: ids.webhookA }), foreign: (ids) => ({ id: ids.webhookB }) },
  'webhooks.deliveries': { input: () => ({}), foreign: (ids) => ({ endpointId: ids.webhookB }) },
  'privacy.eraseUser': { input: () => ({ userId: 'matrix-user' }), foreign: (ids) => ({ userId: 'matrix-user', licenseId: ids.licenseB }) },
  'privacy.exportUser': { input: () => ({ userId: 'matrix-user' }), foreign: (ids) => ({ userId: 'matrix-user', licenseId: ids.licenseB }) },
};

const procedures = Object.entries(appRouter._def.procedures as unknown as Record<string, { _def: { type: string; meta?: Meta } }>).map(
  ([path, p]) => ({ path, type: p._def.type, meta: p._def.meta! }),
);
const TENANT_ROLES: TenantRole[] = ['owner', 'member', 'ingest', 'read'];

let app: TestApp;
let ids: Ids;
let keys: Record<TenantRole, string>;
let revokedKey: string;
let ownerB: string;

beforeAll(async () => {
  // Webhook fixtures point at 127.0.0.1:9 (discard; nothing is delivered): allowed for this app only.
  app = await TestApp.start({ WEBHOOK_ALLOWED_HOSTS: '127.0.0.1' });
  const a = await app.createTenant();
  const b = await app.createTenant();
  ownerB = b.ownerKey;
  keys = {
    owner: a.ownerKey,
    member: (await app.createKey(a.ownerKey, 'member')).key,
    ingest: (await app.createKey(a.ownerKey, 'ingest')).key,
    read: (await app.createKey(a.ownerKey, 'read')).key,
  };
  const revoked = await app.createKey(a.ownerKey, 'owner');
  await app.call('apiKeys.revoke', { id: revoked.id }, a.ownerKey);
  revokedKey = revoked.key;
  const licenseA = (await app.createLicense(a.ownerKey)).id;
  const licenseB = (await app.createLicense(b.ownerKey)).id;
  const threshold = (owner: string, licenseId: string) =>
    app.call('thresholds.create', { licenseId, usageType: 'matrix_t', periodType: 'monthly', limitQuantity: 1000 }, owner).then((r) => r.data.id as string);
  const webhook = (owner: string) => app.call('webhooks.create', { url: 'http://127.0.0.1:9/hook' }, owner).then((r) => r.data.id as string);
  const thresholdB = await threshold(b.ownerKey, licenseB);
  const now = new Date();
  const overageB = await app.prisma.usageOverage.create({
    data: {
      tenantId: b.tenantId, licenseId: licenseB, thresholdId: thresholdB, usageType: 'matrix_t', periodType: 'monthly',
      periodStart: now, periodEnd: now, quantity: '1', rateCents: 1, feeCents: 1n,
    },
  });
  ids = {
    tenantA: a.tenantId,
    licenseA,
    licenseB,
    thresholdA: await threshold(a.ownerKey, licenseA),
    thresholdB,
    webhookA: await webhook(a.ownerKey),
    webhookB: await webhook(b.ownerKey),
    overageB: overageB.id,
    keyA: (await app.createKey(a.ownerKey, 'read')).id,
    keyB: (await app.createKey(b.ownerKey, 'read')).id,
  };
});
afterAll(() => app.close());

const call = (p: (typeof procedures)[number], input: unknown, key: string | null, headers?: Record<string, string>) =>
  app.call(p.path, input, key, { method: p.type === 'query' ? 'GET' : 'POST', headers });

it('has a fixture for every procedure of the router', () => {
  expect(procedures.length).toBeGreaterThanOrEqual(Object.keys(fixtures).length);
  expect(procedures.map((p) => p.path).filter((path) => !fixtures[path])).toEqual([]);
});

describe.each(procedures)('$path', (p) => {
  const fixture = () => fixtures[p.path]!;

  it('refuses a missing, malformed, unknown or revoked key with 401', async () => {
    const input = fixture().input(ids);
    const unknownKey = `tk_live_${'Z'.repeat(24)}`;
    for (const key of [null, 'not-a-key', unknownKey, revokedKey]) {
      const res = await call(p, input, key);
      expect([p.path, String(key), res.status]).toEqual([p.path, String(key), 401]);
    }
    const basic = await call(p, input, null, { authorization: `Basic ${Buffer.from('a:b').toString('base64')}` });
    expect(basic.status).toBe(401);
  });

  it('allows exactly the roles its meta names (403 for the others)', async () => {
    for (const role of TENANT_ROLES) {
      const res = await call(p, fixture().input(ids), keys[role]);
      const allowed = p.meta.scope !== 'platform' && p.meta.roles.includes(role);
      if (allowed) expect([role, res.status]).not.toEqual([role, 403]);
      else expect([role, res.status]).toEqual([role, 403]);
      expect(res.status).not.toBe(401);
      expect(res.status).toBeLessThan(500);
    }
  });

  it('lets an admin in (naming the tenant for tenant-scoped procedures)', async () => {
    const headers = p.meta.scope === 'platform' ? undefined : { 'x-tally-tenant': ids.tenantA };
    const res = await call(p, fixture().input(ids), app.adminKey, headers);
    expect([401, 403]).not.toContain(res.status);
    expect(res.status).toBeLessThan(500);
    if (p.meta.scope === 'tenant') {
      expect((await call(p, fixture().input(ids), app.adminKey)).status).toBe(400);
      expect((await call(p, fixture().input(ids), app.adminKey, { 'x-tally-tenant': randomUUID() })).status).toBe(404);
    }
  });

  if (!fixtures[p.path]?.foreign) return;
  it("answers another tenant's ids with 404 and changes nothing", async () => {
    const res = await call(p, fixture().foreign!(ids), keys.owner);
    if (fixture().foreignExpect) fixture().foreignExpect!(res);
    else expect(res.status).toBe(404);
    const licenseB = await app.prisma.license.findUniqueOrThrow({ where: { id: ids.licenseB } });
    expect(licenseB).toMatchObject({ name: 'License', status: 'ACTIVE', deletedAt: null });
    expect(await app.prisma.apiKey.findUniqueOrThrow({ where: { id: ids.keyB } })).toMatchObject({ revokedAt: null });
    expect(await app.prisma.usageEvent.count({ where: { licenseId: ids.licenseB } })).toBe(0);
    expect(await app.prisma.usageThreshold.findUniqueOrThrow({ where: { id: ids.thresholdB } })).toMatchObject({ licenseId: ids.licenseB });
    expect((await app.prisma.usageThreshold.findUniqueOrThrow({ where: { id: ids.thresholdB } })).limitQuantity.toFixed()).toBe('1000');
    expect(await app.prisma.usageThreshold.count({ where: { licenseId: ids.licenseB } })).toBe(1);
    expect(await app.prisma.webhookEndpoint.findUniqueOrThrow({ where: { id: ids.webhookB } })).toMatchObject({ enabled: true, previousSecret: null });
    expect(await app.prisma.usageOverage.findUniqueOrThrow({ where: { id: ids.overageB } })).toMatchObject({ status: 'DETECTED' });
  });
});

it("never shows one tenant another tenant's audit log", async () => {
  await app.call('licenses.update', { id: ids.licenseB, name: 'License' }, ownerB);
  const res = await app.call('auditLogs.list', { targetId: ids.licenseB }, keys.owner, { method: 'GET' });
  expect(res.status).toBe(200);
  expect(res.data.items).toEqual([]);
  const own = await app.call('auditLogs.list', { targetId: ids.licenseB }, ownerB, { method: 'GET' });
  expect(own.data.items.length).toBeGreaterThan(0);
});
