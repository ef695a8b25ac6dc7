import http from 'node:http';
import type pg from 'pg';
import { TestApp } from '../helpers/harness';
import { createIsolatedDatabase } from '../helpers/isolated-db';
import { csvRows, eventsExportUrl, readExport, seedEvents, stallExport, type ExportAnswer, type StalledExport } from '../helpers/export-clients';

// Megabytes more than socket buffers hold: a client that stops reading really stalls the export.
const ROWS = 30_000;

let db: ReturnType<typeof createIsolatedDatabase>;
let fixtures: TestApp;
/** Tenants with a read key and a license of ROWS events. */
const tenants: { key: string; licenseId: string }[] = [];

beforeAll(async () => {
  db = createIsolatedDatabase('export_limits');
  fixtures = await TestApp.start({ DATABASE_URL: db.url });
  for (let i = 0; i < 3; i++) {
    const { tenantId, ownerKey } = await fixtures.createTenant();
    const { id: licenseId } = await fixtures.createLicense(ownerKey, { timezone: 'UTC' });
    await seedEvents(fixtures.services.db.pool, tenantId, licenseId, ROWS);
    tenants.push({ key: (await fixtures.createKey(ownerKey, 'read')).key, licenseId });
  }
});
afterAll(async () => {
  await fixtures.close();
  await db.drop();
});

/** A refusal for want of capacity: before any byte of CSV, JSON that says why, and when to retry. */
function expectRefusal(answer: { status: number; headers: http.IncomingHttpHeaders }, body: string, status: number, reason: RegExp) {
  expect(answer.status).toBe(status);
  expect(answer.headers['retry-after']).toBe('5');
  expect(answer.headers['content-type']).toBe('application/json');
  expect(JSON.parse(body).error.message).toMatch(reason);
}

/** Reads exports until one is not refused (a slot is given back just after its stream ends). */
async function readWhenFree(url: string, key: string): Promise<ExportAnswer> {
  let answer = await readExport(url, key);
  for (let i = 0; i < 100 && answer.status !== 200; i++) {
    await new Promise((r) => setTimeout(r, 50));
    answer = await readExport(url, key);
  }
  return answer;
}

describe('export concurrency', () => {
  it('streams EXPORT_MAX_PER_TENANT exports of a tenant and EXPORT_POOL_SIZE in all; the next is refused before its first byte', async () => {
    const app = await TestApp.start({ DATABASE_URL: db.url, EXPORT_POOL_SIZE: '2', EXPORT_MAX_PER_TENANT: '1' });
    const stalled: StalledExport[] = [];
    try {
      const [a, b, c] = tenants as [(typeof tenants)[0], (typeof tenants)[0], (typeof tenants)[0]];
      const url = (t: typeof a) => eventsExportUrl(app.baseUrl, t.licenseId);
      stalled.push(await stallExport(url(a), a.key));
      expect(stalled[0]!.status).toBe(200); // the tenant's one
      const secondOfA = await stallExport(url(a), a.key);
      expectRefusal(secondOfA, secondOfA.firstChunk, 429, /this tenant already runs 1 \(EXPORT_MAX_PER_TENANT\)/);
      stalled.push(await stallExport(url(b), b.key));
      expect(stalled[1]!.status).toBe(200); // the pool's second
      const thirdInAll = await stallExport(url(c), c.key);
      expectRefusal(thirdInAll, thirdInAll.firstChunk, 503, /2 exports are running \(EXPORT_POOL_SIZE\)/);

      // One leaves: its slot (and connection) is free again, and the waiting tenant's export runs whole.
      stalled[0]!.leave();
      const retried = await readWhenFree(url(c), c.key);
      expect([retried.status, retried.complete, csvRows(retried.body)]).toEqual([200, true, ROWS]);
    } finally {
      for (const s of stalled) s.leave();
      await app.close();
    }
  });

  it('never answers 200 and then cuts the export short for want of a connection: each is whole or refused', async () => {
    const app = await TestApp.start({ DATABASE_URL: db.url, DB_POOL_SIZE: '1', EXPORT_POOL_SIZE: '2', EXPORT_MAX_PER_TENANT: '2' });
    const stalled: StalledExport[] = [];
    let held: pg.PoolClient | undefined;
    try {
      const [a, b] = tenants as [(typeof tenants)[0], (typeof tenants)[0]];
      const url = (t: typeof a) => eventsExportUrl(app.baseUrl, t.licenseId);
      const pool = app.services.db.pool;
      for (const t of [a, b]) expect((await readExport(url(t), t.key)).status).toBe(200); // keys authenticated and cached

      // Other work holds the API's pool at the moment an export has checked its scope and wants
      // a connection to stream from: the export must not have answered 200 yet.
      held = await pool.connect();
      const exporting = readExport(url(b), b.key);
      for (let i = 0; i < 200 && pool.waitingCount === 0; i++) await new Promise((r) => setTimeout(r, 10));
      expect(pool.waitingCount).toBe(1); // the export's scope query
      const next = pool.connect(); // queued behind it: takes the connection as soon as the scope is read
      held.release();
      held = await next;
      const answer = await exporting;
      if (answer.status === 200) expect([answer.complete, csvRows(answer.body)]).toEqual([true, ROWS]);
      else expectRefusal(answer, answer.body, 503, /retry later/);
      held.release();
      held = undefined;

      // Every export slot held by a stalled client: the others are refused at once, not cut.
      stalled.push(await stallExport(url(a), a.key), await stallExport(url(a), a.key));
      expect(stalled.map((s) => s.status)).toEqual([200, 200]);
      const whileFull = await Promise.all(Array.from({ length: 6 }, () => readExport(url(b), b.key)));
      for (const refused of whileFull) expectRefusal(refused, refused.body, 503, /retry later/);
      for (const s of stalled) s.leave();

      // Many at once, as slots come and go: whole, or refused before the first byte.
      expect((await readWhenFree(url(b), b.key)).status).toBe(200);
      const many = await Promise.all(Array.from({ length: 12 }, (_, i) => readExport(url(tenants[i % 2]!), tenants[i % 2]!.key)));
      const whole = many.filter((m) => m.status === 200);
      for (const m of whole) expect([m.complete, csvRows(m.body)]).toEqual([true, ROWS]);
      for (const m of many.filter((m) => m.status !== 200)) expectRefusal(m, m.body, m.status === 429 ? 429 : 503, /retry/);
      expect(whole.length).toBeGreaterThan(0);
    } finally {
      held?.release();
      for (const s of stalled) s.leave();
      await app.close();
    }
  });
});

describe('export duration', () => {
  it('cuts off a client that reads a trickle, fast enough for the stall timeout, once EXPORT_MAX_DURATION_MS has passed', async () => {
    // The stall timeout never fires here (the client keeps reading): only the total bound can end it.
    const app = await TestApp.start({ DATABASE_URL: db.url, EXPORT_MAX_DURATION_MS: '3000', EXPORT_STALL_TIMEOUT_MS: '600000' });
    try {
      // A larger export than the others (~15 MB): far more than socket buffers take in the time allowed.
      const { tenantId, ownerKey } = await fixtures.createTenant();
      const { id: licenseId } = await fixtures.createLicense(ownerKey, { timezone: 'UTC' });
      await seedEvents(fixtures.services.db.pool, tenantId, licenseId, 3 * ROWS);
      const a = { key: (await fixtures.createKey(ownerKey, 'read')).key, licenseId };
      const url = eventsExportUrl(app.baseUrl, a.licenseId);
      // Exports holding a connection in this file's database (their last statement a FETCH).
      const streaming = async () =>
        Number(
          (
            await fixtures.services.db.pool.query<{ n: string }>(
              `SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'FETCH % FROM export_rows'`,
            )
          ).rows[0]!.n,
        );
      // 1 KB every 25 ms, for at most 600 reads (15 s; 600 KB of the export).
      let reading = true;
      let bytes = 0;
      const trickle = await new Promise<{ res: http.IncomingMessage; closed: Promise<boolean> }>((resolve, reject) => {
        const req = http.get(url, { headers: { authorization: `Bearer ${a.key}` } }, (res) => {
          res.pause();
          res.on('error', () => undefined);
          let reads = 0;
          const timer = setInterval(() => {
            const chunk = res.read(1024) as Buffer | null;
            if (chunk) bytes += chunk.length;
            if (++reads >= 600) reading = false;
            if (!reading) clearInterval(timer);
          }, 25);
          const closed = new Promise<boolean>((done) => res.on('close', () => done(res.complete)));
          resolve({ res, closed });
        });
        req.on('error', reject);
      });
      expect(trickle.res.statusCode).toBe(200);
      let started = false;
      for (let i = 0; i < 200 && reading && !started; i++) {
        started = (await streaming()) === 1;
        if (!started) await new Promise((r) => setTimeout(r, 25));
      }
      expect(started).toBe(true); // it streams, held mid-way by the client's pace
      for (let i = 0; i < 1000 && reading && (await streaming()) > 0; i++) await new Promise((r) => setTimeout(r, 25));
      const stillReading = reading;
      reading = false;
      expect(stillReading).toBe(true); // the connection came back while the client was still trickling
      expect(await streaming()).toBe(0);
      expect(bytes).toBeGreaterThan(0);
      trickle.res.resume(); // read what was sent: the body ends cut short, not as a whole file
      expect(await trickle.closed).toBe(false);

      // Its slot is back too: the next export of the same tenant runs whole.
      const next = await readWhenFree(url, a.key);
      expect([next.status, next.complete, csvRows(next.body)]).toEqual([200, true, 3 * ROWS]);
    } finally {
      await app.close();
    }
  });

  it('lets an export that reads steadily finish within EXPORT_MAX_DURATION_MS', async () => {
    const app = await TestApp.start({ DATABASE_URL: db.url, EXPORT_MAX_DURATION_MS: '600000' });
    try {
      const [a] = tenants as [(typeof tenants)[0]];
      const whole = await readExport(eventsExportUrl(app.baseUrl, a.licenseId), a.key);
      expect([whole.status, whole.complete, csvRows(whole.body)]).toEqual([200, true, ROWS]);
    } finally {
      await app.close();
    }
  });
});
