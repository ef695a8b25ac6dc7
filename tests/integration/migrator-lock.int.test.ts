import { spawn } from 'node:child_process';
import path from 'node:path';
import pg from 'pg';
import { createIsolatedDatabase } from '../helpers/isolated-db';

/**
 * Every role migrates at start. Found by the chaos suite: a scheduler starting beside a worker
 * on a busy machine failed to start ("Timed out trying to acquire a postgres advisory lock"),
 * since Prisma's schema engine waits only 10 s for another migrator's lock. (The engine is an
 * ES module jest cannot load, so it runs as `npm run db:migrate` runs it.)
 */
const PRISMA_MIGRATE_LOCK = 72707369; // the advisory lock Prisma's schema engine takes
const root = path.resolve(__dirname, '..', '..');

let db: ReturnType<typeof createIsolatedDatabase>;
beforeAll(() => {
  db = createIsolatedDatabase('migrator_lock');
});
afterAll(async () => {
  await db?.drop();
});

function migrate(url: string): Promise<{ code: number | null; output: string }> {
  const child = spawn(path.join(root, 'node_modules', '.bin', 'tsx'), ['scripts/migrate.ts', 'deploy'], {
    cwd: root,
    env: { ...process.env, DATABASE_URL: url },
  });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  return new Promise((resolve) => child.on('exit', (code) => resolve({ code, output })));
}

/** A database of the test's own that does not exist yet (the migrators create it). */
function freshDatabase(suffix: string): { url: string; drop: () => Promise<void> } {
  const url = new URL(db.url);
  const name = `${url.pathname.slice(1)}_${suffix}`;
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: async () => {
      const admin = new URL(db.url);
      admin.pathname = '/postgres';
      const client = new pg.Client({ connectionString: admin.toString() });
      await client.connect();
      await client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      await client.end();
    },
  };
}

async function createEmptyDatabase(url: string): Promise<void> {
  const admin = new URL(url);
  const name = admin.pathname.slice(1);
  admin.pathname = '/postgres';
  const client = new pg.Client({ connectionString: admin.toString() });
  await client.connect();
  try {
    await client.query(`CREATE DATABASE "${name}"`);
  } finally {
    await client.end();
  }
}

/** Sessions waiting (not granted) for the engine's advisory lock in the database of `client`. */
async function waitersOnLock(client: pg.Client): Promise<number> {
  const { rows } = await client.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM pg_locks l JOIN pg_database d ON d.oid = l.database
      WHERE l.locktype = 'advisory' AND l.objid = $1 AND l.classid = 0 AND NOT l.granted AND d.datname = current_database()`,
    [PRISMA_MIGRATE_LOCK],
  );
  return rows[0]!.n;
}

async function migrationCount(url: string): Promise<{ names: number; rows: number; unfinished: number }> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<{ names: number; rows: number; unfinished: number }>(
      `SELECT count(DISTINCT migration_name)::int AS names, count(*)::int AS rows,
              count(*) FILTER (WHERE finished_at IS NULL OR rolled_back_at IS NOT NULL)::int AS unfinished
         FROM _prisma_migrations`,
    );
    return rows[0]!;
  } finally {
    await client.end();
  }
}

it('waits for another migrator that holds the lock longer than the engine waits (12 s), saying so, then migrates', async () => {
  const fresh = freshDatabase('wait');
  await createEmptyDatabase(fresh.url);
  const other = new pg.Client({ connectionString: fresh.url });
  await other.connect();
  try {
    await other.query('SELECT pg_advisory_lock($1)', [PRISMA_MIGRATE_LOCK]);
    const migrating = migrate(fresh.url);
    const release = new Promise<void>((resolve, reject) =>
      setTimeout(() => other.query('SELECT pg_advisory_unlock($1)', [PRISMA_MIGRATE_LOCK]).then(() => resolve(), reject), 12_000),
    );
    const [result] = await Promise.all([migrating, release]);
    expect(result).toMatchObject({ code: 0 });
    expect(result.output).toMatch(/waiting for the migration lock: another process is migrating this database/);
    expect(result.output).toMatch(/got the migration lock/);
    expect(result.output).toMatch(/applied: /);
  } finally {
    await other.end();
    await fresh.drop();
  }
}, 90_000);

it('finds an up-to-date database current without waiting for a lock someone holds', async () => {
  const other = new pg.Client({ connectionString: db.url });
  await other.connect();
  try {
    await other.query('SELECT pg_advisory_lock($1)', [PRISMA_MIGRATE_LOCK]);
    // holds the lock until the test ends: a migrator that waited for it would never finish
    const result = await migrate(db.url);
    expect(result).toEqual({ code: 0, output: 'database is up to date\n' });
  } finally {
    await other.end();
  }
}, 60_000);

/**
 * The gap the first wait left: a migrator waited for the lock, found it free and gave it back,
 * and another migrator took it in the instant before its engine asked; the engine then waited
 * its 10 s and gave up. Here "another migrator" is this test, which takes the lock again the
 * moment the waiting process is granted it, and keeps it for 12 s. A migrator that holds the
 * lock from its wait through its engine's run makes this test's second lock wait instead.
 */
it('keeps the lock from its wait to the end of its migration, so nobody can take it in between (fresh database)', async () => {
  const fresh = freshDatabase('gap');
  try {
    await createEmptyDatabase(fresh.url);
    const other = new pg.Client({ connectionString: fresh.url });
    await other.connect();
    try {
      await other.query('SELECT pg_advisory_lock($1)', [PRISMA_MIGRATE_LOCK]);
      const migrating = migrate(fresh.url);
      // Until the migrator waits on the lock...
      for (let i = 0; i < 600 && (await waitersOnLock(other)) === 0; i++) await new Promise((r) => setTimeout(r, 100));
      expect(await waitersOnLock(other)).toBe(1);
      // ...then hand it over and queue for it again at once, as a second migrator's engine would.
      await other.query('SELECT pg_advisory_unlock($1)', [PRISMA_MIGRATE_LOCK]);
      const retaken = other.query('SELECT pg_advisory_lock($1)', [PRISMA_MIGRATE_LOCK]).then(async () => {
        await new Promise((r) => setTimeout(r, 12_000));
        await other.query('SELECT pg_advisory_unlock($1)', [PRISMA_MIGRATE_LOCK]);
      });
      const [result] = await Promise.all([migrating, retaken]);
      expect(result).toMatchObject({ code: 0 });
      expect(result.output).toMatch(/waiting for the migration lock/);
      expect(result.output).toMatch(/applied: /);
      expect((await migrationCount(fresh.url)).unfinished).toBe(0);
    } finally {
      await other.end();
    }
  } finally {
    await fresh.drop();
  }
}, 120_000);

it('six migrators started at the same instant on a database that does not exist yet all succeed; one applies every migration', async () => {
  const fresh = freshDatabase('six');
  try {
    const results = await Promise.all(Array.from({ length: 6 }, () => migrate(fresh.url)));
    // the output of any that failed, so a failure says why
    expect(results.filter((r) => r.code !== 0).map((r) => r.output)).toEqual([]);
    const appliers = results.filter((r) => /applied: /.test(r.output));
    expect(appliers).toHaveLength(1);
    expect(results.filter((r) => /database is up to date\n$/.test(r.output))).toHaveLength(5);
    const counts = await migrationCount(fresh.url);
    expect(counts.rows).toBe(counts.names);
    expect(counts.unfinished).toBe(0);
    expect(appliers[0]!.output.match(/applied: (.*)/)![1]!.split(', ')).toHaveLength(counts.names);
  } finally {
    await fresh.drop();
  }
}, 180_000);
