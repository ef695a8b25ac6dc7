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

it('waits for another migrator that holds the lock longer than the engine waits (12 s), then migrates', async () => {
  const other = new pg.Client({ connectionString: db.url });
  await other.connect();
  try {
    await other.query('SELECT pg_advisory_lock($1)', [PRISMA_MIGRATE_LOCK]);
    const migrating = migrate(db.url);
    const release = new Promise<void>((resolve, reject) =>
      setTimeout(() => other.query('SELECT pg_advisory_unlock($1)', [PRISMA_MIGRATE_LOCK]).then(() => resolve(), reject), 12_000),
    );
    const [result] = await Promise.all([migrating, release]);
    expect(result).toEqual({ code: 0, output: 'database is up to date\n' });
  } finally {
    await other.end();
  }
}, 90_000);
