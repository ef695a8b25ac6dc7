import { spawnSync } from 'node:child_process';
import path from 'node:path';
import pg from 'pg';

/**
 * A database of its own for a test file whose jobs work across all licenses (rollup
 * windows, retention), migrated the way `npm start` migrates and dropped afterwards.
 */
export function createIsolatedDatabase(suffix: string): { url: string; drop: () => Promise<void> } {
  const base = new URL(process.env.DATABASE_URL!);
  const name = `${base.pathname.slice(1)}_${suffix}`;
  const url = new URL(base.toString());
  url.pathname = `/${name}`;
  const root = path.resolve(__dirname, '..', '..');
  const result = spawnSync(path.join(root, 'node_modules', '.bin', 'tsx'), ['scripts/migrate.ts', 'deploy'], {
    cwd: root,
    env: { ...process.env, DATABASE_URL: url.toString(), DATABASE_DIRECT_URL: url.toString() },
    encoding: 'utf8',
  });
  if (result.status !== 0) throw new Error(`could not create ${name}:\n${result.stdout}\n${result.stderr}`);
  return {
    url: url.toString(),
    drop: async () => {
      const admin = new URL(base.toString());
      admin.pathname = '/postgres';
      const client = new pg.Client({ connectionString: admin.toString() });
      await client.connect();
      await client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      await client.end();
    },
  };
}
