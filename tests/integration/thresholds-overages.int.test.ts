import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import { useTestApp } from '../helpers/harness';
import { licenseWithLimit } from '../helpers/quota';
import { checkLicenseThresholds } from '../../src/domain/quotas/threshold-check';
import { loadLicenseLimits } from '../../src/domain/quotas/limits';
import { periodContaining } from '../../src/domain/periods';

const app = useTestApp();
let ownerKey: string;
let tenantId: string;

beforeAll(async () => {
  ({ ownerKey, tenantId } = await app.createTenant());
});

const get = (path: string, input: unknown, key = ownerKey) => app.call(path, input, key, { method: 'GET' });
const track = (licenseId: string, usageType: string, quantity: number | string = 1) =>
  app.call('usage.trackEvent', { licenseId, usageType, quantity }, ownerKey);

describe('thresholds', () => {
  it('creates, lists, updates and removes a threshold; a second one for the same type and period is a 409', async () => {
    const { id: licenseId } = await app.createLicense(ownerKey);
    const input = { licenseId, usageType: 'api_call', periodType: 'monthly', limitQuantity: '1000.5' };
    const created = await app.call('thresholds.create', input, ownerKey);
    expect(created.status).toBe(200);
    expect(created.data).toMatchObject({
      licenseId, usageType: 'api_call', periodType: 'monthly', limitQuantity: '1000.5', gracePercentage: '0',
      allowOverage: false, overageRateCents: 0, warningLevels: [50, 80, 95],
    });
    expect((await app.call('thresholds.create', input, ownerKey)).status).toBe(409);
    const updated = await app.call('thresholds.update', { id: created.data.id, limitQuantity: 5, warningLevels: [90, 10, 90] }, ownerKey);
    expect(updated.data).toMatchObject({ limitQuantity: '5', warningLevels: [10, 90] });
    expect((await get('thresholds.list', { licenseId })).data.items).toHaveLength(1);
    expect((await app.call('thresholds.remove', { id: created.data.id }, ownerKey)).data).toMatchObject({ removed: true });
    expect((await get('thresholds.list', { licenseId })).data.items).toHaveLength(0);
    expect((await app.call('thresholds.remove', { id: created.data.id }, ownerKey)).status).toBe(404);
    const audit = await app.prisma.auditLog.findMany({ where: { tenantId, targetId: created.data.id }, orderBy: { createdAt: 'asc' } });
    expect(audit.map((a) => a.action)).toEqual(['thresholds.create', 'thresholds.update', 'thresholds.remove']);
  });

  it('refuses bad thresholds with 400 and writes nothing', async () => {
    const { id: licenseId } = await app.createLicense(ownerKey);
    const base = { licenseId, usageType: 'x', periodType: 'daily', limitQuantity: 1 };
    for (const bad of [
      { limitQuantity: 0 }, { limitQuantity: -1 }, { limitQuantity: '1.0000001' }, { limitQuantity: 'ten' },
      { periodType: 'hourly' }, { usageType: '*' }, { usageType: 'A B' }, { gracePercentage: -1 }, { gracePercentage: 1000.01 },
      { gracePercentage: '1.005' }, { warningLevels: [0] }, { warningLevels: [101] }, { warningLevels: [50.5] },
      { overageRateCents: 1.5 }, { overageRateCents: -1 }, { allowOverage: 'yes' }, { extra: 1 },
    ]) {
      const res = await app.call('thresholds.create', { ...base, ...bad }, ownerKey);
      expect([JSON.stringify(bad), res.status]).toEqual([JSON.stringify(bad), 400]);
    }
    expect((await app.call('thresholds.create', { ...base, licenseId: randomUUID() }, ownerKey)).status).toBe(404);
    expect(await app.prisma.usageThreshold.count({ where: { licenseId } })).toBe(0);
    // the boundaries themselves are fine
    expect((await app.call('thresholds.create', { ...base, limitQuantity: '0.000001', gracePercentage: 1000, warningLevels: [1, 100] }, ownerKey)).status).toBe(200);
  });

  it('overrides the plan limit for its usage type and period only', async () => {
    const { id: licenseId } = await app.createLicense(ownerKey, { plan: 'starter' });
    await app.call('thresholds.create', { licenseId, usageType: 'api_call', periodType: 'daily', limitQuantity: 40 }, ownerKey);
    expect((await track(licenseId, 'api_call', 40)).status).toBe(200); // past starter's 34/day
    expect((await track(licenseId, 'api_call', 1)).status).toBe(429);
    expect((await track(licenseId, 'other', 34)).status).toBe(200); // other types keep the plan's 34/day
    expect((await track(licenseId, 'other', 1)).status).toBe(429);
    const current = await get('usage.current', { licenseId, usageType: 'api_call' });
    expect(current.data.usage.find((u: any) => u.period === 'daily')).toMatchObject({ used: '40', limit: '40', remaining: '0' });
    expect(current.data.usage.find((u: any) => u.period === 'monthly')).toMatchObject({ used: '40', limit: '1000', remaining: '960' });
    const status = await get('thresholds.status', { licenseId });
    const row = (type: string, period: string) => status.data.thresholds.find((t: any) => t.usageType === type && t.periodType === period);
    expect(row('api_call', 'daily')).toMatchObject({ source: 'threshold', used: '40', limit: '40', percentUsed: '100', level: 100, remaining: '0', exceeded: true, hard: true });
    expect(row('other', 'daily')).toMatchObject({ source: 'plan', thresholdId: null, used: '34', limit: '34', level: 100 });
    expect(row('other', 'monthly')).toMatchObject({ source: 'plan', used: '34', limit: '1000', percentUsed: '3.4', level: 0, exceeded: false });
  });
});

describe('overages', () => {
  it('lets usage past a soft limit through, prices it once per period, and finalizes it once the period closes', async () => {
    const { licenseId, thresholdId } = await licenseWithLimit(app, ownerKey, 'tokens', 10, {
      allowOverage: true, gracePercentage: 10, overageRateCents: 25,
    });
    const results = await Promise.all(Array.from({ length: 15 }, () => track(licenseId, 'tokens')));
    expect(results.every((r) => r.status === 200 && r.headers.get('ratelimit-limit') === null)).toBe(true);
    // detected at ingestion as soon as usage passed 11
    let overages = await get('overages.list', { licenseId });
    expect(overages.data.items).toHaveLength(1);
    expect(overages.data.items[0]).toMatchObject({ thresholdId, status: 'DETECTED', final: false, rateCents: 25 });

    const deps = app.services.reactions;
    const limits = (await loadLicenseLimits(app.prisma, tenantId, licenseId))!;
    await checkLicenseThresholds(deps, limits, new Date());
    overages = await get('overages.list', { licenseId });
    expect(overages.data.items[0]).toMatchObject({ quantity: '4', feeCents: 100, final: false });
    const status = await get('thresholds.status', { licenseId });
    expect(status.data.thresholds.find((t: any) => t.usageType === 'tokens')).toMatchObject({
      used: '15', limitWithGrace: '11', overageQuantity: '4', overageFeeCents: 100, exceeded: true, hard: false, percentUsed: '150',
    });

    // the period closes: computed a last time, final, and never again
    const period = periodContaining('daily', new Date(), limits.timezone, limits.billingAnchor);
    await track(licenseId, 'tokens', '0.5');
    await checkLicenseThresholds(deps, limits, new Date(period.end.getTime() + 3_600_000));
    overages = await get('overages.list', { licenseId });
    expect(overages.data.items).toHaveLength(1);
    expect(overages.data.items[0]).toMatchObject({ quantity: '4.5', feeCents: 113, final: true }); // 112.5 rounds half-up
    await app.services.db.pool.query(
      `INSERT INTO usage_events (id, tenant_id, license_id, usage_type, quantity, occurred_at, payload_hash)
       VALUES (gen_random_uuid(), $1, $2, 'tokens', 100, $3, 'late')`,
      [tenantId, licenseId, new Date(period.end.getTime() - 60_000)],
    );
    await checkLicenseThresholds(deps, limits, new Date(period.end.getTime() + 7_200_000));
    expect((await get('overages.list', { licenseId })).data.items[0]).toMatchObject({ quantity: '4.5', final: true });

    // decisions: audited, idempotent, and not reversible
    const id = overages.data.items[0].id;
    const approved = await app.call('overages.approve', { id }, ownerKey);
    expect(approved.data).toMatchObject({ status: 'APPROVED', decidedAt: expect.any(String) });
    expect((await app.call('overages.approve', { id }, ownerKey)).status).toBe(200);
    expect((await app.call('overages.waive', { id }, ownerKey)).status).toBe(409);
    expect((await get('overages.list', { licenseId, status: 'APPROVED' })).data.items).toHaveLength(1);
    const audit = await app.prisma.auditLog.findMany({ where: { tenantId, targetId: id } });
    expect(audit.map((a) => a.action).sort()).toEqual(['overages.approve', 'overages.approve']);
  });

  it('waives a detected overage', async () => {
    const { licenseId } = await licenseWithLimit(app, ownerKey, 'w', 1, { allowOverage: true, overageRateCents: 7 });
    await track(licenseId, 'w', 3);
    const [overage] = (await get('overages.list', { licenseId })).data.items;
    expect(overage).toMatchObject({ quantity: '2', feeCents: 14 });
    expect((await app.call('overages.waive', { id: overage.id }, ownerKey)).data.status).toBe('WAIVED');
    expect((await app.call('overages.approve', { id: overage.id }, ownerKey)).status).toBe(409);
  });
});

describe('no input a client can send gives a 500', () => {
  const procedures: [string, 'GET' | 'POST'][] = [
    ['thresholds.create', 'POST'], ['thresholds.update', 'POST'], ['thresholds.remove', 'POST'], ['thresholds.status', 'GET'],
    ['thresholds.list', 'GET'], ['usage.check', 'GET'], ['alerts.list', 'GET'], ['overages.list', 'GET'], ['overages.approve', 'POST'],
    ['webhooks.create', 'POST'], ['webhooks.update', 'POST'], ['webhooks.rotateSecret', 'POST'], ['webhooks.deliveries', 'GET'],
    ['usage.trackEvent', 'POST'], ['usage.trackEvents', 'POST'],
  ];
  it('answers arbitrary JSON with a 4xx or 200, never 5xx', async () => {
    const { id: licenseId } = await app.createLicense(ownerKey, { plan: 'trial' });
    const field = fc.oneof(
      fc.constant(licenseId), fc.uuid(), fc.string(), fc.integer(), fc.double(), fc.boolean(), fc.constant(null),
      fc.constantFrom('daily', 'weekly', 'monthly', '1e400', '-0', 'NaN', '0.0000001', 'http://127.0.0.1:1/x', 'ftp://x', 'api_call'),
      fc.array(fc.integer({ min: -5, max: 200 }), { maxLength: 12 }),
    );
    const input = fc.record(
      {
        id: field, licenseId: field, usageType: field, periodType: field, limitQuantity: field, gracePercentage: field,
        allowOverage: field, overageRateCents: field, warningLevels: field, quantity: field, url: field, events: field,
        endpointId: field, cursor: field, limit: field, overlapHours: field, status: field, minLevel: field,
      },
      { requiredKeys: [] },
    );
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...procedures), input, async ([path, method], body) => {
        const res = await app.call(path, body, ownerKey, { method });
        expect([path, res.status < 500]).toEqual([path, true]);
      }),
      { numRuns: 150 },
    );
  });
});
