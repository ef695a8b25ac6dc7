import { TZDate } from '@date-fns/tz';
import pg from 'pg';
import { useTestApp } from '../helpers/harness';
import { periodContaining, type PeriodType } from '../../src/domain/periods';
import { QuotaEnforcer } from '../../src/domain/quotas/enforcer';
import { createRedis } from '../../src/lib/redis';
import { trackEvent } from '../../src/domain/usage/track';
import { usageEventInputSchema } from '../../src/domain/usage/event-schema';
import { AppError } from '../../src/lib/errors';

const app = useTestApp();
let ownerKey: string;
let tenantId: string;

beforeAll(async () => {
  ({ ownerKey, tenantId } = await app.createTenant());
});

const track = (licenseId: string, quantity: number | string, usageType = 'api_call') =>
  app.call('usage.trackEvent', { licenseId, usageType, quantity }, ownerKey);

/** Usage already recorded earlier in a period (on a day before today), straight into PostgreSQL. */
async function recordEarlier(licenseId: string, timezone: string, periodType: PeriodType, quantity: number, anchor?: Date) {
  const period = periodContaining(periodType, new Date(), timezone, anchor);
  const today = periodContaining('daily', new Date(), timezone);
  const at = new Date(period.start.getTime() + 3_600_000);
  expect(at.getTime()).toBeLessThan(today.start.getTime()); // a previous day of the same period
  await app.services.db.pool.query(
    `INSERT INTO usage_events (id, tenant_id, license_id, usage_type, quantity, occurred_at, payload_hash)
     VALUES (gen_random_uuid(), $1, $2, 'api_call', $3, $4, 'seeded')`,
    [tenantId, licenseId, quantity, at],
  );
}

async function expectRefusedBy(licenseId: string, periodType: PeriodType, limit: string) {
  const res = await track(licenseId, '0.000001');
  expect(res.status).toBe(429);
  expect((res.body.error?.data as any).details).toMatchObject({ periodType, limit, remaining: '0' });
}

/** A zone where today is not a Monday, so this week has days before today. */
function zoneNotOnMonday(): string {
  return ['UTC', 'Pacific/Kiritimati', 'Pacific/Pago_Pago'].find((z) => new TZDate(Date.now(), z).getDay() !== 1)!;
}

describe.each([
  { plan: 'trial', daily: 100, long: 'weekly' as const, longLimit: 700 },
  { plan: 'starter', daily: 34, long: 'monthly' as const, longLimit: 1000 },
  { plan: 'professional', daily: 334, long: 'monthly' as const, longLimit: 10000 },
])('$plan plan', ({ plan, daily, long, longLimit }) => {
  it(`admits ${daily} a day and refuses a millionth more`, async () => {
    const { id } = await app.createLicense(ownerKey, { plan });
    expect((await track(id, daily - 1)).status).toBe(200);
    const last = await track(id, 1);
    expect(last.status).toBe(200);
    expect(last.headers.get('ratelimit-remaining')).toBe('0');
    await expectRefusedBy(id, 'daily', String(daily));
    expect((await track(id, 1, 'another_type')).status).toBe(200); // limits are per usage type
  });

  it(`enforces ${longLimit} per ${long} together with the daily limit`, async () => {
    const timezone = long === 'weekly' ? zoneNotOnMonday() : 'UTC';
    const anchor = new Date(Date.now() + 86_400_000); // the month began on a previous day
    const { id } = await app.createLicense(ownerKey, { plan, timezone, billingAnchor: anchor.toISOString() });
    await recordEarlier(id, timezone, long, longLimit - 10, anchor);
    const first = await track(id, 9);
    expect(first.status).toBe(200);
    expect([first.headers.get('ratelimit-limit'), first.headers.get('ratelimit-remaining')]).toEqual([String(longLimit), '1']);
    expect((await track(id, 1)).status).toBe(200);
    await expectRefusedBy(id, long, String(longLimit));
    const current = await app.call('usage.current', { licenseId: id, usageType: 'api_call' }, ownerKey, { method: 'GET' });
    expect(current.data.usage.find((u: any) => u.period === 'daily')).toMatchObject({ used: '10', limit: String(daily) });
    expect(current.data.usage.find((u: any) => u.period === long)).toMatchObject({ used: String(longLimit), remaining: '0' });
  });
});

it.each(['enterprise', 'vip_founder', 'byok'])('%s is unlimited', async (plan) => {
  const { id } = await app.createLicense(ownerKey, { plan });
  const res = await track(id, '999999999');
  expect(res.status).toBe(200);
  expect(res.headers.get('ratelimit-limit')).toBeNull();
  expect((await track(id, '999999999')).status).toBe(200);
});

describe('with Redis unreachable', () => {
  const parse = (licenseId: string) => usageEventInputSchema.parse({ licenseId, usageType: 'api_call' });
  const deadRedis = () => createRedis('redis://127.0.0.1:1', { retryStrategy: () => null, maxRetriesPerRequest: 0 });

  function depsWith(failMode: 'closed' | 'open', pool = app.services.db.pool) {
    const enforcer = new QuotaEnforcer(
      { redis: deadRedis(), pool, logger: app.services.logger },
      { keyPrefix: app.prefix, failMode, limitsCacheMs: 0, redisTimeoutMs: 50 },
    );
    const deps = app.services.track;
    return { ...deps, quota: { ...deps.quota!, enforcer } };
  }

  it('decides from PostgreSQL by default (fail-closed): exactly the limit is admitted', async () => {
    const anchor = new Date(Date.now() + 86_400_000);
    const { id } = await app.createLicense(ownerKey, { plan: 'starter', timezone: 'UTC', billingAnchor: anchor.toISOString() });
    await recordEarlier(id, 'UTC', 'monthly', 995, anchor);
    const deps = depsWith('closed');
    const outcomes = await Promise.allSettled(Array.from({ length: 12 }, () => trackEvent(deps, tenantId, 'live', parse(id), undefined)));
    expect(outcomes.filter((o) => o.status === 'fulfilled')).toHaveLength(5);
    const refused = outcomes.filter((o): o is PromiseRejectedResult => o.status === 'rejected');
    expect(refused.every((o) => o.reason instanceof AppError && o.reason.code === 'TOO_MANY_REQUESTS')).toBe(true);
    expect(await app.prisma.usageEvent.count({ where: { licenseId: id, payloadHash: { not: 'seeded' } } })).toBe(5);
    // another process, also without Redis, sees the stored usage
    await expect(trackEvent(depsWith('closed'), tenantId, 'live', parse(id), undefined)).rejects.toMatchObject({ code: 'TOO_MANY_REQUESTS' });
  });

  it('admits without checking when configured fail-open', async () => {
    const { id } = await app.createLicense(ownerKey, { plan: 'starter' });
    const deps = depsWith('open');
    for (let i = 0; i < 36; i++) await trackEvent(deps, tenantId, 'live', parse(id), undefined);
    expect(await app.prisma.usageEvent.count({ where: { licenseId: id } })).toBe(36);
  });

  it('answers 503-class UNAVAILABLE when PostgreSQL cannot be read either', async () => {
    const { id } = await app.createLicense(ownerKey, { plan: 'starter' });
    const deadPool = new pg.Pool({ connectionString: 'postgresql://postgres@127.0.0.1:1/none', connectionTimeoutMillis: 200 });
    try {
      await expect(trackEvent(depsWith('closed', deadPool), tenantId, 'live', parse(id), undefined)).rejects.toMatchObject({ code: 'UNAVAILABLE' });
      expect(await app.prisma.usageEvent.count({ where: { licenseId: id } })).toBe(0);
    } finally {
      await deadPool.end();
    }
  });
});
