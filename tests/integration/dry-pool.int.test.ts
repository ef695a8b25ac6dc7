import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import pg from 'pg';
import { TestApp } from '../helpers/harness';
import { createIsolatedDatabase } from '../helpers/isolated-db';
import { eventsExportUrl, seedEvents, stallExport, type StalledExport } from '../helpers/export-clients';
import { EventWriter, normalizeEvent } from '../../src/domain/usage/ingest';
import { GroupCommitter } from '../../src/domain/usage/group-commit';
import type { NormalizedEvent } from '../../src/domain/usage/event-schema';

/** Lets pending timers and I/O run. */
const settle = () => new Promise((resolve) => setTimeout(resolve, 50));

let db: ReturnType<typeof createIsolatedDatabase>;
beforeAll(() => {
  db = createIsolatedDatabase('dry_pool');
});
afterAll(async () => {
  await db.drop();
});

describe('GroupCommitter', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await TestApp.start({ DATABASE_URL: db.url });
  });
  afterAll(async () => {
    await app.close();
  });

  it('does not write an event whose gate fails while every flush slot is busy, and gives its caller the gate\'s error', async () => {
    const { tenantId, ownerKey } = await app.createTenant();
    const { id: licenseId } = await app.createLicense(ownerKey);
    const event = (): NormalizedEvent => {
      const e = normalizeEvent(tenantId, 'live', { licenseId, usageType: 'api_call', quantity: '1' }, { maxAgeMs: 86_400_000, maxFutureMs: 60_000 }, new Date());
      if ('status' in e) throw new Error(e.message);
      return e;
    };
    const committer = new GroupCommitter(new EventWriter(app.services.db.pool), { flushIntervalMs: 0, maxGroupSize: 10, maxInflight: 1 });
    // The first group waits for its gate: the only flush slot is busy.
    let open!: (admitted: boolean) => void;
    const first = committer.submit(event(), new Promise<boolean>((resolve) => (open = resolve)));
    await settle();
    // The second event's quota decision fails while it waits for a slot (as a dry pool makes it fail).
    const refusedEvent = event();
    const second = committer.submit(refusedEvent, Promise.reject(new Error('quota could not be decided')));
    second.catch(() => undefined);
    await settle();
    open(true);
    await expect(first).resolves.toMatchObject({ status: 'accepted' });
    await expect(second).rejects.toThrow('quota could not be decided');
    const { rows } = await app.services.db.pool.query('SELECT id FROM usage_events WHERE id = $1', [refusedEvent.id]);
    expect(rows).toEqual([]);
  });
});

describe('a dry database pool', () => {
  it('answers trackEvent with a clean 503 while no connection can be had, and recovers', async () => {
    // Limits are read from PostgreSQL on every call, so the quota decision needs a connection.
    const app = await TestApp.start({ DATABASE_URL: db.url, DB_POOL_SIZE: '2', QUOTA_LIMITS_CACHE_SECONDS: '0' });
    try {
      const { tenantId, ownerKey } = await app.createTenant();
      const { id: licenseId } = await app.createLicense(ownerKey);
      const track = (key: string) => app.call('usage.trackEvent', { licenseId, usageType: 'api_call', quantity: 1, idempotencyKey: key }, ownerKey);
      expect((await track('warm-up')).status).toBe(200); // the key is authenticated and cached
      const held = [await app.services.db.pool.connect(), await app.services.db.pool.connect()];
      let answers;
      try {
        answers = await Promise.all(Array.from({ length: 6 }, (_, i) => track(`dry-${i}`)));
      } finally {
        for (const client of held) client.release();
      }
      expect(answers.map((a) => a.status)).toEqual(Array(6).fill(503));
      expect(answers[0]!.body.error?.message).toMatch(/unavailable, retry later/);
      expect((await track('after')).status).toBe(200);
      const { rows } = await app.services.db.pool.query<{ key: string }>(
        'SELECT idempotency_key AS key FROM usage_events WHERE tenant_id = $1 ORDER BY 1',
        [tenantId],
      );
      expect(rows.map((r) => r.key)).toEqual(['after', 'warm-up']); // nothing of the refused calls
    } finally {
      await app.close();
    }
  });

  /**
   * `npm start`'s process (src/main.ts, API role) in a child: Node's default for an unhandled
   * rejection ends it, and src/main.ts's guard logs one instead. Either way the test sees it.
   */
  async function startApi(env: Record<string, string>) {
    const child = spawn(process.execPath, ['--require', 'tsx/cjs', 'src/main.ts'], {
      cwd: path.resolve(__dirname, '..', '..'),
      env: { ...process.env, ROLE: 'api', HOST: '127.0.0.1', PORT: '0', LOG_LEVEL: 'info', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const output: string[] = [];
    let buffered = '';
    const port = new Promise<number>((resolve, reject) => {
      child.stdout.on('data', (chunk: Buffer) => {
        buffered += chunk.toString('utf8');
        const lines = buffered.split('\n');
        buffered = lines.pop()!;
        for (const line of lines) {
          output.push(line);
          const port = /"port":(\d+)/.exec(line);
          if (port && line.includes('Tally listening')) resolve(Number(port[1]));
        }
      });
      child.stderr.on('data', (chunk: Buffer) => output.push(chunk.toString('utf8')));
      child.on('exit', (code) => reject(new Error(`API exited (${code}) before listening:\n${output.join('\n')}`)));
    });
    const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
    return {
      child,
      output,
      baseUrl: `http://127.0.0.1:${await port}`,
      async stop() {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
        await exited;
      },
    };
  }

  it('survives a read key stalling exports while ingest arrives and the database is slow: no unhandled rejection, no exit', async () => {
    const prefix = `test:${randomUUID()}:`;
    const fixtures = await TestApp.start({ DATABASE_URL: db.url });
    const api = await startApi({
      DATABASE_URL: db.url,
      REDIS_KEY_PREFIX: prefix,
      DB_POOL_SIZE: '2',
      EXPORT_POOL_SIZE: '2',
      EXPORT_MAX_PER_TENANT: '2',
      QUOTA_LIMITS_CACHE_SECONDS: '0', // every quota decision reads PostgreSQL
      // One group in flight at a time: while it waits, later events gather and their group's
      // flush (which reads their gates) is put off, as with every slot busy under load.
      INGEST_MAX_INFLIGHT_FLUSHES: '1',
    });
    const stalled: StalledExport[] = [];
    const locker = new pg.Client({ connectionString: db.url });
    try {
      const { tenantId, ownerKey } = await fixtures.createTenant();
      const { id: licenseId } = await fixtures.createLicense(ownerKey, { timezone: 'UTC' });
      // Lookups of one license share one read (one connection, however many events wait on it):
      // events of several licenses take a connection each.
      const others: string[] = [];
      for (let i = 0; i < 5; i++) others.push((await fixtures.createLicense(ownerKey, { timezone: 'UTC' })).id);
      await seedEvents(fixtures.services.db.pool, tenantId, licenseId, 30_000); // megabytes more than socket buffers hold
      const reader = await fixtures.createKey(ownerKey, 'read');
      const track = (id = licenseId) =>
        fetch(`${api.baseUrl}/api/trpc/usage.trackEvent`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${ownerKey}` },
          body: JSON.stringify({ licenseId: id, usageType: 'api_call', quantity: 1, idempotencyKey: randomUUID() }),
        }).then((r) => r.status);
      expect(await track()).toBe(200);

      // Ten exports, each left unread after its first chunk: two stream (the export pool), the
      // others are refused before their first byte. Ingest keeps its own pool meanwhile.
      for (let i = 0; i < 10; i++) stalled.push(await stallExport(eventsExportUrl(api.baseUrl, licenseId), reader.key));
      expect(stalled.filter((s) => s.status === 200)).toHaveLength(2);
      expect(stalled.filter((s) => s.status !== 200).every((s) => [429, 503].includes(s.status) && s.headers['retry-after'] === '5')).toBe(true);
      expect(await Promise.all(Array.from({ length: 8 }, () => track()))).toEqual(Array(8).fill(200));

      // Now a slow database dries the ingest pool itself: license reads (of two licenses) wait on
      // a lock and hold both connections, so later calls (of other licenses) find no connection
      // in time (their quota decision fails while the group they joined cannot be flushed yet).
      await locker.connect();
      await locker.query('BEGIN');
      await locker.query('LOCK TABLE licenses IN ACCESS EXCLUSIVE MODE');
      const waitingOnLock = async () =>
        Number(
          (await locker.query<{ n: string }>(`SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`))
            .rows[0]!.n,
        );
      let answered = 0;
      const during = [track().finally(() => (answered += 1))];
      for (let i = 0; i < 300 && (await waitingOnLock()) === 0; i++) await new Promise((r) => setTimeout(r, 20));
      during.push(...others.map((id) => track(id).finally(() => (answered += 1))));
      for (let i = 0; i < 300 && answered === 0; i++) await new Promise((r) => setTimeout(r, 100));
      await locker.query('COMMIT');
      const statuses = await Promise.all(during);
      expect(statuses.every((s) => s === 200 || s === 503)).toBe(true);
      expect(statuses).toContain(503); // the dry-pool path was taken

      expect(api.child.exitCode).toBeNull();
      expect((await fetch(`${api.baseUrl}/health`)).status).toBe(200);
      expect(await track()).toBe(200);
      expect(api.output.filter((line) => /unhandled|uncaught/i.test(line))).toEqual([]);
    } finally {
      for (const s of stalled) s.leave();
      await locker.end().catch(() => undefined);
      await api.stop();
      const keys = await fixtures.services.redis.keys(`${prefix}*`);
      if (keys.length) await fixtures.services.redis.del(...keys);
      await fixtures.close();
    }
  });
});
