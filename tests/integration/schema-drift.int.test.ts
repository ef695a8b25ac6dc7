import { spawnSync } from 'node:child_process';
import path from 'node:path';
import pg from 'pg';

const root = path.resolve(__dirname, '..', '..');

/** The drift check runs the wasm engine, which needs Node's own ESM loader: run it as `npm start` would. */
function drift(url: string) {
  return spawnSync(path.join(root, 'node_modules', '.bin', 'tsx'), ['scripts/migrate.ts', 'drift'], {
    cwd: root,
    env: { ...process.env, DATABASE_URL: url },
    encoding: 'utf8',
  });
}

it('schema.prisma and the migrated test database agree', () => {
  const result = drift(process.env.DATABASE_URL!);
  expect(result.stdout).toContain('no drift');
  expect(result.status).toBe(0);
}, 120_000);

it('reports a column the migrations added but schema.prisma does not have', async () => {
  const base = new URL(process.env.DATABASE_URL!);
  const scratch = new URL(base.toString());
  scratch.pathname = `/${base.pathname.slice(1)}_drift`;
  const admin = new URL(base.toString());
  admin.pathname = '/postgres';
  const deploy = spawnSync(path.join(root, 'node_modules', '.bin', 'tsx'), ['scripts/migrate.ts', 'deploy'], {
    cwd: root,
    env: { ...process.env, DATABASE_URL: scratch.toString() },
    encoding: 'utf8',
  });
  expect(deploy.status).toBe(0);
  const client = new pg.Client({ connectionString: scratch.toString() });
  await client.connect();
  await client.query('ALTER TABLE licenses ADD COLUMN sneaky text');
  await client.end();
  try {
    const result = drift(scratch.toString());
    expect(result.status).toBe(1);
    expect(result.stdout).toContain('not in schema.prisma: table licenses column sneaky text');
  } finally {
    const c = new pg.Client({ connectionString: admin.toString() });
    await c.connect();
    await c.query(`DROP DATABASE IF EXISTS "${scratch.pathname.slice(1)}" WITH (FORCE)`);
    await c.end();
  }
}, 120_000);

