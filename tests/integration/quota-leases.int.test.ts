/**
 * Quota leases (src/domain/quotas/leases.ts): far from a cap, a process reserves a block of the
 * quota in Redis and admits events from it without a script call each; the counters never pass
 * a cap, what a lease holds unused is not usage, and it goes back to the counters.
 */
import { createHash } from 'node:crypto';
import { useTestApp } from '../helpers/harness';
import { RESERVE_LUA } from '../../src/domain/quotas/counter-scripts';
import { QuotaEnforcer, type ReserveOutcome } from '../../src/domain/quotas/enforcer';
import { LEASE_IDLE_MS } from '../../src/domain/quotas/leases';
import { dropQuotaCounters, licenseWithLimit } from '../helpers/quota';
import { duplicateRedis } from '../../src/lib/redis';

const app = useTestApp({ QUOTA_REDIS_TIMEOUT_MS: '10000' });
let ownerKey: string;

beforeAll(async () => {
  ({ ownerKey } = await app.createTenant());
});

const MICRO = 1_000_000n;
const track = (licenseId: string, usageType: string, extra: Record<string, unknown> = {}) =>
  app.call('usage.trackEvent', { licenseId, usageType, ...extra }, ownerKey);
const storedSum = async (licenseId: string) =>
  Number((await app.prisma.usageEvent.aggregate({ where: { licenseId }, _sum: { quantity: true } }))._sum.quantity ?? 0);
const counterKey = async (licenseId: string, usageType: string) => {
  const keys = await app.services.redis.keys(`${app.prefix}quota:{${licenseId}}:${usageType}:*`);
  expect(keys).toHaveLength(1);
  return keys[0]!;
};
const counterValue = async (key: string) => BigInt((await app.services.redis.get(key)) ?? '-1');
/** Idle leases are given back within LEASE_IDLE_MS and one sweep (250 ms) after their last use. */
const idleLeasesBack = () => new Promise((resolve) => setTimeout(resolve, LEASE_IDLE_MS + 600));

async function enforcerLicense(usageType: string, limit: number) {
  const { licenseId } = await licenseWithLimit(app, ownerKey, usageType, limit);
  const tenantId = (await app.prisma.license.findUniqueOrThrow({ where: { id: licenseId } })).tenantId;
  const event = (quantity = '1') => ({ licenseId, usageType, quantity, occurredAt: new Date() });
  return { licenseId, tenantId, event };
}

function otherProcess(leaseMaxEvents = 256, redis = app.services.quotaRedis) {
  return new QuotaEnforcer(
    { redis, pool: app.services.db.pool, logger: app.services.logger },
    { keyPrefix: app.prefix, failMode: 'closed', limitsCacheMs: 60_000, redisTimeoutMs: 10_000, leaseMaxEvents },
  );
}

const RESERVE_SHA = createHash('sha1').update(RESERVE_LUA).digest('hex');
/** Reservation script calls among a spy's calls (the connection also carries key rate limits). */
const reserveCalls = (spy: jest.SpyInstance) => spy.mock.calls.filter((call) => call[0] === RESERVE_SHA).length;

const reservationsOf = (outcomes: ReserveOutcome[]) => outcomes.map((o) => (o.admitted ? o.reservation : null));

describe('quota leases', () => {
  it('far from the cap, admits from leases with a few script calls; every answer carries the exact remaining; what a lease holds is not usage and goes back when idle', async () => {
    const { licenseId } = await licenseWithLimit(app, ownerKey, 'leased', 10_000);
    const scripts = jest.spyOn(app.services.quotaRedis, 'evalsha');
    try {
      for (let i = 1; i <= 300; i++) {
        const res = await track(licenseId, 'leased');
        expect(res.status).toBe(200);
        expect(res.headers.get('ratelimit-remaining')).toBe(String(10_000 - i));
      }
      // one call per lease, and leases grow while they run out fast: far fewer calls than events
      expect(reserveCalls(scripts)).toBeGreaterThan(1);
      expect(reserveCalls(scripts)).toBeLessThanOrEqual(30);
    } finally {
      scripts.mockRestore();
    }
    const key = await counterKey(licenseId, 'leased');
    const leased = app.services.quota.leasedOn(key);
    expect(leased).toBeGreaterThan(0n);
    expect(await counterValue(key)).toBe(300n * MICRO + leased);
    const check = await app.call('usage.check', { licenseId, usageType: 'leased', quantity: 1 }, ownerKey, { method: 'GET' });
    expect(check.data.limits[0]).toMatchObject({ used: '300', remaining: '9700', allowed: true });
    expect(await storedSum(licenseId)).toBe(300);

    await idleLeasesBack();
    expect(app.services.quota.leasedOn(key)).toBe(0n);
    expect(await counterValue(key)).toBe(300n * MICRO);
  });

  it('never admits past the cap, and refuses nothing that would still fit: 1,100 concurrent reservations of 1 and 3 against 1,000', async () => {
    const { tenantId, licenseId, event } = await enforcerLicense('leased-cap', 1000);
    const enforcer = app.services.quota;
    const quantities = Array.from({ length: 1100 }, (_, i) => (i % 5 === 4 ? '3' : '1'));
    // in waves, as requests arrive: leases are taken, used up and renewed on the way to the cap
    const outcomes: ReserveOutcome[] = [];
    for (let from = 0; from < quantities.length; from += 50) {
      const wave = quantities.slice(from, from + 50);
      outcomes.push(...(await Promise.all(wave.map((q) => enforcer.reserve(tenantId, 'live', [event(q)]).then(([o]) => o!)))));
    }
    const admitted = quantities.filter((_, i) => outcomes[i]!.admitted).reduce((s, q) => s + Number(q), 0);
    expect(admitted).toBeLessThanOrEqual(1000);
    // whatever was refused did not fit in what was left, then and at the end (no unused lease of
    // this process refused it: a lease it did not fit in gave its quota back before it was judged)
    const refused = quantities.flatMap((q, i) => {
      const o = outcomes[i]!;
      return o.admitted ? [] : [{ quantity: Number(q), remaining: Number(o.state.remaining) }];
    });
    expect(refused.length).toBeGreaterThan(0);
    expect(refused.every((r) => r.quantity > r.remaining)).toBe(true);
    expect(Math.min(...refused.map((r) => r.quantity))).toBeGreaterThan(1000 - admitted);
    expect(admitted).toBeGreaterThanOrEqual(998); // only a 3 can be left over
    // every admitted event's place (the counter's value before it, as its headers tell) lies under the cap
    const ends = quantities.flatMap((q, i) => {
      const o = outcomes[i]!;
      return o.admitted ? [o.reservation!.counters[0]!.before + BigInt(q) * MICRO] : [];
    });
    expect(ends.every((end) => end <= 1000n * MICRO)).toBe(true);
    await enforcer.release(reservationsOf(outcomes)); // nothing was written: all of it back
    await idleLeasesBack();
    expect(await counterValue(await counterKey(licenseId, 'leased-cap'))).toBe(0n);
  });

  it('an event that waited behind the call that brought a lease is judged with that lease given back, not refused by it', async () => {
    const { tenantId, licenseId, event } = await enforcerLicense('leased-behind', 1000);
    const enforcer = app.services.quota;
    const [base] = await enforcer.reserve(tenantId, 'live', [event('841')]); // too big to lease: 159 left
    expect(base!.admitted).toBe(true);
    // the 1 goes alone and brings a lease (8); the 155, asked for meanwhile, waits for it: 158 are left for it
    const [one, big] = await Promise.all([enforcer.reserve(tenantId, 'live', [event('1')]), enforcer.reserve(tenantId, 'live', [event('155')])]);
    expect([one![0]!.admitted, big![0]!.admitted]).toEqual([true, true]);
    const all = [base!, one![0]!, big![0]!];
    await enforcer.release(reservationsOf(all));
    await idleLeasesBack();
    expect(await counterValue(await counterKey(licenseId, 'leased-behind'))).toBe(0n);
  });

  it('without Redis, a decision from PostgreSQL leaves room for live leases but not for quota on its way back', async () => {
    const { tenantId, licenseId, event } = await enforcerLicense('leased-no-redis', 10_000);
    const redis = duplicateRedis(app.services.quotaRedis);
    await redis.connect();
    const e = otherProcess(256, redis);
    try {
      for (let i = 0; i < 10; i++) expect((await e.reserve(tenantId, 'live', [event()]))[0]!.admitted).toBe(true);
      redis.disconnect();
      // the first went to Redis and brought a lease of 8, the 10th (the 8 used up) another
      expect(e.leasedOn(await counterKey(licenseId, 'leased-no-redis'))).toBeGreaterThan(MICRO);
      expect((await e.reserve(tenantId, 'live', [event()]))[0]!.admitted).toBe(true); // from the lease, Redis gone
      // 9,989 does not fit in the lease: the lease is retired and what it holds is on its way back,
      // nobody's to use; PostgreSQL decides with 11 in flight: 9,989 fits exactly
      expect((await e.reserve(tenantId, 'live', [event('9989')]))[0]!.admitted).toBe(true);
      expect((await e.reserve(tenantId, 'live', [event('0.000001')]))[0]!.admitted).toBe(false);
    } finally {
      await e.close();
      redis.disconnect();
    }
  });

  it('a counter lost while a lease is out is rebuilt with what the lease holds: the cap still holds exactly', async () => {
    const { licenseId } = await licenseWithLimit(app, ownerKey, 'leased-lost', 1000);
    for (let i = 0; i < 100; i++) expect((await track(licenseId, 'leased-lost')).status).toBe(200);
    const key = await counterKey(licenseId, 'leased-lost');
    expect(app.services.quota.leasedOn(key)).toBeGreaterThan(0n);
    await dropQuotaCounters(app);
    // does not fit in the lease: the lease ends, the counter is rebuilt, the 500 judged on it
    expect((await track(licenseId, 'leased-lost', { quantity: 500 })).status).toBe(200);
    expect((await track(licenseId, 'leased-lost', { quantity: 400 })).status).toBe(200);
    const past = await track(licenseId, 'leased-lost', { quantity: 0.000001 });
    expect(past.status).toBe(429);
    expect(past.headers.get('ratelimit-remaining')).toBe('0');
    expect(await storedSum(licenseId)).toBe(1000);
    await idleLeasesBack();
    expect(await counterValue(key)).toBe(1000n * MICRO);
  });

  it('a lowered limit ends the lease at once: nothing is admitted past the new limit', async () => {
    const { licenseId, thresholdId } = await licenseWithLimit(app, ownerKey, 'leased-lowered', 10_000);
    for (let i = 0; i < 50; i++) expect((await track(licenseId, 'leased-lowered')).status).toBe(200);
    expect(app.services.quota.leasedOn(await counterKey(licenseId, 'leased-lowered'))).toBeGreaterThan(0n);
    expect((await app.call('thresholds.update', { id: thresholdId, limitQuantity: 60 }, ownerKey)).status).toBe(200);
    const statuses: number[] = [];
    for (let i = 0; i < 12; i++) statuses.push((await track(licenseId, 'leased-lowered')).status);
    expect(statuses).toEqual([...Array<number>(10).fill(200), 429, 429]);
    expect(await storedSum(licenseId)).toBe(60);
  });

  it('two processes: neither passes the cap; a process that stops using its lease gives it back, and the other can then use all of the quota', async () => {
    const { tenantId, licenseId, event } = await enforcerLicense('leased-two', 1000);
    const a = otherProcess();
    const b = otherProcess();
    try {
      const admittedBy = async (enforcer: QuotaEnforcer, n: number) => {
        let admitted = 0;
        for (let i = 0; i < n; i++) {
          const [o] = await enforcer.reserve(tenantId, 'live', [event()]);
          if (o!.admitted) admitted += 1;
        }
        return admitted;
      };
      expect(await admittedBy(a, 100)).toBe(100);
      const key = await counterKey(licenseId, 'leased-two');
      const aHolds = a.leasedOn(key);
      expect(aHolds).toBeGreaterThan(0n);
      // b fills what Redis has left: a's unused lease is not b's to use while a holds it
      const byB = await admittedBy(b, 1000);
      expect(BigInt(100 + byB) * MICRO + aHolds).toBe(1000n * MICRO);
      expect((await b.reserve(tenantId, 'live', [event()]))[0]!.admitted).toBe(false);
      await idleLeasesBack();
      expect(a.leasedOn(key)).toBe(0n);
      // given back: b takes exactly what a held, and not one more
      const more = await admittedBy(b, Number(aHolds / MICRO) + 1);
      expect(more).toBe(Number(aHolds / MICRO));
      expect(await counterValue(key)).toBe(1000n * MICRO);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('shutting down gives back what leases hold; with leases off every reservation is a script call', async () => {
    const { tenantId, licenseId, event } = await enforcerLicense('leased-close', 10_000);
    const a = otherProcess();
    for (let i = 0; i < 40; i++) expect((await a.reserve(tenantId, 'live', [event()]))[0]!.admitted).toBe(true);
    const key = await counterKey(licenseId, 'leased-close');
    expect(a.leasedOn(key)).toBeGreaterThan(0n);
    await a.close();
    expect(a.leasedOn(key)).toBe(0n);
    expect(await counterValue(key)).toBe(40n * MICRO);

    const off = otherProcess(0);
    const scripts = jest.spyOn(app.services.quotaRedis, 'evalsha');
    try {
      for (let i = 0; i < 20; i++) expect((await off.reserve(tenantId, 'live', [event()]))[0]!.admitted).toBe(true);
      expect(reserveCalls(scripts)).toBe(20);
    } finally {
      scripts.mockRestore();
      await off.close();
    }
    expect(await counterValue(key)).toBe(60n * MICRO);
  });

  it('a cap under 128 events is never leased; one of 128 is', async () => {
    const enforcer = app.services.quota;
    for (const [cap, leased] of [
      [127, false],
      [128, true],
    ] as const) {
      const { tenantId, licenseId, event } = await enforcerLicense(`leased-small-${cap}`, cap);
      const outcomes: ReserveOutcome[] = [];
      // the first goes to Redis (and asks for a lease), the second is taken from the lease if there is one
      for (let i = 0; i < 2; i++) outcomes.push(...(await enforcer.reserve(tenantId, 'live', [event()])));
      expect(outcomes.every((o) => o.admitted)).toBe(true);
      const key = await counterKey(licenseId, `leased-small-${cap}`);
      expect(enforcer.leasedOn(key)).toBe(leased ? 3n * MICRO : 0n); // a lease of 4 (1/32 of 128), one used
      expect(await counterValue(key)).toBe(2n * MICRO + enforcer.leasedOn(key));
      await enforcer.release(reservationsOf(outcomes));
    }
  });
});
