import { randomUUID } from 'node:crypto';
import { TestApp, useTestApp } from '../helpers/harness';

const app = useTestApp();
let ownerKey: string;
let licenseId: string;

beforeAll(async () => {
  ({ ownerKey } = await app.createTenant());
  ({ id: licenseId } = await app.createLicense(ownerKey));
});

const storedCount = async (where: Record<string, unknown> = {}) => app.prisma.usageEvent.count({ where: { licenseId, ...where } });

describe('usage.trackEvent', () => {
  it('stores an event with its exact decimal quantity', async () => {
    const res = await app.call('usage.trackEvent', { licenseId, usageType: 'api_call', quantity: '12.345678' }, ownerKey);
    expect(res.status).toBe(200);
    expect(res.data).toEqual({ eventId: expect.any(String), duplicate: false });
    const row = await app.prisma.usageEvent.findFirstOrThrow({ where: { id: res.data.eventId } });
    expect(row.quantity.toFixed()).toBe('12.345678');
    expect(row.usageType).toBe('api_call');
  });

  it('stores every text exactly as sent, whatever characters it holds', async () => {
    const texts = ['', 'NULL', 'null', 'a "quoted" {b,c}', 'back\\slash\\', ' spaced ', 'x,y}', '\u00e9\u{1F600}\n\ttab'];
    const events = texts.map((text, i) => ({
      licenseId,
      usageType: i % 2 ? 'null' : 'NULL'.toLowerCase(),
      idempotencyKey: `${text}#${i}`,
      userId: text,
      route: text,
      platform: text.slice(0, 60),
      sdkVersion: text,
      properties: { [text]: text },
    }));
    const res = await app.call('usage.trackEvents', { events }, ownerKey);
    expect(res.status).toBe(200);
    expect(res.data.accepted).toBe(texts.length);
    for (const [i, r] of (res.data.results as { eventId: string }[]).entries()) {
      const row = await app.prisma.usageEvent.findFirstOrThrow({ where: { id: r.eventId } });
      const text = texts[i]!;
      expect([row.usageType, row.idempotencyKey, row.userId, row.route, row.platform, row.sdkVersion, row.properties]).toEqual([
        'null',
        `${text}#${i}`,
        text,
        text,
        text.slice(0, 60),
        text,
        { [text]: text },
      ]);
    }
  });

  it('answers a repeat of the same key and payload with the original id, counted once', async () => {
    const idempotencyKey = randomUUID();
    const event = { licenseId, usageType: 'dedupe', quantity: 1.5, idempotencyKey, occurredAt: new Date().toISOString() };
    const first = await app.call('usage.trackEvent', event, ownerKey);
    // the same payload written differently ("1.50" vs 1.5, keys reordered) is the same event
    const { idempotencyKey: _k, ...rest } = event;
    const again = await app.call('usage.trackEvent', { idempotencyKey, ...rest, quantity: '1.50' }, ownerKey);
    expect(first.data.duplicate).toBe(false);
    expect(again.status).toBe(200);
    expect(again.data).toEqual({ eventId: first.data.eventId, duplicate: true });
    expect(await storedCount({ idempotencyKey })).toBe(1);
  });

  it('refuses the same key with a different payload with 409 and leaves the stored event unchanged', async () => {
    const idempotencyKey = randomUUID();
    const first = await app.call('usage.trackEvent', { licenseId, usageType: 'conflict', quantity: 1, idempotencyKey }, ownerKey);
    const clash = await app.call('usage.trackEvent', { licenseId, usageType: 'conflict', quantity: 2, idempotencyKey }, ownerKey);
    expect(clash.status).toBe(409);
    expect(clash.body.error?.data.code).toBe('CONFLICT');
    const rows = await app.prisma.usageEvent.findMany({ where: { idempotencyKey } });
    expect(rows).toHaveLength(1);
    expect(rows[0]!.id).toBe(first.data.eventId);
    expect(rows[0]!.quantity.toFixed()).toBe('1');
  });

  it('stores exactly one event for 50 concurrent calls with one key', async () => {
    const idempotencyKey = randomUUID();
    const occurredAt = new Date().toISOString();
    const results = await Promise.all(
      Array.from({ length: 50 }, () =>
        app.call('usage.trackEvent', { licenseId, usageType: 'race', quantity: 3, idempotencyKey, occurredAt }, ownerKey),
      ),
    );
    expect(results.every((r) => r.status === 200)).toBe(true);
    const ids = new Set(results.map((r) => r.data.eventId));
    expect(ids.size).toBe(1);
    expect(results.filter((r) => r.data.duplicate)).toHaveLength(49);
    expect(await storedCount({ idempotencyKey })).toBe(1);
    expect(await app.prisma.idempotencyKey.count({ where: { key: idempotencyKey } })).toBe(1);
  });

  it('writes concurrent single events in groups, every one committed before its answer', async () => {
    const usageType = `group_${randomUUID().slice(0, 8)}`;
    const before = (await app.services.metrics.ingestFlushSize.get()).values.find((v) => v.metricName?.endsWith('_count'))?.value ?? 0;
    const results = await Promise.all(
      Array.from({ length: 100 }, () => app.call('usage.trackEvent', { licenseId, usageType }, ownerKey)),
    );
    expect(results.every((r) => r.status === 200 && r.data.duplicate === false)).toBe(true);
    expect(await storedCount({ usageType })).toBe(100);
    const after = (await app.services.metrics.ingestFlushSize.get()).values.find((v) => v.metricName?.endsWith('_count'))?.value ?? 0;
    expect(after - before).toBeLessThan(100); // fewer statements than events
  });

  it('writes a lone event in a statement of its own, and gathers events only while a statement is in flight', async () => {
    // The longest interval allowed. That a lone event does not wait for it is a matter of time,
    // measured by `npm run bench` (ingest phase (d)), not asserted here.
    const patient = await TestApp.start({ INGEST_FLUSH_INTERVAL_MS: '1000' });
    try {
      const usageType = `alone_${randomUUID().slice(0, 8)}`;
      const flushes = async () =>
        (await patient.services.metrics.ingestFlushSize.get()).values.find((v) => v.metricName?.endsWith('_count'))?.value ?? 0;
      const before = await flushes();
      const lone = await patient.call('usage.trackEvent', { licenseId, usageType }, ownerKey);
      expect(lone.status).toBe(200);
      expect(await flushes()).toBe(before + 1);
      const results = await Promise.all(
        Array.from({ length: 50 }, () => patient.call('usage.trackEvent', { licenseId, usageType }, ownerKey)),
      );
      expect(results.every((r) => r.status === 200)).toBe(true);
      expect(await storedCount({ usageType })).toBe(51);
      expect((await flushes()) - before - 1).toBeLessThan(50); // the others waited for the statement in flight, together
    } finally {
      await patient.close();
    }
  });

  it('refuses events for licenses that are not ACTIVE, have tracking disabled, are deleted or belong to another tenant', async () => {
    const suspended = await app.createLicense(ownerKey);
    await app.call('licenses.setStatus', { id: suspended.id, status: 'SUSPENDED' }, ownerKey);
    const untracked = await app.createLicense(ownerKey, { usageTrackingEnabled: false });
    const deleted = await app.createLicense(ownerKey);
    await app.call('licenses.delete', { id: deleted.id }, ownerKey);
    const other = await app.createTenant();
    const foreign = await app.createLicense(other.ownerKey);

    const send = (id: string) => app.call('usage.trackEvent', { licenseId: id, usageType: 'x' }, ownerKey);
    const s = await send(suspended.id);
    expect(s.status).toBe(422);
    expect(s.body.error?.message).toMatch(/SUSPENDED/);
    expect((await send(untracked.id)).status).toBe(422);
    expect((await send(deleted.id)).status).toBe(404);
    expect((await send(foreign.id)).status).toBe(404);
    expect((await send(randomUUID())).status).toBe(404);
    expect(await app.prisma.usageEvent.count({ where: { licenseId: { in: [suspended.id, untracked.id, deleted.id, foreign.id] } } })).toBe(0);
  });
});

describe('usage.trackEvents', () => {
  it('judges each event on its own and counts repeats inside the batch as duplicates', async () => {
    const key = randomUUID();
    const occurredAt = new Date().toISOString();
    const res = await app.call(
      'usage.trackEvents',
      {
        events: [
          { licenseId, usageType: 'batch', quantity: 1, idempotencyKey: key, occurredAt },
          { licenseId, usageType: 'BAD TYPE' },
          { licenseId, usageType: 'batch', quantity: 1, idempotencyKey: key, occurredAt },
          { licenseId, usageType: 'batch', quantity: 9, idempotencyKey: key, occurredAt },
          { licenseId: randomUUID(), usageType: 'batch' },
          { licenseId, usageType: 'batch', quantity: '0.000001' },
        ],
      },
      ownerKey,
    );
    expect(res.status).toBe(200);
    expect(res.data.accepted).toBe(2);
    expect(res.data.duplicates).toBe(1);
    expect(res.data.rejected.map((r: { index: number; code: string }) => [r.index, r.code])).toEqual([
      [1, 'INVALID_EVENT'],
      [3, 'IDEMPOTENCY_CONFLICT'],
      [4, 'LICENSE_NOT_FOUND'],
    ]);
    expect(res.data.results[2].eventId).toBe(res.data.results[0].eventId);
    expect(res.data.results[2].status).toBe('duplicate');
    expect(await storedCount({ usageType: 'batch' })).toBe(2);
  });

  it('leaves out the per-event results when asked (includeResults: false), counts and rejections kept; a non-boolean is a 400 writing nothing', async () => {
    const key = randomUUID();
    const events = [
      { licenseId, usageType: 'lean', quantity: 2, idempotencyKey: key },
      { licenseId, usageType: 'BAD TYPE' },
      { licenseId, usageType: 'lean', quantity: 2, idempotencyKey: key },
    ];
    const lean = await app.call('usage.trackEvents', { events, includeResults: false }, ownerKey);
    expect(lean.status).toBe(200);
    expect(lean.data).toEqual({ accepted: 1, duplicates: 1, rejected: [{ index: 1, code: 'INVALID_EVENT', message: expect.any(String) }], results: [] });
    const full = await app.call('usage.trackEvents', { events, includeResults: true }, ownerKey);
    expect(full.data.results.map((r: { status: string }) => r.status)).toEqual(['duplicate', 'rejected', 'duplicate']);
    expect(await storedCount({ usageType: 'lean' })).toBe(1);

    const bad = await app.call('usage.trackEvents', { events: [{ licenseId, usageType: 'lean_bad' }], includeResults: 'no' }, ownerKey);
    expect(bad.status).toBe(400);
    expect(JSON.stringify(bad.body)).toContain('includeResults');
    expect(await storedCount({ usageType: 'lean_bad' })).toBe(0);
  });

  it('stores each event once when concurrent batches share keys in opposite orders (no deadlock, no 500)', async () => {
    const occurredAt = new Date().toISOString();
    const keys = Array.from({ length: 200 }, () => randomUUID());
    const batch = (order: string[]) => ({
      events: order.map((idempotencyKey) => ({ licenseId, usageType: 'crossed', quantity: 1, idempotencyKey, occurredAt })),
    });
    const calls = await Promise.all(
      Array.from({ length: 6 }, (_, i) => app.call('usage.trackEvents', batch(i % 2 ? [...keys].reverse() : keys), ownerKey)),
    );
    expect(calls.map((c) => c.status)).toEqual([200, 200, 200, 200, 200, 200]);
    expect(calls.reduce((n, c) => n + c.data.accepted, 0)).toBe(200);
    expect(calls.reduce((n, c) => n + c.data.duplicates, 0)).toBe(1000);
    expect(await storedCount({ usageType: 'crossed' })).toBe(200);
  });

  it('marks the hour of a late event for recomputation in the same write', async () => {
    const lateHour = new Date(Math.floor(Date.now() / 3_600_000) * 3_600_000 - 5 * 3_600_000);
    const { id: fresh } = await app.createLicense(ownerKey);
    const res = await app.call(
      'usage.trackEvents',
      { events: [{ licenseId: fresh, usageType: 'late', occurredAt: new Date(lateHour.getTime() + 60_000).toISOString() }] },
      ownerKey,
    );
    expect(res.data.accepted).toBe(1);
    const marks = await app.prisma.rollupDirtyHour.findMany({ where: { licenseId: fresh } });
    expect(marks.map((m) => m.hour.toISOString())).toEqual([lateHour.toISOString()]);
  });

  it('never answers "accepted" for an event the database did not write', async () => {
    // A trigger that silently drops rows (as an operator's might): the insert then stores fewer
    // events than it was given without refusing any key. The dropped one is refused, the other stored.
    const usageType = `dropped_${randomUUID().slice(0, 8)}`;
    await app.prisma.$executeRawUnsafe(
      `CREATE FUNCTION ${usageType}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF NEW.usage_type = '${usageType}' THEN RETURN NULL; END IF; RETURN NEW; END $$`,
    );
    await app.prisma.$executeRawUnsafe(`CREATE TRIGGER ${usageType} BEFORE INSERT ON usage_events FOR EACH ROW EXECUTE FUNCTION ${usageType}()`);
    try {
      const res = await app.call('usage.trackEvents', { events: [{ licenseId, usageType }, { licenseId, usageType: 'kept' }] }, ownerKey);
      expect(res.status).toBe(200);
      expect(res.data).toMatchObject({ accepted: 1, rejected: [{ index: 0, code: 'INVALID_EVENT' }] });
      const kept = (res.data.results as { eventId: string | null }[])[1]!.eventId!;
      expect(await app.prisma.usageEvent.count({ where: { id: kept } })).toBe(1);
      expect(await storedCount({ usageType })).toBe(0);
    } finally {
      await app.prisma.$executeRawUnsafe(`DROP TRIGGER ${usageType} ON usage_events`);
      await app.prisma.$executeRawUnsafe(`DROP FUNCTION ${usageType}()`);
    }
  });

  it('accepts 1,000 events and refuses 1,001 with a 400 naming the field, writing nothing', async () => {
    const usageType = `big_${randomUUID().slice(0, 8)}`;
    const make = (n: number) => Array.from({ length: n }, (_, i) => ({ licenseId, usageType, idempotencyKey: `${usageType}-${i}` }));
    const ok = await app.call('usage.trackEvents', { events: make(1000) }, ownerKey);
    expect(ok.status).toBe(200);
    expect(ok.data.accepted).toBe(1000);
    const tooMany = await app.call('usage.trackEvents', { events: make(1001).map((e) => ({ ...e, usageType: 'over' })) }, ownerKey);
    expect(tooMany.status).toBe(400);
    expect(tooMany.body.error?.data.issues?.[0]?.path).toEqual(['events']);
    expect(await storedCount({ usageType: 'over' })).toBe(0);
    const empty = await app.call('usage.trackEvents', { events: [] }, ownerKey);
    expect(empty.status).toBe(400);
  });
});

describe('limits at the boundary and just past it', () => {
  const at = (offsetMs: number) => new Date(Date.now() + offsetMs).toISOString();
  const track = (event: Record<string, unknown>) => app.call('usage.trackEvent', { licenseId, usageType: 'limits', ...event }, ownerKey);

  it('occurredAt: up to 5 minutes ahead and 35 days old', async () => {
    expect((await track({ occurredAt: at(300_000 - 5_000) })).status).toBe(200);
    const future = await track({ occurredAt: at(300_000 + 5_000) });
    expect(future.status).toBe(400);
    expect(future.body.error?.data.issues?.[0]?.path).toEqual(['occurredAt']);
    expect((await track({ occurredAt: at(-35 * 86_400_000 + 60_000) })).status).toBe(200);
    const old = await track({ occurredAt: at(-35 * 86_400_000 - 60_000) });
    expect(old.status).toBe(400);
    expect(old.body.error?.message).toMatch(/occurredAt/);
  });

  it('quantity: 15 significant digits and 6 decimals, not negative, finite', async () => {
    expect((await track({ quantity: '999999999.999999' })).status).toBe(200);
    expect((await track({ quantity: '999999999999999' })).status).toBe(200);
    for (const quantity of ['1000000000000000', '9999999999.999999', '0.0000001', '-0.000001', 'NaN', 'Infinity', '1e400', 'abc']) {
      const res = await track({ quantity });
      expect([quantity, res.status]).toEqual([quantity, 400]);
      expect(res.body.error?.data.issues?.[0]?.path).toEqual(['quantity']);
    }
    expect((await track({ quantity: 0 })).status).toBe(200);
  });

  it('usageType: 1-64 characters of [a-z0-9_.:-]', async () => {
    expect((await track({ usageType: 'a'.repeat(64) })).status).toBe(200);
    expect((await track({ usageType: 'a.b:c-d_9' })).status).toBe(200);
    for (const usageType of ['a'.repeat(65), '', 'Upper', 'sp ace', 'é']) {
      const res = await track({ usageType });
      expect(res.status).toBe(400);
      expect(res.body.error?.data.issues?.[0]?.path).toEqual(['usageType']);
    }
  });

  it('properties: 50 keys and 8 KB', async () => {
    const keys = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, i]));
    expect((await track({ properties: keys(50) })).status).toBe(200);
    expect((await track({ properties: keys(51) })).status).toBe(400);
    // {"v":"..."} is 8 bytes of JSON around the string
    expect((await track({ properties: { v: 'x'.repeat(8192 - 8) } })).status).toBe(200);
    const big = await track({ properties: { v: 'x'.repeat(8192 - 7) } });
    expect(big.status).toBe(400);
    expect(big.body.error?.data.issues?.[0]?.path).toEqual(['properties']);
  });

  it('text a database cannot store is a 400, not a 500', async () => {
    expect((await track({ userId: 'a\u0000b' })).status).toBe(400);
    expect((await track({ properties: { a: 'x\ud800' } })).status).toBe(400);
    expect((await track({ unknownField: 1 })).status).toBe(400);
    expect((await app.call('usage.trackEvent', null, ownerKey, { rawBody: '{not json' })).status).toBe(400);
  });

  it('request body: 1 MB, 413 beyond', async () => {
    const filler = (bytes: number) => {
      const base = JSON.stringify({ events: [{ licenseId, usageType: 'body', properties: { pad: '' } }] });
      return JSON.stringify({ events: [{ licenseId, usageType: 'body', properties: { pad: 'x'.repeat(bytes - base.length) } }] });
    };
    const atLimit = filler(1_048_576);
    expect(Buffer.byteLength(atLimit)).toBe(1_048_576);
    const ok = await app.call('usage.trackEvents', null, ownerKey, { rawBody: atLimit });
    expect(ok.status).toBe(200); // the body is accepted; its one event is then refused for its size
    expect(ok.data.rejected[0].message).toMatch(/properties/);
    const over = await app.call('usage.trackEvents', null, ownerKey, { rawBody: filler(1_048_577) });
    expect(over.status).toBe(413);
  });
});

describe('metrics', () => {
  const scrape = async () => (await fetch(`${app.baseUrl}/metrics`)).text();
  const value = (text: string, line: string) => Number(new RegExp(`^${line.replace(/[{}"]/g, '\\$&')} (\\d+)`, 'm').exec(text)?.[1] ?? 0);

  it('counts accepted, duplicate and rejected events by reason on /metrics', async () => {
    const before = await scrape();
    const key = randomUUID();
    await app.call('usage.trackEvent', { licenseId, usageType: 'm', idempotencyKey: key }, ownerKey);
    await app.call('usage.trackEvent', { licenseId, usageType: 'm', idempotencyKey: key }, ownerKey);
    await app.call('usage.trackEvent', { licenseId, usageType: 'M!' }, ownerKey);
    await app.call('usage.trackEvent', { licenseId, usageType: 'm', occurredAt: '2001-01-01T00:00:00Z' }, ownerKey);
    await app.call('usage.trackEvents', { events: [{ licenseId, usageType: 'm', quantity: -1 }] }, ownerKey);
    const text = await scrape();
    const counted = (line: string) => value(text, line) - value(before, line);
    // other tests of this file share the app: what these five calls added, not what the counters hold
    expect([
      counted('tally_events_accepted_total'),
      counted('tally_events_duplicate_total'),
      counted('tally_events_rejected_total{reason="INVALID_EVENT"}'),
      counted('tally_events_rejected_total{reason="OUT_OF_RANGE"}'),
    ]).toEqual([1, 1, 2, 1]);
    expect(text).toMatch(/tally_http_request_duration_seconds_bucket\{le="0.005",procedure="usage.trackEvent"\}/);
  });
});
