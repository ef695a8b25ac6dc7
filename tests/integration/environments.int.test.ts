import { randomUUID } from 'node:crypto';
import { TestApp } from '../helpers/harness';
import { licenseWithLimit } from '../helpers/quota';
import { startReceiver } from '../helpers/receiver';
import { startTestWorkers } from '../helpers/workers';
import { createIsolatedDatabase } from '../helpers/isolated-db';

/**
 * Test and live never mix: a key reaches only licenses (and webhook endpoints, and keys) of its
 * own environment. The auth matrix checks every procedure's answers with a test key and live ids;
 * this file checks what the matrix cannot see: usage counting, quotas, cached analytics, webhook
 * dispatch, exports, the admin's environment, and that existing data is live.
 */

let app: TestApp;
let workers: Awaited<ReturnType<typeof startTestWorkers>>;
// a database of its own: the platform view counts every tenant's usage
let db: ReturnType<typeof createIsolatedDatabase>;

beforeAll(async () => {
  db = createIsolatedDatabase('environments');
  // receivers listen on loopback
  app = await TestApp.start({ DATABASE_URL: db.url, WEBHOOK_RETRY_BASE_MS: '20', WEBHOOK_ALLOWED_HOSTS: '127.0.0.1' });
  workers = await startTestWorkers(app);
}, 180_000);
afterAll(async () => {
  await workers?.close();
  await app?.close();
  await db?.drop();
});

const TODAY = new Date().toISOString().slice(0, 10);
const get = (path: string, input: unknown, key: string, headers?: Record<string, string>) => app.call(path, input, key, { method: 'GET', headers });

/** A tenant with its live owner key and a test owner key (a live owner may make test keys). */
async function tenantWithBothKeys() {
  const t = await app.createTenant();
  const test = await app.call('apiKeys.create', { name: 'test owner', role: 'owner', environment: 'test' }, t.ownerKey);
  expect([test.status, test.data.key.startsWith('tk_test_'), test.data.environment]).toEqual([200, true, 'test']);
  return { tenantId: t.tenantId, live: t.ownerKey, test: test.data.key as string };
}

async function send(key: string, licenseId: string, quantity: number, usageType = 'api_call') {
  return app.call('usage.trackEvent', { licenseId, usageType, quantity }, key);
}

describe('licenses', () => {
  it('are created in the key’s environment; another environment is a 400 naming the field, except for an admin', async () => {
    const t = await tenantWithBothKeys();
    const live = await app.call('licenses.create', { name: 'live one' }, t.live);
    const test = await app.call('licenses.create', { name: 'test one' }, t.test);
    expect([live.status, live.data.environment, test.status, test.data.environment]).toEqual([200, 'live', 200, 'test']);

    const count = () => app.prisma.license.count({ where: { tenantId: t.tenantId } });
    const before = await count();
    for (const [key, environment] of [[t.test, 'live'], [t.live, 'test']] as const) {
      const refused = await app.call('licenses.create', { name: 'elsewhere', environment }, key);
      expect([refused.status, refused.body.error?.data.issues?.map((i) => i.path)]).toEqual([400, [['environment']]]);
    }
    const invalid = await app.call('licenses.create', { name: 'x', environment: 'staging' }, t.live);
    expect([invalid.status, invalid.body.error?.data.issues?.[0]?.path]).toEqual([400, ['environment']]);
    expect(await count()).toBe(before);

    // naming its own environment is fine; an admin may name either
    expect((await app.call('licenses.create', { name: 'same', environment: 'test' }, t.test)).data.environment).toBe('test');
    const byAdmin = await app.call('licenses.create', { name: 'admin made', environment: 'test' }, app.adminKey, { headers: { 'x-tally-tenant': t.tenantId } });
    expect([byAdmin.status, byAdmin.data.environment]).toEqual([200, 'test']);
    expect((await get('licenses.get', { id: byAdmin.data.id }, t.test)).status).toBe(200);
    expect((await get('licenses.get', { id: byAdmin.data.id }, t.live)).status).toBe(404);
  });

  it('may share an external id across environments, never within one', async () => {
    const t = await tenantWithBothKeys();
    const externalId = `cus-${randomUUID()}`;
    const live = await app.call('licenses.create', { name: 'a', externalId }, t.live);
    const test = await app.call('licenses.create', { name: 'b', externalId }, t.test);
    expect([live.status, test.status]).toEqual([200, 200]);
    expect((await app.call('licenses.create', { name: 'c', externalId }, t.test)).status).toBe(409);
    expect((await app.call('licenses.create', { name: 'c', externalId }, t.live)).status).toBe(409);
    // and renaming a live license to a test license's external id is no clash
    const other = await app.createLicense(t.live);
    const renamed = await app.call('licenses.update', { id: other.id, externalId: `x-${externalId}` }, t.live);
    expect(renamed.status).toBe(200);
  });

  it('are listed per environment', async () => {
    const t = await tenantWithBothKeys();
    const live = await app.createLicense(t.live);
    const test = await app.createLicense(t.test);
    const ids = async (key: string) => ((await get('licenses.list', { limit: 100 }, key)).data.items as { id: string }[]).map((l) => l.id);
    expect(await ids(t.live)).toEqual([live.id]);
    expect(await ids(t.test)).toEqual([test.id]);
  });
});

describe('usage', () => {
  it('sent with a test key never counts against a live license’s quota, usage or analytics, and the reverse', async () => {
    const t = await tenantWithBothKeys();
    const { licenseId: live } = await licenseWithLimit(app, t.live, 'api_call', 3);
    const { licenseId: test } = await licenseWithLimit(app, t.test, 'api_call', 5);

    // the live license is "not found" for the test key: one event, a batch, a quota check
    const single = await send(t.test, live, 1);
    expect([single.status, single.body.error?.data.code]).toEqual([404, 'NOT_FOUND']);
    const batch = await app.call('usage.trackEvents', { events: [{ licenseId: live, usageType: 'api_call' }, { licenseId: test, usageType: 'api_call' }] }, t.test);
    expect(batch.data).toMatchObject({ accepted: 1, rejected: [{ index: 0, code: 'LICENSE_NOT_FOUND' }] });
    expect((await get('usage.check', { licenseId: live, usageType: 'api_call' }, t.test)).status).toBe(404);
    expect((await send(t.live, test, 1)).status).toBe(404);

    // the live quota is used up: the test key still gets 404 (not 429: the quota is not asked, nothing leaks)
    for (let i = 0; i < 3; i++) expect((await send(t.live, live, 1)).status).toBe(200);
    expect((await send(t.live, live, 1)).status).toBe(429);
    expect((await send(t.test, live, 1)).status).toBe(404);
    // the test license has its own room: 1 used by the batch, 4 more
    for (let i = 0; i < 4; i++) expect((await send(t.test, test, 1)).status).toBe(200);
    expect((await send(t.test, test, 1)).status).toBe(429);

    expect(await app.prisma.usageEvent.count({ where: { licenseId: live } })).toBe(3);
    expect(await app.prisma.usageEvent.count({ where: { licenseId: test } })).toBe(5);
    const used = async (key: string, licenseId: string) =>
      ((await get('usage.current', { licenseId, usageType: 'api_call' }, key)).data.usage as { period: string; used: string }[]).find((u) => u.period === 'daily')!.used;
    expect([await used(t.live, live), await used(t.test, test)]).toEqual(['3', '5']);

    // tenant-wide analytics per environment; asked live first, so a cached live answer would show up for test
    const input = { startDate: TODAY, endDate: TODAY, granularity: 'daily', timezone: 'UTC' };
    const total = async (key: string) => (await get('analytics.usage', input, key)).data.overview.totalQuantity;
    expect(await total(t.live)).toBe('3');
    expect(await total(t.test)).toBe('5');
    expect(await total(t.live)).toBe('3');
    const top = async (key: string) => ((await get('analytics.topLicenses', { startDate: TODAY, endDate: TODAY }, key)).data.items as { licenseId: string }[]).map((i) => i.licenseId);
    expect([await top(t.live), await top(t.test)]).toEqual([[live], [test]]);
    const breakdown = await get('analytics.breakdown', { startDate: TODAY, endDate: TODAY, by: 'usageType' }, t.test);
    expect(breakdown.data.total).toEqual({ quantity: '5', events: 5 });
    expect((await get('analytics.usage', { ...input, licenseId: live }, t.test)).status).toBe(404);
  });

  it('exports per environment: all licenses of the key’s environment, and another environment’s license is 404', async () => {
    const t = await tenantWithBothKeys();
    const live = await app.createLicense(t.live);
    const test = await app.createLicense(t.test);
    expect((await send(t.live, live.id, 2)).status).toBe(200);
    expect((await send(t.test, test.id, 7)).status).toBe(200);
    const exported = async (key: string, licenseId?: string) => {
      const query = new URLSearchParams({ format: 'json', startDate: TODAY, endDate: TODAY, ...(licenseId ? { licenseId } : {}) });
      const res = await fetch(`${app.baseUrl}/api/export/events?${query.toString()}`, { headers: { authorization: `Bearer ${key}` } });
      return { status: res.status, rows: res.status === 200 ? ((await res.json()) as { license_id: string; quantity: string }[]) : [] };
    };
    const asLive = await exported(t.live);
    const asTest = await exported(t.test);
    expect(asLive.rows.map((r) => [r.license_id, r.quantity])).toEqual([[live.id, '2']]);
    expect(asTest.rows.map((r) => [r.license_id, r.quantity])).toEqual([[test.id, '7']]);
    expect((await exported(t.test, live.id)).status).toBe(404);
    expect((await get('analytics.export', { licenseId: live.id, startDate: TODAY, endDate: TODAY }, t.test)).status).toBe(404);
  });
});

describe('webhooks', () => {
  it('send an alert of a license only to endpoints of its environment: a test endpoint gets test events only', async () => {
    const liveReceiver = await startReceiver();
    const testReceiver = await startReceiver();
    try {
      const t = await tenantWithBothKeys();
      const liveHook = await app.call('webhooks.create', { url: liveReceiver.url }, t.live);
      const testHook = await app.call('webhooks.create', { url: testReceiver.url }, t.test);
      expect([liveHook.data.environment, testHook.data.environment]).toEqual(['live', 'test']);
      // each key sees, changes and rotates only the endpoints of its environment
      expect((await get('webhooks.list', {}, t.test)).data.items.map((e: { id: string }) => e.id)).toEqual([testHook.data.id]);
      expect((await app.call('webhooks.update', { id: liveHook.data.id, enabled: false }, t.test)).status).toBe(404);
      expect((await app.call('webhooks.rotateSecret', { id: liveHook.data.id }, t.test)).status).toBe(404);
      expect((await get('webhooks.deliveries', { endpointId: liveHook.data.id }, t.test)).status).toBe(404);

      const { licenseId: live } = await licenseWithLimit(app, t.live, 'api_call', 2);
      const { licenseId: test } = await licenseWithLimit(app, t.test, 'api_call', 2);
      for (let i = 0; i < 2; i++) expect((await send(t.test, test, 1)).status).toBe(200); // levels 50, then 80, 95 and 100 of the test license
      expect((await send(t.live, live, 1)).status).toBe(200); // 50% of the live license

      const delivered = async (key: string, count: number) => {
        const list = await get('webhooks.deliveries', { limit: 100 }, key);
        expect(list.data.items).toHaveLength(count);
        for (const d of list.data.items) await workers.finished(`webhooks.deliver@${d.id}`);
        return list.data.items as { endpointId: string }[];
      };
      expect((await delivered(t.test, 4)).every((d) => d.endpointId === testHook.data.id)).toBe(true);
      expect((await delivered(t.live, 1)).every((d) => d.endpointId === liveHook.data.id)).toBe(true);
      const licensesIn = (received: { body: string }[]) => received.map((r) => (JSON.parse(r.body) as { data: { licenseId: string } }).data.licenseId);
      expect(licensesIn(testReceiver.received)).toEqual([test, test, test, test]);
      expect(licensesIn(liveReceiver.received)).toEqual([live]);

      // alerts are listed per environment too
      const alerts = async (key: string) => ((await get('alerts.list', {}, key)).data.items as { licenseId: string }[]).map((a) => a.licenseId);
      expect([await alerts(t.test), await alerts(t.live)]).toEqual([[test, test, test, test], [live]]);
    } finally {
      await liveReceiver.close();
      await testReceiver.close();
    }
  });
});

describe('keys and admins', () => {
  it('never let a test key make, see or revoke a live key; a live owner may make test keys', async () => {
    const t = await tenantWithBothKeys();
    const refused = await app.call('apiKeys.create', { name: 'escalation', role: 'owner', environment: 'live' }, t.test);
    expect([refused.status, refused.body.error?.data.issues?.[0]?.path]).toEqual([400, ['environment']]);
    const plain = await app.call('apiKeys.create', { name: 'reader', role: 'read' }, t.test);
    expect([plain.status, plain.data.key.startsWith('tk_test_')]).toEqual([200, true]);
    const liveKeys = (await get('apiKeys.list', {}, t.live)).data.items as { id: string; environment: string }[];
    const testKeys = (await get('apiKeys.list', {}, t.test)).data.items as { id: string; environment: string }[];
    expect(new Set(liveKeys.map((k) => k.environment))).toEqual(new Set(['live']));
    expect(new Set(testKeys.map((k) => k.environment))).toEqual(new Set(['test']));
    expect((await app.call('apiKeys.revoke', { id: liveKeys[0]!.id }, t.test)).status).toBe(404);
  });

  it('let an admin act in its key’s environment, or name the other with X-Tally-Environment (for admin keys only)', async () => {
    const t = await tenantWithBothKeys();
    const live = await app.createLicense(t.live);
    const test = await app.createLicense(t.test);
    const asAdmin = (environment?: string) => ({ 'x-tally-tenant': t.tenantId, ...(environment ? { 'x-tally-environment': environment } : {}) });
    const listed = async (key: string, headers: Record<string, string>) =>
      ((await get('licenses.list', {}, key, headers)).data.items as { id: string }[]).map((l) => l.id);
    expect(await listed(app.adminKey, asAdmin())).toEqual([live.id]); // the harness's admin key is live
    expect(await listed(app.adminKey, asAdmin('test'))).toEqual([test.id]);
    expect(await listed(app.adminKey, asAdmin('live'))).toEqual([live.id]);
    const bad = await get('licenses.list', {}, app.adminKey, asAdmin('staging'));
    expect([bad.status, bad.body.error?.message]).toEqual([400, 'X-Tally-Environment: must be "live" or "test"']);
    // the header does not count for tenant keys
    expect(await listed(t.test, { 'x-tally-environment': 'live' })).toEqual([test.id]);
    expect(await listed(t.live, { 'x-tally-environment': 'test' })).toEqual([live.id]);
  });
});

describe('the platform view', () => {
  it('counts one environment: the admin key’s, or the one X-Tally-Environment names', async () => {
    const t = await tenantWithBothKeys();
    const live = await app.createLicense(t.live);
    const test = await app.createLicense(t.test);
    expect((await send(t.live, live.id, 1)).status).toBe(200);
    for (let i = 0; i < 3; i++) expect((await send(t.test, test.id, 1)).status).toBe(200);
    const ours = async (headers?: Record<string, string>) => {
      const res = await get('analytics.platform', { days: 1, top: 50 }, app.adminKey, headers);
      expect(res.status).toBe(200);
      return (res.data.topTenants as { tenantId: string; events: number }[]).find((x) => x.tenantId === t.tenantId)?.events;
    };
    expect(await ours()).toBe(1); // the harness's admin key is live
    expect(await ours({ 'x-tally-environment': 'test' })).toBe(3);
    expect(await ours({ 'x-tally-environment': 'live' })).toBe(1);
  });
});

describe('existing data', () => {
  it('is live: a license or endpoint written without an environment is live, reached by live keys only', async () => {
    const t = await tenantWithBothKeys();
    const plan = await app.prisma.plan.findUniqueOrThrow({ where: { code: 'enterprise' } });
    // rows as the code before environments wrote them (no environment column named)
    const { rows } = await app.services.db.pool.query<{ id: string; environment: string }>(
      `INSERT INTO licenses (id, tenant_id, name, plan_id, billing_anchor, updated_at)
       VALUES (gen_random_uuid(), $1, 'from before', $2, now(), now()) RETURNING id, environment::text`,
      [t.tenantId, plan.id],
    );
    const endpoint = await app.services.db.pool.query<{ environment: string }>(
      `INSERT INTO webhook_endpoints (id, tenant_id, url, secret, updated_at)
       VALUES (gen_random_uuid(), $1, 'https://93.184.215.14/old', 'whsec_old', now()) RETURNING environment::text`,
      [t.tenantId],
    );
    expect([rows[0]!.environment, endpoint.rows[0]!.environment]).toEqual(['live', 'live']);
    const id = rows[0]!.id;
    expect((await get('licenses.get', { id }, t.live)).data.environment).toBe('live');
    expect((await get('licenses.get', { id }, t.test)).status).toBe(404);
    expect((await send(t.live, id, 1)).status).toBe(200);
    expect((await send(t.test, id, 1)).status).toBe(404);

    // the migration made the column NOT NULL with default live, so every row that existed became live
    const column = await app.services.db.pool.query<{ table_name: string; is_nullable: string; column_default: string }>(
      `SELECT table_name, is_nullable, column_default FROM information_schema.columns
        WHERE column_name = 'environment' AND table_name IN ('licenses', 'webhook_endpoints') ORDER BY table_name`,
    );
    expect(column.rows).toEqual([
      { table_name: 'licenses', is_nullable: 'NO', column_default: "'live'::api_key_environment" },
      { table_name: 'webhook_endpoints', is_nullable: 'NO', column_default: "'live'::api_key_environment" },
    ]);
  });
});
