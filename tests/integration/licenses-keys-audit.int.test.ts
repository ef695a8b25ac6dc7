import { randomUUID } from 'node:crypto';
import { useTestApp } from '../helpers/harness';
import { hashApiKey } from '../../src/domain/api-keys/key-material';

const app = useTestApp();
let ownerKey: string;
let tenantId: string;

beforeAll(async () => {
  ({ ownerKey, tenantId } = await app.createTenant());
});

describe('licenses', () => {
  it('creates with plan, zone and anchor, and validates both', async () => {
    const res = await app.call('licenses.create', { name: 'Kolkata', plan: 'professional', timezone: 'Asia/Kolkata', externalId: 'cust-1' }, ownerKey);
    expect(res.status).toBe(200);
    expect(res.data).toMatchObject({ plan: 'professional', timezone: 'Asia/Kolkata', status: 'ACTIVE', usageTrackingEnabled: true, externalId: 'cust-1' });
    expect(Date.parse(res.data.billingAnchor)).not.toBeNaN();
    for (const bad of [{ timezone: 'Mars/Olympus' }, { timezone: '+05:30' }, { plan: 'gold' }, { name: '' }, { stripeCustomerId: 'nope' }]) {
      const r = await app.call('licenses.create', { name: 'x', ...bad }, ownerKey);
      expect([JSON.stringify(bad), r.status]).toEqual([JSON.stringify(bad), 400]);
      expect(r.body.error?.data.issues?.length).toBeGreaterThan(0);
    }
    const dup = await app.call('licenses.create', { name: 'again', externalId: 'cust-1' }, ownerKey);
    expect(dup.status).toBe(409);
  });

  it('lists newest first with a cursor and a status filter', async () => {
    const t = await app.createTenant();
    const created: string[] = [];
    for (let i = 0; i < 5; i++) created.push((await app.createLicense(t.ownerKey, { name: `L${i}` })).id);
    await app.call('licenses.setStatus', { id: created[1], status: 'EXPIRED' }, t.ownerKey);
    const seen: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await app.call('licenses.list', { limit: 2, cursor }, t.ownerKey, { method: 'GET' });
      expect(page.status).toBe(200);
      expect(page.data.items.length).toBeLessThanOrEqual(2);
      seen.push(...page.data.items.map((l: { id: string }) => l.id));
      cursor = page.data.nextCursor ?? undefined;
    } while (cursor);
    expect(seen).toEqual([...created].reverse());
    const expired = await app.call('licenses.list', { status: 'EXPIRED' }, t.ownerKey, { method: 'GET' });
    expect(expired.data.items.map((l: { id: string }) => l.id)).toEqual([created[1]]);
    expect((await app.call('licenses.list', { limit: 101 }, t.ownerKey, { method: 'GET' })).status).toBe(400);
    expect((await app.call('licenses.list', { limit: 100 }, t.ownerKey, { method: 'GET' })).status).toBe(200);
    expect((await app.call('licenses.list', { cursor: 'garbage' }, t.ownerKey, { method: 'GET' })).status).toBe(400);
  });

  it('updates, changes status and soft-deletes', async () => {
    const { id } = await app.createLicense(ownerKey);
    const upd = await app.call('licenses.update', { id, name: 'New', plan: 'starter', usageTrackingEnabled: false }, ownerKey);
    expect(upd.data).toMatchObject({ name: 'New', plan: 'starter', usageTrackingEnabled: false });
    const del = await app.call('licenses.delete', { id }, ownerKey);
    expect(del.status).toBe(200);
    expect((await app.call('licenses.get', { id }, ownerKey, { method: 'GET' })).status).toBe(404);
    expect(await app.prisma.license.findUnique({ where: { id } })).toMatchObject({ deletedAt: expect.any(Date) });
  });
});

describe('API keys', () => {
  it('shows the key once and stores only its SHA-256 digest', async () => {
    const res = await app.call('apiKeys.create', { name: 'ci', role: 'ingest', userEmail: 'dev@example.com', organization: 'Acme' }, ownerKey);
    expect(res.status).toBe(200);
    expect(res.data.key).toMatch(/^tk_live_[A-Za-z0-9]{24}$/);
    expect(res.data.key.startsWith(res.data.prefix)).toBe(true);
    const row = await app.prisma.apiKey.findUniqueOrThrow({ where: { id: res.data.id } });
    expect(row.keyHash).toBe(hashApiKey(res.data.key));
    expect(Object.values(row).map(String)).not.toContain(res.data.key);
    const list = await app.call('apiKeys.list', {}, ownerKey, { method: 'GET' });
    expect(JSON.stringify(list.body)).not.toContain(res.data.key);
    expect(list.data.items.find((k: { id: string }) => k.id === res.data.id)).toMatchObject({ userEmail: 'dev@example.com', organization: 'Acme' });
  });

  it('fails a revoked key at once', async () => {
    const { id, key } = await app.createKey(ownerKey, 'read');
    expect((await app.call('licenses.list', {}, key, { method: 'GET' })).status).toBe(200);
    expect((await app.call('apiKeys.revoke', { id }, ownerKey)).status).toBe(200);
    expect((await app.call('licenses.list', {}, key, { method: 'GET' })).status).toBe(401);
  });

  it('records lastUsedAt, request count and SDK version without a write per request', async () => {
    const { id, key } = await app.createKey(ownerKey, 'read');
    for (let i = 0; i < 3; i++) {
      await app.call('licenses.list', {}, key, { method: 'GET', headers: { 'user-agent': 'tally-node/1.4.2 (linux)' } });
    }
    expect((await app.prisma.apiKey.findUniqueOrThrow({ where: { id } })).requestCount).toBe(0n);
    await app.services.authenticator.flushUsage();
    const row = await app.prisma.apiKey.findUniqueOrThrow({ where: { id } });
    expect(row.requestCount).toBe(3n);
    expect(row.lastUsedAt).toBeInstanceOf(Date);
    expect(row.sdkVersion).toBe('tally-node/1.4.2');
  });

  it('refuses bad input with 400 and writes nothing', async () => {
    // this tenant's keys: other test files create keys in the same database at the same time
    const before = await app.prisma.apiKey.count({ where: { tenantId } });
    for (const bad of [{ name: 'x', role: 'admin' }, { name: '', role: 'read' }, { name: 'x', role: 'read', userEmail: 'nope' }, { name: 'x', role: 'read', rateLimitPerHour: 0 }]) {
      expect((await app.call('apiKeys.create', bad, ownerKey)).status).toBe(400);
    }
    expect(await app.prisma.apiKey.count({ where: { tenantId } })).toBe(before);
  });
});

describe('audit log', () => {
  it('records every mutation with actor, target, ip and user agent', async () => {
    const { id } = await app.createLicense(ownerKey);
    await app.call('licenses.update', { id, name: 'Audited' }, ownerKey, { headers: { 'user-agent': 'audit-test/1.0' } });
    const res = await app.call('auditLogs.list', { targetId: id }, ownerKey, { method: 'GET' });
    expect(res.status).toBe(200);
    expect(res.data.items.map((e: { action: string }) => e.action)).toEqual(['licenses.update', 'licenses.create']);
    expect(res.data.items[0]).toMatchObject({ tenantId, outcome: 'success', targetType: 'license', ip: '127.0.0.1', userAgent: 'audit-test/1.0' });
    expect(res.data.items[0].actorPrefix).toMatch(/^tk_live_/);
  });

  it('records refused authentication with the key prefix only, never the secret', async () => {
    const bogus = `tk_live_${randomUUID().replace(/-/g, '').slice(0, 24)}`;
    expect((await app.call('licenses.list', {}, bogus, { method: 'GET' })).status).toBe(401);
    await app.services.authenticator.flush(); // refusals are audited per address and window, with a count
    const entry = await app.prisma.auditLog.findFirst({
      where: { action: 'auth.refused', ip: '127.0.0.1', metadata: { path: ['prefixes'], array_contains: [bogus.slice(0, 16)] } },
    });
    expect(entry).toMatchObject({ outcome: 'refused', tenantId: null });
    expect(JSON.stringify(entry)).not.toContain(bogus);
    // admins see platform-wide entries; a tenant owner does not
    const admin = await app.call('auditLogs.list', { action: 'auth.refused' }, app.adminKey, { method: 'GET' });
    expect(admin.data.items.some((e: { id: string }) => e.id === entry!.id)).toBe(true);
    const owner = await app.call('auditLogs.list', { action: 'auth.refused' }, ownerKey, { method: 'GET' });
    expect(owner.data.items).toEqual([]);
  });

  it('does not audit usage events (they are data, not changes)', async () => {
    const { id } = await app.createLicense(ownerKey);
    await app.call('usage.trackEvent', { licenseId: id, usageType: 'x' }, ownerKey);
    // scoped to this tenant: other suites share the database (the auth matrix audits refused usage.* calls)
    expect(await app.prisma.auditLog.count({ where: { tenantId, action: { startsWith: 'usage.' } } })).toBe(0);
  });
});
