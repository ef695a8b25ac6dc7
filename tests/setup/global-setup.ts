import { spawnSync } from 'node:child_process';
import path from 'node:path';

/** One database per test run, migrated the way `npm start` migrates; dropped in global-teardown. */
export default function globalSetup(): void {
  const base = process.env.TEST_DATABASE_BASE_URL ?? 'postgresql://postgres@127.0.0.1:5432';
  const name = `tally_test_${process.pid}_${Date.now()}`;
  const url = `${base}/${name}`;
  const root = path.resolve(__dirname, '..', '..');
  const result = spawnSync(path.join(root, 'node_modules', '.bin', 'tsx'), ['scripts/migrate.ts', 'deploy'], {
    cwd: root,
    env: { ...process.env, DATABASE_URL: url, DATABASE_DIRECT_URL: url },
    encoding: 'utf8',
  });
  if (result.status !== 0) {
    throw new Error(`could not create the test database ${name}:\n${result.stdout}\n${result.stderr}`);
  }
  process.env.DATABASE_URL = url;
  process.env.TALLY_TEST_DATABASE = name;
}
