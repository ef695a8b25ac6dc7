import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { randomBytes } from 'node:crypto';
import { TestApp } from '../helpers/harness';
import { createRedis } from '../../src/lib/redis';

/** A Redis of this test's own, so it can be killed without touching the shared one. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function startRedis(port: number): Promise<ChildProcess> {
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  const probe = createRedis(`redis://127.0.0.1:${port}`, { maxRetriesPerRequest: 0, retryStrategy: () => null });
  try {
    for (let attempt = 0; attempt < 200; attempt++) {
      try {
        await probe.connect();
        await probe.ping();
        return child;
      } catch {
        probe.disconnect();
        await new Promise((r) => setTimeout(r, 25));
      }
    }
    throw new Error(`redis-server did not start on port ${port}`);
  } finally {
    probe.disconnect();
  }
}

const exited = (child: ChildProcess) => child.exitCode !== null || child.signalCode !== null;

async function stopRedis(child: ChildProcess): Promise<void> {
  if (exited(child)) return;
  const gone = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGKILL');
  await gone;
}

const ALPHANUMERIC = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
const bogusKey = () => `tk_live_${Array.from(randomBytes(24), (b) => ALPHANUMERIC[b % 62]).join('')}`;

it('with Redis gone, authentication neither hangs nor fails: the throttle and key rate limits let calls through', async () => {
  const port = await freePort();
  let redis = await startRedis(port);
  const app = await TestApp.start({ REDIS_URL: `redis://127.0.0.1:${port}`, QUOTA_REDIS_TIMEOUT_MS: '200', AUTH_FAILURE_LIMIT: '2' });
  const probe = createRedis(`redis://127.0.0.1:${port}`, { maxRetriesPerRequest: 0 });
  probe.on('error', () => undefined);
  // the app's pub/sub channels (key revocations, license changes), to wait for after the restart
  const channels = ((await probe.pubsub('CHANNELS')) as string[]).sort();
  expect(channels.length).toBeGreaterThan(0);
  try {
    const { ownerKey } = await app.createTenant();
    const limited = (await app.call<{ key: string }>('apiKeys.create', { name: 'limited', role: 'read', rateLimitPerHour: 1 }, ownerKey)).data.key;
    expect((await app.call('licenses.list', {}, limited, { method: 'GET' })).status).toBe(200);
    expect((await app.call('licenses.list', {}, limited, { method: 'GET' })).status).toBe(429);

    await stopRedis(redis);
    // past AUTH_FAILURE_LIMIT: not counted while Redis is away, refused as unknown, not 429 or 500
    for (let i = 0; i < 4; i++) expect((await app.call('licenses.list', {}, bogusKey(), { method: 'GET' })).status).toBe(401);
    expect((await app.call('licenses.list', {}, limited, { method: 'GET' })).status).toBe(200);
    expect((await app.call('licenses.list', {}, ownerKey, { method: 'GET' })).status).toBe(200);
  } finally {
    if (exited(redis)) redis = await startRedis(port);
    // The app's own connections reconnect with a backoff: wait for them before closing, its
    // subscribers included. A subscriber closed while its automatic SUBSCRIBE is on the wire
    // has that command rejected ("Connection is closed."), a rejection ioredis leaves unhandled.
    for (const client of [app.services.redis, app.services.quotaRedis]) {
      for (let attempt = 0; attempt < 400 && client.status !== 'ready'; attempt++) await new Promise((r) => setTimeout(r, 25));
    }
    const resubscribed = async () => JSON.stringify(((await probe.pubsub('CHANNELS').catch(() => [])) as string[]).sort()) === JSON.stringify(channels);
    for (let attempt = 0; attempt < 400 && !(await resubscribed()); attempt++) await new Promise((r) => setTimeout(r, 25));
    probe.disconnect();
    await app.close();
    await stopRedis(redis);
  }
});
