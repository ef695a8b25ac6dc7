import { randomUUID } from 'node:crypto';
import { useTestApp } from '../helpers/harness';
import { deleteLicense, setLicenseStatus, updateLicense } from '../../src/domain/licenses/licenses';
import { LicenseCache } from '../../src/domain/licenses/license-cache';
import { createThreshold, removeThreshold, updateThreshold } from '../../src/domain/quotas/thresholds';
import { revokeApiKey } from '../../src/domain/api-keys/api-keys';
import { recalculateRange } from '../../src/domain/rollups/aggregate';

/**
 * Domain operations own their side effects: called directly (as a script, a job or a future
 * REST route would), not through a tRPC procedure, each still drops the caches its change makes
 * stale and broadcasts revocations. Every collaborator here is the real one of the app.
 */
  // Limits stay cached for an hour, so only an invalidation can make a change take effect.
const app = useTestApp({ QUOTA_LIMITS_CACHE_SECONDS: '3600' });
const OWNER = { mayChangeBilling: true };

const generation = async (tenantId: string) => Number((await app.services.redis.get(`${app.prefix}analytics:{${tenantId}}:gen`)) ?? 0);

/** Sends `count` events in one batch; answers how many were accepted. */
async function send(ownerKey: string, licenseId: string, count: number, usageType = 'api_call'): Promise<number> {
  const res = await app.call<{ accepted: number }>(
    'usage.trackEvents',
    { events: Array.from({ length: count }, () => ({ licenseId, usageType, idempotencyKey: randomUUID() })) },
    ownerKey,
  );
  expect(res.status).toBe(200);
  return res.data.accepted;
}

describe('domain operations called directly', () => {
  it('updateLicense drops the cached limits (a plan change applies at once) and, with a new zone, the cached analytics', async () => {
    const t = await app.createTenant();
    const license = await app.createLicense(t.ownerKey, { plan: 'starter', timezone: 'UTC' }); // 34 a day
    expect(await send(t.ownerKey, license.id, 35)).toBe(34); // the limits are now cached for an hour

    await updateLicense(app.services.licenses, t.tenantId, 'live', license.id, { planCode: 'enterprise' }, OWNER);
    expect(await send(t.ownerKey, license.id, 1)).toBe(1);

    const before = await generation(t.tenantId);
    await updateLicense(app.services.licenses, t.tenantId, 'live', license.id, { name: 'renamed' }, OWNER);
    expect(await generation(t.tenantId)).toBe(before); // nothing analytics cut periods by changed
    await updateLicense(app.services.licenses, t.tenantId, 'live', license.id, { timezone: 'Asia/Kolkata' }, OWNER);
    expect(await generation(t.tenantId)).toBe(before + 1);
  });

  it('deleteLicense drops the tenant\'s cached analytics', async () => {
    const t = await app.createTenant();
    const license = await app.createLicense(t.ownerKey);
    const before = await generation(t.tenantId);
    await deleteLicense(app.services.licenses, t.tenantId, 'live', license.id);
    expect(await generation(t.tenantId)).toBe(before + 1);
  });

  it('createThreshold, updateThreshold and removeThreshold drop the cached limits', async () => {
    const t = await app.createTenant();
    const license = await app.createLicense(t.ownerKey, { plan: 'enterprise' });
    expect(await send(t.ownerKey, license.id, 3)).toBe(3); // unlimited, and cached so

    const threshold = await createThreshold(app.services.thresholds, t.tenantId, 'live', {
      licenseId: license.id,
      usageType: 'api_call',
      periodType: 'daily',
      limitQuantity: '4',
    });
    expect(await send(t.ownerKey, license.id, 2)).toBe(1); // the 4th is admitted, the 5th is past the limit

    await updateThreshold(app.services.thresholds, t.tenantId, 'live', threshold.id, { limitQuantity: '6' });
    expect(await send(t.ownerKey, license.id, 3)).toBe(2);

    await removeThreshold(app.services.thresholds, t.tenantId, 'live', threshold.id);
    expect(await send(t.ownerKey, license.id, 3)).toBe(3);
  });

  it('revokeApiKey makes the key fail at once, though it was cached', async () => {
    const t = await app.createTenant();
    const key = await app.createKey(t.ownerKey, 'read');
    expect((await app.call('licenses.list', {}, key.key, { method: 'GET' })).status).toBe(200); // now cached

    await revokeApiKey(app.services.apiKeys, t.tenantId, 'live', key.id);
    const res = await app.call('licenses.list', {}, key.key, { method: 'GET' });
    expect(res.status).toBe(401);
    expect(res.body.error?.message).toMatch(/revoked/);
  });

  it('recalculateRange drops the cached analytics of the tenant it recomputed', async () => {
    const t = await app.createTenant();
    const other = await app.createTenant();
    const [before, otherBefore] = [await generation(t.tenantId), await generation(other.tenantId)];
    const day = new Date(Date.now() - 2 * 86_400_000).toISOString().slice(0, 10);
    await recalculateRange(app.services.rollups, { tenantId: t.tenantId, licenseId: null, startDate: day, endDate: day }, { retentionDays: 90 });
    expect(await generation(t.tenantId)).toBe(before + 1);
    expect(await generation(other.tenantId)).toBe(otherBefore);
  });

  it('setLicenseStatus and deleteLicense refuse the next event at once, though the license was cached', async () => {
    const t = await app.createTenant();
    const license = await app.createLicense(t.ownerKey, { plan: 'enterprise' });
    const track = () => app.call('usage.trackEvent', { licenseId: license.id, usageType: 'api_call' }, t.ownerKey);
    expect((await track()).status).toBe(200); // cached for an hour now

    await setLicenseStatus(app.services.licenses, t.tenantId, 'live', license.id, 'SUSPENDED');
    const suspended = await track();
    expect(suspended.status).toBe(422);
    expect(suspended.body.error?.message).toMatch(/SUSPENDED/);
    expect(await send(t.ownerKey, license.id, 2)).toBe(0);

    await setLicenseStatus(app.services.licenses, t.tenantId, 'live', license.id, 'ACTIVE');
    expect((await track()).status).toBe(200);

    await deleteLicense(app.services.licenses, t.tenantId, 'live', license.id);
    expect((await track()).status).toBe(404);
    expect(await app.prisma.usageEvent.count({ where: { licenseId: license.id } })).toBe(2);
  });

  it('an invalidation reaches the license cache of every other process (Redis broadcast)', async () => {
    const t = await app.createTenant();
    const license = await app.createLicense(t.ownerKey, { plan: 'enterprise' });
    // another process's cache: its own connections, the same channel, entries kept for an hour
    const other = new LicenseCache(app.services.db.pool, { ttlMs: 3_600_000, redis: app.services.redis, channelPrefix: app.prefix });
    await other.start();
    try {
      expect((await other.get(license.id))?.status).toBe('ACTIVE'); // cached there
      await app.prisma.license.update({ where: { id: license.id }, data: { status: 'EXPIRED' } });
      expect((await other.get(license.id))?.status).toBe('ACTIVE'); // still the cached entry: only an invalidation drops it

      await setLicenseStatus(app.services.licenses, t.tenantId, 'live', license.id, 'SUSPENDED');
      // the broadcast arrives asynchronously: ask until it has (the entry would otherwise stay an hour)
      let status = (await other.get(license.id))?.status;
      for (let i = 0; i < 200 && status === 'ACTIVE'; i++) {
        await new Promise((resolve) => setTimeout(resolve, 25));
        status = (await other.get(license.id))?.status;
      }
      expect(status).toBe('SUSPENDED');
    } finally {
      await other.stop();
    }
  });
});
