import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import path from 'node:path';
import pg from 'pg';

/**
 * Starts Tally the way `npm start` does (its command is read from package.json) against a database that does not
 * exist yet, and drives it over HTTP with plain JSON, like curl.
 */
const root = path.resolve(__dirname, '..', '..');
const adminKey = `tk_test_${'E2e'.repeat(9)}`;
const base = new URL(process.env.DATABASE_URL!);
const dbName = `${base.pathname.slice(1)}_e2e`;
const databaseUrl = (() => {
  const u = new URL(base.toString());
  u.pathname = `/${dbName}`;
  return u.toString();
})();

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

interface Started {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

function startTally(env: Record<string, string>): Started {
  // exactly what `npm start` runs ("node [flags] <entry>"); one process, so signals reach Tally itself
  const start = (JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { scripts: { start: string } }).scripts.start;
  const [node, ...args] = start.trim().split(/\s+/);
  expect(node).toBe('node');
  const child = spawn(process.execPath, args, {
    cwd: root,
    env: { ...process.env, LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, output: () => out, exited };
}

async function waitForHealth(url: string, started: Started): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    try {
      const res = await fetch(`${url}/health`);
      if (res.status === 200) return;
    } catch {
      // not listening yet
    }
    if (started.child.exitCode !== null) throw new Error(`Tally exited early:\n${started.output()}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`Tally did not become healthy:\n${started.output()}`);
}

async function post(url: string, procedure: string, body: unknown, key: string) {
  const res = await fetch(`${url}/api/trpc/${procedure}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as any };
}

afterAll(async () => {
  const admin = new URL(base.toString());
  admin.pathname = '/postgres';
  const c = new pg.Client({ connectionString: admin.toString() });
  await c.connect();
  await c.query(`DROP DATABASE IF EXISTS "${dbName}" WITH (FORCE)`);
  await c.end();
});

it('starts on a fresh database, serves the walk-through over HTTP and stops cleanly on SIGTERM', async () => {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const tally = startTally({ DATABASE_URL: databaseUrl, PORT: String(port), BOOTSTRAP_ADMIN_KEY: adminKey, REDIS_KEY_PREFIX: `e2e:${port}:` });
  try {
    await waitForHealth(url, tally);
    const health = (await (await fetch(`${url}/health`)).json()) as Record<string, string>;
    expect(health).toEqual({ status: 'ok', database: 'up', redis: 'up' });

    const scrape = async () => (await fetch(`${url}/metrics`)).text();
    const value = (text: string, line: string) => Number(text.split('\n').find((l) => l.startsWith(`${line} `))?.split(' ')[1] ?? 0);
    const before = await scrape();

    const tenant = await post(url, 'tenants.create', { name: 'E2E Inc', slug: `e2e-${port}` }, adminKey);
    expect(tenant.status).toBe(200);
    const owner = tenant.json.result.data.apiKey.key as string;
    const license = await post(url, 'licenses.create', { name: 'Main', plan: 'starter', timezone: 'America/New_York' }, owner);
    expect(license.status).toBe(200);
    const licenseId = license.json.result.data.id as string;

    const one = await post(url, 'usage.trackEvent', { licenseId, usageType: 'api_call', quantity: 2, idempotencyKey: 'e2e-1' }, owner);
    expect(one.json.result.data.duplicate).toBe(false);
    const batch = await post(
      url,
      'usage.trackEvents',
      { events: [{ licenseId, usageType: 'api_call', quantity: 2, idempotencyKey: 'e2e-1' }, { licenseId, usageType: 'tokens', quantity: '0.25' }] },
      owner,
    );
    expect(batch.json.result.data).toMatchObject({ accepted: 1, duplicates: 1, rejected: [] });

    const get = await fetch(`${url}/api/trpc/licenses.get?input=${encodeURIComponent(JSON.stringify({ id: licenseId }))}`, {
      headers: { authorization: `Bearer ${owner}` },
    });
    expect(((await get.json()) as any).result.data).toMatchObject({ id: licenseId, plan: 'starter', timezone: 'America/New_York' });

    const after = await scrape();
    const counted = (line: string) => value(after, line) - value(before, line);
    expect([
      counted('tally_events_accepted_total'),
      counted('tally_events_duplicate_total'),
      counted('tally_http_requests_total{procedure="usage.trackEvent",status="200"}'),
    ]).toEqual([2, 1, 1]);

    // Writes in flight when SIGTERM arrives are finished: every 200 is a stored event. The signal
    // goes out when the first answer arrives, so the others were sent and not yet answered.
    let signalled = false;
    let unansweredAtSignal = 0;
    let answered = 0;
    const answeredAfterSignal: number[] = [];
    const inflight = Array.from({ length: 100 }, (_, i) =>
      post(url, 'usage.trackEvent', { licenseId, usageType: 'shutdown', idempotencyKey: `sd-${i}` }, owner)
        .then((a) => {
          answered += 1;
          if (signalled) answeredAfterSignal.push(a.status);
          else {
            signalled = true;
            unansweredAtSignal = 100 - answered;
            tally.child.kill('SIGTERM');
          }
          return a;
        })
        .catch(() => null),
    );
    const answers = await Promise.all(inflight);
    const code = await tally.exited;
    if (code !== 0) throw new Error(`exit ${code}:\n${tally.output().slice(-3000)}`);
    expect(signalled).toBe(true);
    expect(unansweredAtSignal).toBeGreaterThan(0);
    // requests in flight when the signal came were finished, not dropped
    expect(answeredAfterSignal.filter((status) => status === 200).length).toBeGreaterThan(0);
    const ok = answers.filter((a) => a?.status === 200).length;
    const c = new pg.Client({ connectionString: databaseUrl });
    await c.connect();
    const { rows } = await c.query("SELECT count(*)::int AS n FROM usage_events WHERE usage_type = 'shutdown'");
    await c.end();
    expect(rows[0].n).toBe(ok);
  } finally {
    tally.child.kill('SIGKILL');
  }
}, 90_000);

it('names a bad configuration variable and exits non-zero', async () => {
  const tally = startTally({ PORT: 'eighty', DATABASE_URL: databaseUrl });
  expect(await tally.exited).not.toBe(0);
  expect(tally.output()).toMatch(/PORT/);
}, 30_000);

it('says which server is down and how to start it', async () => {
  const redisDown = startTally({ DATABASE_URL: databaseUrl, REDIS_URL: 'redis://127.0.0.1:1', PORT: '0' });
  expect(await redisDown.exited).not.toBe(0);
  expect(redisDown.output()).toMatch(/Redis is not reachable at 127\.0\.0\.1:1[\s\S]*redis-server/);

  const pgDown = startTally({ DATABASE_URL: 'postgresql://postgres@127.0.0.1:1/tally', PORT: '0' });
  expect(await pgDown.exited).not.toBe(0);
  expect(pgDown.output()).toMatch(/PostgreSQL is not reachable at 127\.0\.0\.1:1[\s\S]*pg_ctlcluster/);
}, 30_000);
