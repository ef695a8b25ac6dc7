import { Tally, type TallyErrorReport, type TrackEvent } from '../../sdk/src/index';
import { type WorkerFetch, workerFetch } from '../../sdk/src/node';
import { SDK_VERSION } from '../../sdk/src/version';
import { useTestApp } from '../helpers/harness';
import { licenseWithLimit } from '../helpers/quota';
import { TcpProxy } from '../helpers/tcp-proxy';

/**
 * The SDK against a real Tally (PostgreSQL, Redis), reached through a TCP proxy that the tests stop
 * and start to take Tally away, or that loses answers Tally has committed. Every test runs twice:
 * with the runtime's fetch (the default) and with `workerFetch` (`@tally/sdk/node`: the requests
 * made on a worker thread), which must behave alike in all of it.
 */
const app = useTestApp();

let proxy: TcpProxy;
const clients: Tally[] = [];
/** The transport of the tests running now: undefined for the default fetch. */
let transport: WorkerFetch | undefined;
beforeEach(async () => {
  proxy = await TcpProxy.start(app.baseUrl);
});
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.shutdown({ timeoutMs: 1000 })));
  await proxy.stop();
});

function client(ownerKey: string, options: Partial<ConstructorParameters<typeof Tally>[0]> = {}): { tally: Tally; reports: TallyErrorReport[] } {
  const reports: TallyErrorReport[] = [];
  const tally = new Tally({
    apiKey: ownerKey,
    baseUrl: proxy.url,
    retry: { initialDelayMs: 50, maxDelayMs: 1000 },
    onError: (r) => reports.push(r),
    ...(transport ? { fetch: transport } : {}),
    ...options,
  });
  clients.push(tally);
  return { tally, reports };
}

async function stored(licenseId: string): Promise<{ events: number; keys: number; quantity: string }> {
  const rows = await app.services.db.pool.query<{ events: string; keys: string; quantity: string }>(
    `SELECT count(*)::text AS events, count(DISTINCT idempotency_key)::text AS keys, coalesce(trim_scale(sum(quantity)), 0)::text AS quantity
       FROM usage_events WHERE license_id = $1`,
    [licenseId],
  );
  const r = rows.rows[0]!;
  return { events: Number(r.events), keys: Number(r.keys), quantity: r.quantity };
}

const event = (licenseId: string, i: number, extra: Partial<TrackEvent> = {}): TrackEvent => ({ licenseId, usageType: 'api_call', quantity: 1, userId: `u-${i % 7}`, ...extra });

describe.each([
  ['the runtime\'s fetch', false],
  ['workerFetch (a worker thread)', true],
])('sending with %s', (_name, onWorker) => {
  beforeAll(() => {
    // every request through the worker, however small (by default only bodies of 32 KB and more)
    transport = onWorker ? workerFetch({ minBodyBytes: 0 }) : undefined;
  });
  afterAll(async () => {
    await transport?.close();
    transport = undefined;
  });

  it('stores 10,000 events exactly once when Tally is stopped for 10 s while they are tracked', async () => {
    const { ownerKey } = await app.createTenant();
    const { id: licenseId } = await app.createLicense(ownerKey);
    await proxy.stop();
    const { tally, reports } = client(ownerKey, { flushIntervalMs: 200 });
    for (let i = 0; i < 10_000; i++) void tally.track(event(licenseId, i));
    await new Promise((resolve) => setTimeout(resolve, 10_000));
    expect((await stored(licenseId)).events).toBe(0);
    expect(tally.stats().retries).toBeGreaterThan(0);
    await proxy.listen(); // the same address again
    await tally.flush();

    expect(await stored(licenseId)).toEqual({ events: 10_000, keys: 10_000, quantity: '10000' });
    expect(tally.stats()).toMatchObject({ accepted: 10_000, duplicates: 0, rejected: 0, dropped: 0, buffered: 0, inFlight: 0 });
    expect(reports.every((r) => r.kind === 'retrying')).toBe(true);
  }, 60_000);

  it('sends an event as it was when tracked, whatever the caller does with the object afterwards', async () => {
    const { ownerKey } = await app.createTenant();
    const { id: licenseId } = await app.createLicense(ownerKey);
    const { tally, reports } = client(ownerKey, { flushIntervalMs: 60_000 });
    const reused = event(licenseId, 1, { quantity: '2.5' });
    void tally.track(reused);
    reused.quantity = '1000'; // an app that reuses its object for the next event
    reused.idempotencyKey = 'changed-after-track';
    void tally.track(event(licenseId, 2, { quantity: '0.5' }));
    await tally.flush();

    expect(reports).toEqual([]);
    expect(await stored(licenseId)).toEqual({ events: 2, keys: 2, quantity: '3' });
    const keys = await app.services.db.pool.query<{ k: string }>('SELECT idempotency_key AS k FROM usage_events WHERE license_id = $1', [licenseId]);
    expect(keys.rows.map((r) => r.k)).not.toContain('changed-after-track');
  });

  it('does not count twice a batch Tally committed but whose answer was lost (timeout, retry)', async () => {
    const { ownerKey } = await app.createTenant();
    const { id: licenseId } = await app.createLicense(ownerKey);
    proxy.dropResponses = 1;
    const { tally, reports } = client(ownerKey, { requestTimeoutMs: 1500, maxConcurrentBatches: 1 });
    for (let i = 0; i < 500; i++) void tally.track(event(licenseId, i));
    await tally.flush();

    expect(reports.filter((r) => r.kind === 'retrying')).toHaveLength(1);
    expect(reports[0]).toMatchObject({ kind: 'retrying', message: expect.stringMatching(/network|abort|timeout/i) });
    // The first send was stored (its answer lost); the retry found every key already there.
    expect(tally.stats()).toMatchObject({ accepted: 0, duplicates: 500, rejected: 0 });
    expect(await stored(licenseId)).toEqual({ events: 500, keys: 500, quantity: '500' });
  });

  it('drop-oldest: a full buffer drops the oldest events, counts and reports each one', async () => {
    const { ownerKey } = await app.createTenant();
    const { id: licenseId } = await app.createLicense(ownerKey);
    await proxy.stop();
    const { tally, reports } = client(ownerKey, { maxBufferedEvents: 100, maxBatchSize: 10, maxConcurrentBatches: 1, bufferPolicy: 'drop-oldest' });
    const tracked = await Promise.all(Array.from({ length: 300 }, (_, i) => tally.track(event(licenseId, i, { properties: { i } }))));
    expect(tracked).toHaveLength(300); // none waited

    // 10 in the batch being retried, 100 in the buffer: the 190 before the newest 100 were dropped.
    const dropped = reports.filter((r): r is Extract<TallyErrorReport, { kind: 'dropped' }> => r.kind === 'dropped');
    expect(dropped.map((d) => d.event.properties!.i)).toEqual(Array.from({ length: 190 }, (_, k) => k + 10));
    expect(tally.stats()).toMatchObject({ dropped: 190, buffered: 100, inFlight: 10 });

    await proxy.listen();
    await tally.flush();
    expect((await stored(licenseId)).events).toBe(110);
    const kept = await app.services.db.pool.query<{ i: number }>(`SELECT (properties->>'i')::int AS i FROM usage_events WHERE license_id = $1 ORDER BY 1`, [licenseId]);
    expect(kept.rows.map((r) => r.i)).toEqual([...Array.from({ length: 10 }, (_, k) => k), ...Array.from({ length: 100 }, (_, k) => k + 200)]);
  });

  it('block: a full buffer makes track wait for room, counts the waits, and loses nothing', async () => {
    const { ownerKey } = await app.createTenant();
    const { id: licenseId } = await app.createLicense(ownerKey);
    await proxy.stop();
    const { tally, reports } = client(ownerKey, { maxBufferedEvents: 100, maxBatchSize: 10, maxConcurrentBatches: 1, bufferPolicy: 'block' });
    let done = 0;
    const calls = Array.from({ length: 150 }, (_, i) => tally.track(event(licenseId, i)).then(() => (done += 1)));
    await new Promise((resolve) => setImmediate(resolve));
    // Nothing can drain while Tally is away: 110 calls returned (10 in flight + 100 buffered), 40 wait.
    expect(done).toBe(110);
    expect(tally.stats()).toMatchObject({ blocked: 40, dropped: 0, buffered: 140 });
    expect(reports.filter((r) => r.kind === 'buffer_full')).toEqual([{ kind: 'buffer_full', buffered: 100 }]);

    await proxy.listen();
    await Promise.all(calls);
    await tally.flush();
    expect(done).toBe(150);
    expect((await stored(licenseId)).events).toBe(150);
    expect(tally.stats()).toMatchObject({ accepted: 150, dropped: 0 });
  });

  it('shutdown flushes what is buffered, then refuses (reports) later events', async () => {
    const { ownerKey } = await app.createTenant();
    const { id: licenseId } = await app.createLicense(ownerKey);
    const { tally, reports } = client(ownerKey, { flushIntervalMs: 3_600_000 });
    for (let i = 0; i < 2500; i++) void tally.track(event(licenseId, i));
    await tally.shutdown();
    expect(await stored(licenseId)).toMatchObject({ events: 2500 });
    await tally.track(event(licenseId, 0));
    expect(reports).toEqual([{ kind: 'shutdown', events: [event(licenseId, 0)] }]);
    expect(tally.stats()).toMatchObject({ accepted: 2500, dropped: 1 });
  });

  it('reports per-event rejections with the event and never retries them; a refused batch is not retried either', async () => {
    const { ownerKey } = await app.createTenant();
    const { id: licenseId } = await app.createLicense(ownerKey);
    const { tally, reports } = client(ownerKey);
    const bad = { licenseId, usageType: 'Not A Type' };
    const foreign = { licenseId: '00000000-0000-4000-8000-000000000000', usageType: 'api_call' };
    await tally.track(event(licenseId, 1));
    await tally.track(bad);
    await tally.track(foreign);
    await tally.flush();
    expect(reports).toEqual([
      { kind: 'rejected', event: bad, code: 'INVALID_EVENT', message: expect.stringContaining('usageType') },
      { kind: 'rejected', event: foreign, code: 'LICENSE_NOT_FOUND', message: expect.any(String) },
    ]);
    expect(tally.stats()).toMatchObject({ accepted: 1, rejected: 2, retries: 0 });
    expect(proxy.connections).toBe(1);

    const { tally: badKey, reports: badKeyReports } = client('tk_live_000000000000000000000000');
    await badKey.track(event(licenseId, 2));
    await badKey.flush();
    expect(badKeyReports).toEqual([{ kind: 'batch_refused', events: [event(licenseId, 2)], status: 401, message: expect.stringContaining('401') }]);
    expect(badKey.stats()).toMatchObject({ retries: 0, dropped: 1 });
  });

  it('retries a 503 and a 429 after their Retry-After, then stores the batch once', async () => {
    const { ownerKey } = await app.createTenant();
    const { id: licenseId } = await app.createLicense(ownerKey);
    proxy.failNext.push(
      'HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\ncontent-length: 0\r\nconnection: close\r\n\r\n',
      'HTTP/1.1 429 Too Many Requests\r\nretry-after: 2\r\ncontent-length: 0\r\nconnection: close\r\n\r\n',
    );
    const { tally, reports } = client(ownerKey, { retry: { initialDelayMs: 10, maxDelayMs: 5000 } });
    for (let i = 0; i < 20; i++) void tally.track(event(licenseId, i));
    await tally.flush();
    expect(reports).toEqual([
      expect.objectContaining({ kind: 'retrying', attempt: 1, status: 503, delayMs: 1000 }),
      expect.objectContaining({ kind: 'retrying', attempt: 2, status: 429, delayMs: 2000 }),
    ]);
    expect(await stored(licenseId)).toMatchObject({ events: 20 });
  });

  it('carries identification: User-Agent, X-Tally-Environment, the SDK version, and the user on the event', async () => {
    const { ownerKey } = await app.createTenant();
    const { id: licenseId } = await app.createLicense(ownerKey);
    const seen: Headers[] = [];
    const { tally } = client(ownerKey, {
      environment: 'staging',
      fetch: (input, init) => {
        seen.push(new Headers(init?.headers));
        return (transport ?? fetch)(input, init);
      },
    });
    await tally.track({ licenseId, usageType: 'api_call', userId: 'u-1', userEmail: 'ada@example.com', organization: 'Analytical Engines' });
    await tally.flush();
    expect(seen.map((h) => [h.get('user-agent'), h.get('x-tally-environment')])).toEqual([[`tally-sdk-node/${SDK_VERSION}`, 'staging']]);
    const row = await app.services.db.pool.query(`SELECT user_id, user_email, organization, sdk_version, properties FROM usage_events WHERE license_id = $1`, [licenseId]);
    // The identification travels as fields of the event, stored in their own columns.
    expect(row.rows).toEqual([
      { user_id: 'u-1', user_email: 'ada@example.com', organization: 'Analytical Engines', sdk_version: `tally-sdk-node/${SDK_VERSION}`, properties: {} },
    ]);
    // The organization is a breakdown dimension; the email is in no analytics answer.
    const range = { startDate: new Date(Date.now() - 86_400_000).toISOString().slice(0, 10), endDate: new Date(Date.now() + 86_400_000).toISOString().slice(0, 10), licenseId };
    const byOrganization = await tally.analytics.breakdown.query({ ...range, by: 'organization' });
    expect(byOrganization.items).toEqual([expect.objectContaining({ key: 'Analytical Engines', quantity: '1' })]);
    const breakdown = await tally.analytics.breakdown.query({ ...range, by: 'sdkVersion' });
    expect(JSON.stringify([breakdown, byOrganization])).not.toContain('ada@example.com');
    expect(breakdown.items.map((i) => i.key)).toEqual([`tally-sdk-node/${SDK_VERSION}`]);
  });

  it('exposes the typed procedures and checks quota, from a short cache when asked', async () => {
    const { ownerKey } = await app.createTenant();
    const { licenseId } = await licenseWithLimit(app, ownerKey, 'api_call', 2);
    const { tally } = client(ownerKey, { checkCacheMs: 3_600_000 });
    const { tally: uncached } = client(ownerKey);
    expect((await tally.licenses.get.query({ id: licenseId })).id).toBe(licenseId);
    expect((await tally.usage.current.query({ licenseId })).usage.length).toBeGreaterThan(0);

    const first = await tally.check({ licenseId, usageType: 'api_call', quantity: 2 });
    expect(first.allowed).toBe(true);
    await tally.usage.trackEvent.mutate({ licenseId, usageType: 'api_call', quantity: 2 });
    // Cached: the same answer although the quota is now used up; without the cache, the truth.
    expect(await tally.check({ licenseId, usageType: 'api_call', quantity: 2 })).toEqual(first);
    const fresh = await uncached.check({ licenseId, usageType: 'api_call', quantity: 2 });
    expect(fresh.allowed).toBe(false);
    expect(fresh.limits[0]).toMatchObject({ hard: true, used: '2', remaining: '0' });
  });
});
