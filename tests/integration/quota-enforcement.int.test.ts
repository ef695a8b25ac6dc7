import { randomUUID } from 'node:crypto';
import net from 'node:net';
import { useTestApp } from '../helpers/harness';
import { QuotaEnforcer } from '../../src/domain/quotas/enforcer';
import { createRedis } from '../../src/lib/redis';
import { dropQuotaCounters, licenseWithLimit } from '../helpers/quota';

  // Redis answers slowly on a loaded 2-core CI box; a timed-out check would be decided from
  // PostgreSQL instead, which is not what these tests are about (plan-tiers covers it).
const app = useTestApp({ QUOTA_REDIS_TIMEOUT_MS: '10000' });
let ownerKey: string;

beforeAll(async () => {
  ({ ownerKey } = await app.createTenant());
});

const track = (licenseId: string, usageType: string, extra: Record<string, unknown> = {}) =>
  app.call('usage.trackEvent', { licenseId, usageType, ...extra }, ownerKey);
const stored = (licenseId: string) => app.prisma.usageEvent.count({ where: { licenseId } });

/** A license with a daily hard limit, its tenant, and events of it to hand to the enforcer directly. */
async function enforcerLicense(usageType: string, limit: number) {
  const { licenseId } = await licenseWithLimit(app, ownerKey, usageType, limit);
  const tenantId = (await app.prisma.license.findUniqueOrThrow({ where: { id: licenseId } })).tenantId;
  const event = (quantity = '1') => ({ licenseId, usageType, quantity, occurredAt: new Date() });
  return { licenseId, tenantId, event };
}

describe('hard limits at ingestion', () => {
  it('accepts ten events against a limit of 10 and refuses the 11th with 429 and rate-limit headers', async () => {
    const { licenseId } = await licenseWithLimit(app, ownerKey, 'api_call', 10);
    for (let i = 1; i <= 10; i++) {
      const res = await track(licenseId, 'api_call');
      expect(res.status).toBe(200);
      expect(res.headers.get('ratelimit-limit')).toBe('10');
      expect(res.headers.get('ratelimit-remaining')).toBe(String(10 - i));
      expect(res.headers.get('x-ratelimit-remaining')).toBe(String(10 - i));
    }
    const sentAt = Date.now() / 1000;
    const refused = await track(licenseId, 'api_call');
    const answeredAt = Date.now() / 1000;
    expect(refused.status).toBe(429);
    expect(refused.body.error?.data.code).toBe('TOO_MANY_REQUESTS');
    const h = refused.headers;
    expect(h.get('ratelimit-limit')).toBe('10');
    expect(h.get('ratelimit-remaining')).toBe('0');
    expect(h.get('x-ratelimit-limit')).toBe('10');
    expect(h.get('x-ratelimit-remaining')).toBe('0');
    const retryAfter = Number(h.get('retry-after'));
    expect(retryAfter).toBeGreaterThan(0);
    expect(retryAfter).toBeLessThanOrEqual(25 * 3600);
    expect(Number(h.get('ratelimit-reset'))).toBe(retryAfter);
    const resetAt = Number(h.get('x-ratelimit-reset'));
    // the reset instant is "now" at the server plus Retry-After (both rounded up to whole seconds),
    // and the server's "now" lies between sending and answering, however long that took
    expect(resetAt - retryAfter).toBeGreaterThanOrEqual(Math.floor(sentAt) - 1);
    expect(resetAt - retryAfter).toBeLessThanOrEqual(Math.ceil(answeredAt) + 1);
    const details = (refused.body.error?.data as any).details;
    expect(details).toMatchObject({ usageType: 'api_call', periodType: 'daily', limit: '10', used: '10', remaining: '0', retryAfterSeconds: retryAfter });
    expect(await stored(licenseId)).toBe(10);
    // other usage types of the license are not limited by this threshold
    expect((await track(licenseId, 'other')).status).toBe(200);
  });

  it('admits exactly up to the limit in decimals and refuses a millionth past it', async () => {
    const { licenseId } = await licenseWithLimit(app, ownerKey, 'gb', '2.5');
    expect((await track(licenseId, 'gb', { quantity: '2.499999' })).status).toBe(200);
    expect((await track(licenseId, 'gb', { quantity: '0.000002' })).status).toBe(429);
    expect((await track(licenseId, 'gb', { quantity: '0.000001' })).status).toBe(200);
    expect((await track(licenseId, 'gb', { quantity: '0.000001' })).status).toBe(429);
    // a zero quantity never passes a limit
    expect((await track(licenseId, 'gb', { quantity: 0 })).status).toBe(200);
  });

  it('lets usage reach limit × (1 + grace%) and not pass it', async () => {
    const { licenseId } = await licenseWithLimit(app, ownerKey, 'graced', 10, { gracePercentage: 20 });
    const results = [];
    for (let i = 0; i < 13; i++) results.push((await track(licenseId, 'graced')).status);
    expect(results).toEqual([...Array(12).fill(200), 429]);
  });

  it('admits exactly 100 of 200 concurrent calls against a limit of 100', async () => {
    const { licenseId } = await licenseWithLimit(app, ownerKey, 'burst', 100);
    const results = await Promise.all(Array.from({ length: 200 }, () => track(licenseId, 'burst')));
    expect(results.filter((r) => r.status === 200)).toHaveLength(100);
    expect(results.filter((r) => r.status === 429)).toHaveLength(100);
    expect(await stored(licenseId)).toBe(100);
  });

  it('rebuilds counters from PostgreSQL when Redis loses them mid-stream, never admitting past the limit', async () => {
    const { licenseId } = await licenseWithLimit(app, ownerKey, 'flush', 50);
    const first = await Promise.all(Array.from({ length: 30 }, () => track(licenseId, 'flush')));
    expect(first.every((r) => r.status === 200)).toBe(true);
    expect(await dropQuotaCounters(app)).toBeGreaterThan(0);
    // counters vanish again while these calls are in flight
    let answered = 0;
    const second = Promise.all(
      Array.from({ length: 60 }, () =>
        track(licenseId, 'flush').then(async (r) => {
          if ([3, 8, 15, 25].includes(++answered)) await dropQuotaCounters(app);
          return r;
        }),
      ),
    );
    const results = await second;
    const accepted = results.filter((r) => r.status === 200).length;
    expect(results.every((r) => r.status === 200 || r.status === 429)).toBe(true);
    expect(await stored(licenseId)).toBe(30 + accepted);
    expect(30 + accepted).toBeLessThanOrEqual(50);
    // once settled, the rebuilt counter admits exactly what is left
    await dropQuotaCounters(app);
    const rest = await Promise.all(Array.from({ length: 30 }, () => track(licenseId, 'flush')));
    expect(await stored(licenseId)).toBe(50);
    expect(rest.filter((r) => r.status === 200)).toHaveLength(50 - 30 - accepted);
  });

  it('gives back what duplicates and refused writes reserved', async () => {
    const { licenseId } = await licenseWithLimit(app, ownerKey, 'dup', 3);
    const idempotencyKey = randomUUID();
    const event = { idempotencyKey, occurredAt: new Date().toISOString() };
    expect((await track(licenseId, 'dup', event)).data.duplicate).toBe(false);
    for (let i = 0; i < 5; i++) expect((await track(licenseId, 'dup', event)).data.duplicate).toBe(true);
    // the license is suspended: its events are refused and reserve nothing
    await app.call('licenses.setStatus', { id: licenseId, status: 'SUSPENDED' }, ownerKey);
    for (let i = 0; i < 4; i++) expect((await track(licenseId, 'dup')).status).toBe(422);
    await app.call('licenses.setStatus', { id: licenseId, status: 'ACTIVE' }, ownerKey);
    expect((await track(licenseId, 'dup')).status).toBe(200);
    expect((await track(licenseId, 'dup')).status).toBe(200);
    expect((await track(licenseId, 'dup')).status).toBe(429);
    // a retry of a stored event stays a duplicate even when the quota is used up
    const again = await track(licenseId, 'dup', event);
    expect(again.status).toBe(200);
    expect(again.data.duplicate).toBe(true);
    expect(await stored(licenseId)).toBe(3);
  });

  it('judges each event of a batch: the ones past the limit are QUOTA_EXCEEDED, the others stored', async () => {
    const { licenseId } = await licenseWithLimit(app, ownerKey, 'batch', 10);
    const events = Array.from({ length: 15 }, (_, i) => ({ licenseId, usageType: i % 5 === 4 ? 'unlimited_type' : 'batch' }));
    const res = await app.call('usage.trackEvents', { events }, ownerKey);
    expect(res.status).toBe(200);
    expect(res.data.accepted).toBe(13); // 10 limited (indexes 0-3, 5-8, 10, 11) + 3 unlimited (4, 9, 14)
    expect(res.data.rejected).toEqual([12, 13].map((index) => ({ index, code: 'QUOTA_EXCEEDED', message: expect.stringContaining('quota exceeded') })));
    expect(res.headers.get('ratelimit-remaining')).toBe('0');
    const more = await app.call('usage.trackEvents', { events: [{ licenseId, usageType: 'batch' }, { licenseId, usageType: 'x' }] }, ownerKey);
    expect(more.data).toMatchObject({ accepted: 1, rejected: [{ index: 0, code: 'QUOTA_EXCEEDED' }] });
    expect(await app.prisma.usageEvent.count({ where: { licenseId, usageType: 'batch' } })).toBe(10);
  });

  it('answers usage.check without recording anything', async () => {
    const { licenseId } = await licenseWithLimit(app, ownerKey, 'checked', 5);
    const check = (quantity: number) => app.call('usage.check', { licenseId, usageType: 'checked', quantity }, ownerKey, { method: 'GET' });
    expect((await check(5)).data).toMatchObject({ allowed: true, limits: [{ periodType: 'daily', limit: '5', used: '0', remaining: '5', hard: true }] });
    expect((await check(6)).data.allowed).toBe(false);
    await track(licenseId, 'checked', { quantity: 4 });
    await dropQuotaCounters(app); // answered from PostgreSQL as well
    expect((await check(1)).data).toMatchObject({ allowed: true, limits: [{ used: '4', remaining: '1' }] });
    expect((await check(2)).data.allowed).toBe(false);
    expect(await stored(licenseId)).toBe(1);
    expect((await app.call('usage.check', { licenseId: randomUUID(), usageType: 'checked' }, ownerKey, { method: 'GET' })).status).toBe(404);
  });

  it('refuses a suspended license before any reservation: at its limit it is LICENSE_INACTIVE (not 429), and its counters are never touched', async () => {
    const { licenseId } = await licenseWithLimit(app, ownerKey, 'paused', 2);
    expect((await track(licenseId, 'paused')).status).toBe(200);
    expect((await track(licenseId, 'paused')).status).toBe(200);
    expect((await track(licenseId, 'paused')).status).toBe(429); // at the limit
    const counters = async () => app.services.redis.keys(`${app.prefix}quota:{${licenseId}}:*`);
    const before = await counters();
    expect(before.length).toBeGreaterThan(0);
    expect(await app.services.redis.get(before[0]!)).toBe('2000000');

    expect((await app.call('licenses.setStatus', { id: licenseId, status: 'SUSPENDED' }, ownerKey)).status).toBe(200);
    const single = await track(licenseId, 'paused');
    expect(single.status).toBe(422);
    expect(single.body.error?.message).toMatch(/SUSPENDED/);
    expect(await app.services.redis.get(before[0]!)).toBe('2000000');

    // with the counters gone, a reservation would rebuild them: none is made
    await app.services.redis.del(...before);
    const again = await track(licenseId, 'paused');
    expect(again.status).toBe(422);
    const batch = await app.call('usage.trackEvents', { events: [{ licenseId, usageType: 'paused' }, { licenseId, usageType: 'paused', quantity: 5 }] }, ownerKey);
    expect(batch.status).toBe(200);
    expect(batch.data.rejected.map((r: { code: string }) => r.code)).toEqual(['LICENSE_INACTIVE', 'LICENSE_INACTIVE']);
    expect(await counters()).toEqual([]);
    expect(await stored(licenseId)).toBe(2);

    // active again: the counter is rebuilt from PostgreSQL and the limit still holds
    expect((await app.call('licenses.setStatus', { id: licenseId, status: 'ACTIVE' }, ownerKey)).status).toBe(200);
    expect((await track(licenseId, 'paused')).status).toBe(429);
    expect(await stored(licenseId)).toBe(2);
  });

  it('judges a batch (runs of equal quantities, zeros among them) exactly as one reservation after another, at and past the limit', async () => {
    const { licenseId, tenantId, event } = await enforcerLicense('runs', 50);
    // The script's judgement, every event in it: no leases (quota-leases.int.test.ts covers those;
    // a cap of 50 is leased in blocks of the millionths some of these events ask for).
    const enforcer = new QuotaEnforcer(
      { redis: app.services.quotaRedis, pool: app.services.db.pool, logger: app.services.logger },
      { keyPrefix: app.prefix, failMode: 'closed', limitsCacheMs: 60_000, redisTimeoutMs: 10_000, leaseMaxEvents: 0 },
    );
    const [first] = await enforcer.reserve(tenantId, 'live', [event('0')]);
    enforcer.settle([first!.admitted ? first!.reservation : null]);
    // Runs of equal quantities, zeros among them, crossing the cap of 50 in the middle of a run;
    // the same batch again once full (only zeros fit), in millionths to compare exactly.
    const pick = [0, 0.5, 1, 1, 1, 2.25, 3, 0.000001];
    let seed = 7;
    const random = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
    const quantities: string[] = [];
    while (quantities.length < 120) {
      const q = String(pick[Math.floor(random() * pick.length)]);
      const runLength = 1 + Math.floor(random() * 6);
      for (let i = 0; i < runLength; i++) quantities.push(q);
    }
    const micro = (q: string) => BigInt(Math.round(Number(q) * 1e6));
    let used = 0n;
    const cap = 50_000_000n;
    const expected = quantities.map((q) => {
      const fits = used + micro(q) <= cap;
      if (fits) used += micro(q);
      return { admitted: fits, before: fits ? used - micro(q) : used };
    });
    const outcomes = await enforcer.reserve(tenantId, 'live', quantities.map(event));
    expect(outcomes.map((o) => ({ admitted: o.admitted, before: o.admitted ? o.reservation!.counters[0]!.before : BigInt(Math.round(Number(o.state.used) * 1e6)) }))).toEqual(expected);
    expect(expected.some((e) => !e.admitted)).toBe(true); // the cap was reached inside the batch
    const [key] = await app.services.redis.keys(`${app.prefix}quota:{${licenseId}}:runs:*`);
    expect(BigInt((await app.services.redis.get(key!))!)).toBe(used);
    // Full: a second pass admits only what adds nothing.
    const again = await enforcer.reserve(tenantId, 'live', quantities.map(event));
    expect(again.map((o) => o.admitted)).toEqual(quantities.map((q) => micro(q) === 0n || used + micro(q) <= cap));
    await enforcer.release([...again].map((o) => (o.admitted ? o.reservation : null)));
    // Past the cap (as after a lowered limit): not even an event of quantity 0 fits, one by one or in a run.
    await app.services.redis.set(key!, String(cap + 1n));
    const over = await enforcer.reserve(tenantId, 'live', ['0', '0', '0', '0.000001'].map(event));
    expect(over.map((o) => o.admitted)).toEqual([false, false, false, false]);
    await app.services.redis.set(key!, String(used));
    enforcer.settle(outcomes.map((o) => (o.admitted ? o.reservation : null)));
  });

  it('sends a lone reservation at once and judges those asked for while it is on its way in one script call, in the order asked, exactly to the limit', async () => {
    const { licenseId, tenantId, event } = await enforcerLicense('tick', 30);
    const enforcer = app.services.quota;
    // the counter exists (built from PostgreSQL) before the calls below
    const [first] = await enforcer.reserve(tenantId, 'live', [event('1')]);
    expect(first!.admitted).toBe(true);
    enforcer.settle([first!.admitted ? first!.reservation : null]);

    const scripts = jest.spyOn(app.services.quotaRedis, 'evalsha');
    try {
      // 1 + 40 × 0.75 = 31 > 30: the first 38 calls fit (1 + 28.5 = 29.5), the 39th would pass the limit (30.25);
      // a call of 0.5 after it still fits exactly (30), and one of 0.000001 after that does not
      const quantities = [...Array<string>(40).fill('0.75'), '0.5', '0.000001'];
      const outcomes = await Promise.all(quantities.map((q) => enforcer.reserve(tenantId, 'live', [event(q)]).then(([o]) => o!)));
      // the first found nothing on its way and went alone; the other 41 gathered behind it
      expect(scripts).toHaveBeenCalledTimes(2);
      // ARGV after the keys: the number of lease returns (none), then the number of events
      expect(scripts.mock.calls.map((call) => [Number(call[2 + (call[1] as number)]), Number(call[3 + (call[1] as number)])])).toEqual([
        [0, 1],
        [0, 41],
      ]);
      expect(outcomes.map((o) => o.admitted)).toEqual([...Array<boolean>(38).fill(true), false, false, true, false]);
      await enforcer.release(outcomes.map((o) => (o.admitted ? o.reservation : null)));
    } finally {
      scripts.mockRestore();
    }
    const [key] = await app.services.redis.keys(`${app.prefix}quota:{${licenseId}}:tick:*`);
    expect(await app.services.redis.get(key!)).toBe('1000000'); // all given back: only the first call's 1 remains
  });
});

/** A TCP relay to the test Redis that can stop passing bytes both ways: a Redis that hangs, for one client only. */
async function stallableRedis() {
  let stalled = false;
  const held: (() => void)[] = [];
  const sockets = new Set<net.Socket>();
  const relay = (from: net.Socket, to: net.Socket) =>
    from.on('data', (chunk) => {
      if (stalled) held.push(() => to.write(chunk));
      else to.write(chunk);
    });
  const server = net.createServer((client) => {
    const upstream = net.connect(6379, '127.0.0.1');
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => (client.destroy(), upstream.destroy()));
    }
    relay(client, upstream);
    relay(upstream, client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `redis://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    stall: () => (stalled = true),
    resume: () => {
      stalled = false;
      for (const send of held.splice(0)) send();
    },
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

describe('with a Redis that hangs', () => {
  it('decides reservations waiting behind a hung script call without Redis once they have waited the timeout, not after it', async () => {
    const timeoutMs = 400;
    const relay = await stallableRedis();
    const redis = createRedis(relay.url);
    const enforcer = new QuotaEnforcer(
      { redis, pool: app.services.db.pool, logger: app.services.logger },
      { keyPrefix: app.prefix, failMode: 'closed', limitsCacheMs: 60_000, redisTimeoutMs: timeoutMs },
    );
    try {
      const { tenantId, event } = await enforcerLicense('hung', 100);
      await redis.ping();
      const [first] = await enforcer.reserve(tenantId, 'live', [event()]); // counter built, limits cached
      enforcer.settle([first!.admitted ? first!.reservation : null]);

      relay.stall();
      const started = performance.now();
      const ahead = enforcer.reserve(tenantId, 'live', [event()]); // goes at once, hangs, times out
      const behind = await Promise.all(
        Array.from({ length: 3 }, () => enforcer.reserve(tenantId, 'live', [event()]).then(([o]) => ({ o: o!, ms: performance.now() - started }))),
      );
      const [aheadOutcome] = await ahead;
      // Each was decided from PostgreSQL (nothing stored yet: all fit), after about one timeout,
      // not one for the call ahead and another for their own.
      expect([aheadOutcome!, ...behind.map((b) => b.o)].every((o) => o.admitted && o.reservation?.viaRedis === false)).toBe(true);
      for (const b of behind) expect(b.ms).toBeLessThan(1.6 * timeoutMs);
      enforcer.settle([aheadOutcome!, ...behind.map((b) => b.o)].map((o) => (o.admitted ? o.reservation : null)));
    } finally {
      relay.resume();
      redis.disconnect();
      await relay.close();
    }
  });
});

