import { randomUUID } from 'node:crypto';
import { useTestApp } from '../helpers/harness';
import { dropQuotaCounters, licenseWithLimit } from '../helpers/quota';
import { rollupDifferences } from '../helpers/rollup-check';
import { aggregateHourlyWindow, recalculateRange } from '../../src/domain/rollups/aggregate';
import { recomputeHourlyRollups, recomputeMarkedHours } from '../../src/domain/rollups/recompute';
import { voidEvents, type VoidDeps } from '../../src/domain/usage/void-events';

const HOUR = 3_600_000;
const DAY = 86_400_000;

// Redis answers slowly on a loaded 2-core box; a timed-out quota check would be decided from PostgreSQL instead.
const app = useTestApp({ QUOTA_REDIS_TIMEOUT_MS: '10000' }, { isolatedDatabase: 'void_events' });
let owner: string;
let ownerKeyId: string;
let tenantId: string;

beforeAll(async () => {
  ({ ownerKey: owner, tenantId, ownerKeyId } = await app.createTenant());
});

const hourFloor = (t: number) => Math.floor(t / HOUR) * HOUR;
const isoDay = (t: number) => new Date(t).toISOString().slice(0, 10);

async function track(events: Record<string, unknown>[], key = owner): Promise<string[]> {
  const res = await app.call('usage.trackEvents', { events }, key);
  if (res.status !== 200 || res.data.rejected.length) throw new Error(JSON.stringify(res.body));
  return res.data.results.map((r: { eventId: string }) => r.eventId);
}

const voidCall = (input: unknown, key = owner) => app.call('usage.voidEvents', input, key);

async function rollupsExact(licenseIds: string[], now = Date.now()) {
  return rollupDifferences(app.services.db.pool, licenseIds, { hoursBefore: new Date(hourFloor(now)), daysEndedBefore: new Date(now) });
}

async function hourlyQuantity(licenseId: string, usageType: string, hour: number): Promise<string | null> {
  const { rows } = await app.services.db.pool.query<{ q: string }>(
    'SELECT trim_scale(quantity)::text AS q FROM usage_rollups_hourly WHERE license_id = $1 AND usage_type = $2 AND hour = $3',
    [licenseId, usageType, new Date(hour)],
  );
  return rows[0]?.q ?? null;
}

async function dailyQuantity(licenseId: string, usageType: string, date: string): Promise<string | null> {
  const { rows } = await app.services.db.pool.query<{ q: string }>(
    'SELECT trim_scale(quantity)::text AS q FROM usage_rollups_daily WHERE license_id = $1 AND usage_type = $2 AND date = $3::date',
    [licenseId, usageType, date],
  );
  return rows[0]?.q ?? null;
}

const marksOf = async (licenseId: string) =>
  (await app.services.db.pool.query<{ hour: Date }>('SELECT hour FROM rollup_dirty_hours WHERE license_id = $1 ORDER BY hour', [licenseId])).rows.map((r) =>
    r.hour.getTime(),
  );

const voidAudits = () => app.prisma.auditLog.count({ where: { tenantId, action: 'usage.voidEvents' } });

describe('usage.voidEvents: rollups', () => {
  it('takes voided events out of hourly and daily rollups through the late-event marks, exactly', async () => {
    const now = Date.now();
    const { id: licenseId } = await app.createLicense(owner);
    const hour = hourFloor(now) - 3 * HOUR;
    const dayTwoAgo = Math.floor(now / DAY) * DAY - 2 * DAY + 5 * HOUR;
    const ids = await track([
      { licenseId, usageType: 'api_call', quantity: '2.5', occurredAt: new Date(hour + 60_000).toISOString(), userId: 'u1' },
      { licenseId, usageType: 'api_call', quantity: '4', occurredAt: new Date(hour + 120_000).toISOString(), userId: 'u2', statusCode: 500 },
      { licenseId, usageType: 'api_call', quantity: '1', occurredAt: new Date(hour + 180_000).toISOString(), userId: 'u1' },
      { licenseId, usageType: 'api_call', quantity: '7', occurredAt: new Date(dayTwoAgo).toISOString(), userId: 'u3' },
      { licenseId, usageType: 'api_call', quantity: '0.25', occurredAt: new Date(dayTwoAgo + 60_000).toISOString(), userId: 'u3' },
    ]);
    await recalculateRange(app.services.rollups, { tenantId, licenseId, startDate: isoDay(dayTwoAgo - DAY), endDate: isoDay(now) }, { retentionDays: 90 });
    expect(await rollupsExact([licenseId])).toEqual({ hourly: [], daily: [] });
    expect(await hourlyQuantity(licenseId, 'api_call', hour)).toBe('7.5');
    expect(await dailyQuantity(licenseId, 'api_call', isoDay(dayTwoAgo))).toBe('7.25');

    const res = await voidCall({ eventIds: [ids[1], ids[3]], reason: 'sent twice by a buggy client' });
    expect(res.status).toBe(200);
    expect(res.data).toMatchObject({
      voided: 2,
      alreadyVoid: 0,
      notFound: 0,
      results: [
        { eventId: ids[1], status: 'voided' },
        { eventId: ids[3], status: 'voided' },
      ],
    });
    // the record of which windows changed, for billing and every reader of hourly rollups
    expect(res.data.windows).toEqual([
      { licenseId, usageType: 'api_call', hour: new Date(hourFloor(dayTwoAgo)).toISOString() },
      { licenseId, usageType: 'api_call', hour: new Date(hour).toISOString() },
    ]);
    expect(res.data.recomputeJobId).toMatch(/^usage\.aggregate\.hourly@/);
    // marked like late events' hours, and until the recompute the rollups are stale
    expect(await marksOf(licenseId)).toEqual([hourFloor(dayTwoAgo), hour]);
    const stale = await rollupsExact([licenseId]);
    expect(stale.hourly.length).toBe(2);
    // two days ago's daily row, and yesterday's too when `hour` (three hours back) fell on yesterday (before 03:00 UTC)
    expect(stale.daily.length).toBe(isoDay(hour) === isoDay(now) ? 1 : 2);

    // the hourly job (what recomputeJobId runs) folds the marks in
    await aggregateHourlyWindow(app.services.rollups, new Date(hourFloor(Date.now()) - HOUR));
    expect(await rollupsExact([licenseId])).toEqual({ hourly: [], daily: [] });
    expect(await marksOf(licenseId)).toEqual([]);
    expect(await hourlyQuantity(licenseId, 'api_call', hour)).toBe('3.5');
    expect(await dailyQuantity(licenseId, 'api_call', isoDay(dayTwoAgo))).toBe('0.25');
    // kept for the record
    const stored = await app.prisma.usageEvent.findFirst({ where: { tenantId, id: ids[1] } });
    expect(stored).toMatchObject({ voidReason: 'sent twice by a buggy client', voidedByKeyId: ownerKeyId });
    expect(stored?.voidedAt).toBeInstanceOf(Date);

    // voiding every event of an hour removes its rollup row
    await voidCall({ eventIds: [ids[0], ids[2]], reason: 'test' });
    await recomputeMarkedHours(app.services.db.pool, new Date(hourFloor(Date.now())));
    expect(await hourlyQuantity(licenseId, 'api_call', hour)).toBeNull();
    expect(await rollupsExact([licenseId])).toEqual({ hourly: [], daily: [] });
  });

  it('ends exact when voids run concurrently with rollups of the same window', async () => {
    const now = Date.now();
    const licenses = [(await app.createLicense(owner)).id, (await app.createLicense(owner)).id];
    const hour = hourFloor(now) - 2 * HOUR;
    const events = Array.from({ length: 300 }, (_, i) => ({
      licenseId: licenses[i % 2],
      usageType: i % 3 === 0 ? 'tokens' : 'api_call',
      quantity: `${(i % 7) + 1}.${i % 10}`,
      occurredAt: new Date(hour + ((i * 11_987) % HOUR)).toISOString(),
      userId: `u${i % 9}`,
      statusCode: i % 5 === 0 ? 503 : 200,
    }));
    const ids = await track(events);
    await recomputeHourlyRollups(app.services.db.pool, { start: new Date(hour), end: new Date(hour + HOUR) });
    const s = app.services;
    const deps: VoidDeps = {
      pool: s.db.pool,
      prisma: s.db.prisma,
      quota: s.quota,
      analytics: s.analyticsCache,
      jobs: s.queues,
      reactions: s.reactions,
      logger: s.logger,
    };
    const caller = { tenantId, environment: 'live' as const, keyId: ownerKeyId, keyPrefix: 'test', ip: null, userAgent: null };
    const remaining = [...ids];
    for (let round = 0; round < 12; round++) {
      const batch = remaining.splice(0, 1 + ((round * 7) % 19));
      // start both at once; which one reads or commits first varies from round to round
      const [voided] = await Promise.all([
        voidEvents(deps, caller, { eventIds: batch, reason: `round ${round}` }),
        recomputeHourlyRollups(s.db.pool, { start: new Date(hour), end: new Date(hour + HOUR) }),
      ]);
      expect(voided.voided).toBe(batch.length);
      // Right after: every hourly row of the window is exact, or its hour is still marked
      // (the recompute read before the void committed), never stale and unmarked.
      const diff = (await rollupsExact(licenses)).hourly as { license_id: string; hour: Date }[];
      for (const d of diff) expect(await marksOf(d.license_id)).toContain(hour);
    }
    await recomputeMarkedHours(s.db.pool, new Date(hourFloor(Date.now())));
    expect(await rollupsExact(licenses)).toEqual({ hourly: [], daily: [] });
    const total = (await s.db.pool.query<{ q: string }>(
      'SELECT trim_scale(sum(quantity))::text AS q FROM usage_rollups_hourly WHERE license_id = ANY($1) AND hour = $2',
      [licenses, new Date(hour)],
    )).rows[0]!.q;
    const expected = (await s.db.pool.query<{ q: string }>(
      'SELECT trim_scale(sum(quantity))::text AS q FROM usage_events WHERE license_id = ANY($1) AND voided_at IS NULL',
      [licenses],
    )).rows[0]!.q;
    expect(total).toBe(expected);
    expect(remaining.length).toBeLessThan(ids.length);
  });
});

describe('usage.voidEvents: usage, quotas, analytics, exports', () => {
  it('gives the quota back: a license at its hard limit can track again after a void, and a rebuilt counter leaves voided events out', async () => {
    const { licenseId } = await licenseWithLimit(app, owner, 'api_call', 3);
    const send = (key: string) => app.call('usage.trackEvent', { licenseId, usageType: 'api_call', idempotencyKey: key, userId: key, platform: key }, owner);
    const first = [await send('k1'), await send('k2'), await send('k3')];
    expect(first.map((r) => r.status)).toEqual([200, 200, 200]);
    expect((await send('k4')).status).toBe(429);

    const res = await voidCall({ idempotencyKeys: ['k2'], reason: 'wrong license' });
    expect(res.data.results).toEqual([{ eventId: first[1]!.data.eventId, idempotencyKey: 'k2', status: 'voided' }]);

    // the retry of the voided original is still a duplicate of it, and counts nothing
    const retry = await send('k2');
    expect(retry.status).toBe(200);
    expect(retry.data).toEqual({ eventId: first[1]!.data.eventId, duplicate: true });
    const current = await app.call('usage.current', { licenseId, usageType: 'api_call' }, owner, { method: 'GET' });
    expect(current.data.usage.find((u: { period: string }) => u.period === 'daily')).toMatchObject({ used: '2', limit: '3', remaining: '1' });

    expect((await send('k4')).status).toBe(200);
    expect((await send('k5')).status).toBe(429);
    // at the limit again, a retry of the voided original is still a duplicate, not a refusal
    expect((await send('k2')).data).toEqual({ eventId: first[1]!.data.eventId, duplicate: true });

    // counters lost (a Redis restart): rebuilt from PostgreSQL, where voided events do not count
    await voidCall({ idempotencyKeys: ['k4'], reason: 'wrong license' });
    await dropQuotaCounters(app);
    expect((await send('k6')).status).toBe(200);
    expect((await send('k7')).status).toBe(429);
    expect(await app.prisma.usageEvent.count({ where: { licenseId, voidedAt: null } })).toBe(3);
  });

  it('checks thresholds again at once: a provisional overage follows the usage left after the void', async () => {
    const { licenseId } = await licenseWithLimit(app, owner, 'gb', 2, { allowOverage: true, overageRateCents: 100, gracePercentage: 0 });
    const ids = await track([
      { licenseId, usageType: 'gb', quantity: '1.5' },
      { licenseId, usageType: 'gb', quantity: '2' },
      { licenseId, usageType: 'gb', quantity: '1.25' },
    ]);
    const overage = () => app.prisma.usageOverage.findFirst({ where: { tenantId, licenseId } });
    // ingestion records the overage when the cap is crossed (3.5 used); the scheduled check would grow it later
    expect((await overage())?.quantity.toFixed()).toBe('1.5');
    await voidCall({ eventIds: [ids[1]], reason: 'double-counted upload' });
    expect(await overage()).toMatchObject({ feeCents: 75n, final: false });
    expect((await overage())?.quantity.toFixed()).toBe('0.75');
    // back under the cap (1.5 used of 2): the provisional overage falls to nothing, so it can
    // never be finalized and billed at its earlier amount
    await voidCall({ eventIds: [ids[2]], reason: 'duplicate upload' });
    expect(await overage()).toMatchObject({ feeCents: 0n, final: false });
    expect((await overage())?.quantity.toFixed()).toBe('0');
  });

  it('leaves voided events out of analytics (totals, unique users, breakdowns) and exports unless includeVoided', async () => {
    const now = Date.now();
    const { id: licenseId } = await app.createLicense(owner);
    const at = new Date(hourFloor(now) - HOUR + 60_000).toISOString();
    const ids = await track([
      { licenseId, usageType: 'api_call', quantity: '2', occurredAt: at, userId: 'alice', platform: 'ios' },
      { licenseId, usageType: 'api_call', quantity: '5', occurredAt: at, userId: 'bob', platform: 'android' },
      { licenseId, usageType: 'api_call', quantity: '1', occurredAt: at, userId: 'alice', platform: 'ios' },
    ]);
    const range = { licenseId, startDate: isoDay(now - DAY), endDate: isoDay(now + DAY), timezone: 'UTC' };
    await recomputeHourlyRollups(app.services.db.pool, { start: new Date(hourFloor(now) - HOUR), end: new Date(hourFloor(now)) });
    const usage = () => app.call('analytics.usage', { ...range, granularity: 'daily' }, owner, { method: 'GET' });
    const breakdown = () => app.call('analytics.breakdown', { ...range, by: 'platform' }, owner, { method: 'GET' });
    // analytics answers are cached (USAGE_CACHE_TTL_SECONDS) from the second time they are asked: the void drops them
    for (let i = 0; i < 2; i++) {
      expect((await usage()).data.overview).toMatchObject({ totalQuantity: '8', eventCount: 3, uniqueUsers: 2 });
      expect((await breakdown()).data.items.map((i: { key: string }) => i.key)).toEqual(['android', 'ios']);
    }

    expect((await voidCall({ eventIds: [ids[1]], reason: 'test traffic' })).data.voided).toBe(1);
    // before any recompute: the marked hour is read raw, without the voided event
    expect((await usage()).data.overview).toMatchObject({ totalQuantity: '3', eventCount: 2, uniqueUsers: 1 });
    const items = (await breakdown()).data.items;
    expect(items).toEqual([expect.objectContaining({ key: 'ios', quantity: '3', events: 2 })]);

    const q = new URLSearchParams({ licenseId, startDate: range.startDate, endDate: range.endDate, timezone: 'UTC', format: 'json' });
    const exported = async (extra = '') => {
      const res = await fetch(`${app.baseUrl}/api/export/events?${q}${extra}`, { headers: { authorization: `Bearer ${owner}` } });
      expect(res.status).toBe(200);
      return (await res.json()) as Record<string, unknown>[];
    };
    const plain = await exported();
    expect(plain.map((r) => r.id).sort()).toEqual([ids[0], ids[2]].sort());
    expect(plain[0]).not.toHaveProperty('voided_at');
    const all = await exported('&includeVoided=true');
    expect(all).toHaveLength(3);
    expect(all.find((r) => r.id === ids[1])).toMatchObject({ void_reason: 'test traffic', voided_by_key_id: ownerKeyId, voided_at: expect.any(String) });
    expect(all.find((r) => r.id === ids[0])).toMatchObject({ void_reason: null, voided_at: null });
    expect(await exported('&includeVoided=false')).toHaveLength(2);
    const bad = await fetch(`${app.baseUrl}/api/export/events?${q}&includeVoided=yes`, { headers: { authorization: `Bearer ${owner}` } });
    expect(bad.status).toBe(400);
    const link = await app.call('analytics.export', { ...range, includeVoided: true }, owner, { method: 'GET' });
    expect(link.data.url).toContain('includeVoided=true');

    // a subject-access export still shows the voided event (Tally holds it), marked as voided
    const bob = await app.call('privacy.exportUser', { userId: 'bob', licenseId }, owner);
    expect(bob.data.licenses[0].events).toEqual([expect.objectContaining({ id: ids[1], voidReason: 'test traffic', voidedAt: expect.any(String) })]);
  });
});

describe('usage.voidEvents: answers, isolation, limits, audit', () => {
  it('is idempotent: voiding again answers already_void and changes nothing', async () => {
    const { id: licenseId } = await app.createLicense(owner);
    const [id] = await track([{ licenseId, usageType: 'api_call', idempotencyKey: `idem-${randomUUID()}` }]);
    const first = await voidCall({ eventIds: [id], reason: 'first' });
    expect(first.data.results).toEqual([{ eventId: id, status: 'voided' }]);
    const before = await app.prisma.usageEvent.findFirst({ where: { tenantId, id } });
    const again = await voidCall({ eventIds: [id, id], reason: 'second' });
    expect(again.status).toBe(200);
    expect(again.data).toMatchObject({ voided: 0, alreadyVoid: 2, notFound: 0, windows: [], recomputeJobId: null });
    const after = await app.prisma.usageEvent.findFirst({ where: { tenantId, id } });
    expect(after).toEqual(before);
    expect(after?.voidReason).toBe('first');
  });

  it('answers not_found for unknown ids and keys, another tenant\'s events and another environment\'s', async () => {
    const other = await app.createTenant();
    const { id: theirLicense } = await app.createLicense(other.ownerKey);
    const [theirs] = await track([{ licenseId: theirLicense, usageType: 'api_call', idempotencyKey: 'shared-key' }], other.ownerKey);
    const { id: mine } = await app.createLicense(owner);
    const [ours] = await track([{ licenseId: mine, usageType: 'api_call' }]);
    // a test-environment license of the same tenant, with an event tracked while it was live
    const { id: testLicense } = await app.createLicense(owner);
    const [testEvent] = await track([{ licenseId: testLicense, usageType: 'api_call', idempotencyKey: 'test-env-key' }]);
    await app.prisma.license.update({ where: { id: testLicense }, data: { environment: 'test' } });

    const unknown = randomUUID();
    const res = await voidCall({ eventIds: [theirs, unknown, testEvent, ours], idempotencyKeys: ['shared-key', 'nope', 'test-env-key'], reason: 'x' });
    expect(res.status).toBe(200);
    expect(res.data.results).toEqual([
      { eventId: null, status: 'not_found' },
      { eventId: null, status: 'not_found' },
      { eventId: null, status: 'not_found' },
      { eventId: ours, status: 'voided' },
      { eventId: null, idempotencyKey: 'shared-key', status: 'not_found' },
      { eventId: null, idempotencyKey: 'nope', status: 'not_found' },
      { eventId: null, idempotencyKey: 'test-env-key', status: 'not_found' },
    ]);
    expect(res.data).toMatchObject({ voided: 1, notFound: 6 });
    expect(await app.prisma.usageEvent.findFirst({ where: { id: theirs } })).toMatchObject({ voidedAt: null });
    expect(await app.prisma.usageEvent.findFirst({ where: { id: testEvent } })).toMatchObject({ voidedAt: null });
    // the other tenant's owner naming this tenant still reaches only its own events
    const crossHeader = await app.call('usage.voidEvents', { eventIds: [ours], reason: 'x' }, other.ownerKey, { headers: { 'x-tally-tenant': tenantId } });
    expect(crossHeader.data.results).toEqual([{ eventId: null, status: 'not_found' }]);

    // a test key reaches the test license's events, and not the live ones
    const testOwner = await app.call<{ key: string }>('apiKeys.create', { name: 'test owner', role: 'owner', environment: 'test' }, owner);
    const [liveEvent] = await track([{ licenseId: mine, usageType: 'api_call' }]);
    const byTestKey = await voidCall({ eventIds: [testEvent, liveEvent], reason: 'test data' }, testOwner.data.key);
    expect(byTestKey.data.results).toEqual([
      { eventId: testEvent, status: 'voided' },
      { eventId: null, status: 'not_found' },
    ]);
    // an admin naming the tenant may void too
    const byAdmin = await app.call('usage.voidEvents', { eventIds: [liveEvent], reason: 'operator' }, app.adminKey, { headers: { 'x-tally-tenant': tenantId } });
    expect(byAdmin.status).toBe(200);
  });

  it('is for owners: member, ingest and read keys are refused with 403', async () => {
    for (const role of ['member', 'ingest', 'read'] as const) {
      const { key } = await app.createKey(owner, role);
      expect((await voidCall({ eventIds: [randomUUID()], reason: 'x' }, key)).status).toBe(403);
    }
  });

  it('takes 1,000 ids and keys per call, refuses 1,001 with a 400, and writes nothing on bad input', async () => {
    const { id: licenseId } = await app.createLicense(owner);
    const [real] = await track([{ licenseId, usageType: 'api_call' }]);
    const audits = await voidAudits();
    const uuids = (n: number) => Array.from({ length: n }, () => randomUUID());
    const keys = (n: number) => Array.from({ length: n }, (_, i) => `key-${i}`);
    const refused = async (input: unknown, field: string) => {
      const res = await voidCall(input);
      expect(res.status).toBe(400);
      expect(res.body.error?.data.issues?.[0]?.path[0]).toBe(field);
    };
    await refused({ eventIds: [real, ...uuids(1_000)], reason: 'x' }, 'eventIds');
    await refused({ eventIds: [real, ...uuids(499)], idempotencyKeys: keys(501), reason: 'x' }, 'eventIds');
    await refused({ idempotencyKeys: keys(1_001), reason: 'x' }, 'idempotencyKeys');
    await refused({ eventIds: [], reason: 'x' }, 'eventIds');
    await refused({ reason: 'x' }, 'eventIds');
    await refused({ eventIds: [real] }, 'reason');
    await refused({ eventIds: [real], reason: '' }, 'reason');
    await refused({ eventIds: [real], reason: '   ' }, 'reason');
    await refused({ eventIds: [real], reason: 'r'.repeat(501) }, 'reason');
    await refused({ eventIds: [real], reason: 'bad\u0000reason' }, 'reason');
    await refused({ eventIds: [real, 'not-a-uuid'], reason: 'x' }, 'eventIds');
    await refused({ eventIds: [real], idempotencyKeys: [''], reason: 'x' }, 'idempotencyKeys');
    await refused({ eventIds: [real], idempotencyKeys: ['k'.repeat(256)], reason: 'x' }, 'idempotencyKeys');
    const extra = await voidCall({ eventIds: [real], reason: 'x', force: true });
    expect(extra.status).toBe(400);
    expect(await app.prisma.usageEvent.findFirst({ where: { tenantId, id: real } })).toMatchObject({ voidedAt: null });
    expect(await voidAudits()).toBe(audits);

    const max = await voidCall({ eventIds: [real, ...uuids(499)], idempotencyKeys: keys(500), reason: 'r'.repeat(500) });
    expect(max.status).toBe(200);
    expect(max.data).toMatchObject({ voided: 1, notFound: 999 });
    expect(max.data.results).toHaveLength(1_000);
    expect((await voidCall({ eventIds: uuids(1_000), reason: 'x' })).status).toBe(200);
    expect((await voidCall({ idempotencyKeys: keys(1_000), reason: 'x' })).status).toBe(200);
  });

  it('writes one audit row per call with the reason, the counts and the voided ids', async () => {
    const { id: licenseId } = await app.createLicense(owner);
    const ids = await track([
      { licenseId, usageType: 'api_call' },
      { licenseId, usageType: 'api_call' },
    ]);
    const before = await voidAudits();
    await voidCall({ eventIds: [...ids, randomUUID()], reason: 'duplicated by a retry storm' });
    expect(await voidAudits()).toBe(before + 1);
    const row = await app.prisma.auditLog.findFirst({ where: { tenantId, action: 'usage.voidEvents' }, orderBy: { createdAt: 'desc' } });
    expect(row).toMatchObject({ actorKeyId: ownerKeyId, outcome: 'success', targetType: 'usage_event' });
    expect(row?.metadata).toMatchObject({ reason: 'duplicated by a retry storm', requested: 3, voided: 2, alreadyVoid: 0, eventIdsTruncated: false });
    expect(((row?.metadata as { eventIds: string[] }).eventIds).sort()).toEqual([...ids].sort());
    // every event the call voided carries the audit row's instant and key
    const voided = await app.prisma.usageEvent.findMany({ where: { tenantId, voidedAt: row!.createdAt, voidedByKeyId: ownerKeyId } });
    expect(voided.map((e) => e.id).sort()).toEqual([...ids].sort());
  });
});
