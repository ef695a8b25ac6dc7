import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { ensureConsoleBundle } from '../../src/server/console/bundle';

/**
 * `npm start` serves the web console with no other command: a missing bundle is built at start
 * (Vite, from web/), and a bundle older than its sources is built again. Each case builds into a
 * folder of its own (CONSOLE_DIST_DIR), so web/dist, which other tests serve, is left alone.
 */
const root = path.resolve(__dirname, '..', '..');
const base = new URL(process.env.DATABASE_URL!);
const dbName = `${base.pathname.slice(1)}_console_build`;
const databaseUrl = Object.assign(new URL(base.toString()), { pathname: `/${dbName}` }).toString();
const tmp = mkdtempSync(path.join(os.tmpdir(), 'tally-console-'));

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

afterAll(async () => {
  rmSync(tmp, { recursive: true, force: true });
  const admin = Object.assign(new URL(base.toString()), { pathname: '/postgres' });
  const c = new pg.Client({ connectionString: admin.toString() });
  await c.connect();
  await c.query(`DROP DATABASE IF EXISTS "${dbName}" WITH (FORCE)`);
  await c.end();
});

it('builds the missing bundle at npm start and serves it at /dashboard', async () => {
  const dist = path.join(tmp, 'missing');
  expect(existsSync(dist)).toBe(false);
  const port = await freePort();
  // exactly what `npm start` runs (its command read from package.json)
  const start = (JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { scripts: { start: string } }).scripts.start;
  const [node, ...args] = start.trim().split(/\s+/);
  expect(node).toBe('node');
  const child: ChildProcess = spawn(process.execPath, args, {
    cwd: root,
    env: { ...process.env, LOG_LEVEL: 'info', DATABASE_URL: databaseUrl, PORT: String(port), ROLE: 'api', CONSOLE_DIST_DIR: dist, REDIS_KEY_PREFIX: `e2e-console:${port}:` },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  try {
    const url = `http://127.0.0.1:${port}`;
    const deadline = Date.now() + 170_000;
    for (;;) {
      const ok = await fetch(`${url}/health`).then((r) => r.status === 200, () => false);
      if (ok) break;
      if (child.exitCode !== null || Date.now() > deadline) throw new Error(`Tally did not come up:\n${out}`);
      await new Promise((r) => setTimeout(r, 250));
    }
    expect(out).toMatch(/building the web console \(bundle missing\)/);
    const page = await fetch(`${url}/dashboard/`);
    expect(page.status).toBe(200);
    const html = await page.text();
    const script = /src="(\/dashboard\/assets\/[^"]+\.js)"/.exec(html);
    expect(script).not.toBeNull();
    const js = await fetch(`${url}${script![1]}`);
    expect(js.status).toBe(200);
    expect((await js.text()).length).toBeGreaterThan(10_000);
    expect(existsSync(path.join(dist, 'index.html'))).toBe(true);
  } finally {
    child.kill('SIGTERM');
    await exited;
  }
}, 200_000);

it('builds again when the bundle is older than its sources, and keeps a fresh one', () => {
  const dist = path.join(tmp, 'stale');
  mkdirSync(dist, { recursive: true });
  writeFileSync(path.join(dist, 'index.html'), '<!doctype html><title>stale</title>');
  utimesSync(path.join(dist, 'index.html'), new Date('2000-01-01'), new Date('2000-01-01'));
  expect(ensureConsoleBundle(dist).state).toBe('built');
  expect(readFileSync(path.join(dist, 'index.html'), 'utf8')).toMatch(/\/dashboard\/assets\//);
  expect(ensureConsoleBundle(dist).state).toBe('fresh');
}, 150_000);
