import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { randomBytes } from 'node:crypto';
import { networkInterfaces } from 'node:os';
import { TestApp } from '../helpers/harness';
import { appRouter } from '../../src/server/router';
import { createHttpServer } from '../../src/server/http';

/** `procedure` label values of tally_http_requests_total, and how many series it has. */
async function httpSeries(baseUrl: string) {
  const res = await fetch(`${baseUrl}/metrics`);
  expect(res.status).toBe(200);
  const lines = (await res.text()).split('\n').filter((l) => l.startsWith('tally_http_requests_total{'));
  const labels = new Set(lines.map((l) => /procedure="([^"]*)"/.exec(l)![1]!));
  return { series: lines.length, labels, text: lines.join('\n') };
}

/** A non-loopback address of this machine, to be a client that is not local (absent on some CI boxes). */
function externalIPv4(): string | undefined {
  return Object.values(networkInterfaces())
    .flat()
    .find((i) => i && i.family === 'IPv4' && !i.internal)?.address;
}

/** The same services, also served on a non-loopback address: its requests come from that address. */
async function listenOn(app: TestApp, host: string): Promise<{ server: Server; url: string }> {
  const server = createHttpServer(app.services);
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  return { server, url: `http://${host}:${(server.address() as AddressInfo).port}` };
}

const closeServer = (server: Server) =>
  new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });

describe('metrics labels', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await TestApp.start();
  });
  afterAll(() => app.close());

  it('labels requests from a closed set: many random paths add one `unknown` label, not one series each', async () => {
    const procedures = Object.keys(appRouter._def.procedures);
    const before = await httpSeries(app.baseUrl);
    const random = () => randomBytes(40).toString('hex');
    const paths = [
      ...Array.from({ length: 150 }, () => `/api/trpc/${random()}`),
      ...Array.from({ length: 50 }, () => `/api/export/${random()}`),
      ...Array.from({ length: 50 }, () => `/${random()}`),
      '/api/trpc/licenses.list,licenses.get?batch=1',
      '/api/trpc/',
      '/api/trpc/usage.trackEventx',
      '/api/export/eventsx',
      '/metricsx',
    ];
    for (let i = 0; i < paths.length; i += 25) {
      await Promise.all(paths.slice(i, i + 25).map((p) => fetch(`${app.baseUrl}${p}`).then((r) => r.arrayBuffer())));
    }
    const after = await httpSeries(app.baseUrl);
    expect(after.labels.has('unknown')).toBe(true);
    // 259 different paths, answered with a handful of status codes: a few series, not hundreds
    expect(after.series - before.series).toBeLessThanOrEqual(5);
    const allowed = new Set([...procedures, '/api/export/events', '/api/export/rollups', '/health', '/metrics', '/admin/queues', 'unknown']);
    for (const label of after.labels) expect([label, allowed.has(label)]).toEqual([label, true]);
    expect(after.text).not.toMatch(/usage\.trackEventx|eventsx|licenses\.list,/);
  });

  it('names a known procedure and an export route by its template; one character past them is unknown', async () => {
    const before = await httpSeries(app.baseUrl);
    expect(before.labels.has('licenses.list')).toBe(false);
    await fetch(`${app.baseUrl}/api/trpc/licenses.list`).then((r) => r.arrayBuffer());
    await fetch(`${app.baseUrl}/api/export/rollups`).then((r) => r.arrayBuffer());
    await fetch(`${app.baseUrl}/api/trpc/licenses.lists`).then((r) => r.arrayBuffer());
    const after = await httpSeries(app.baseUrl);
    expect(after.text).toMatch(/procedure="licenses\.list",status="401"/);
    expect(after.text).toMatch(/procedure="\/api\/export\/rollups",status="401"/);
    expect(after.labels.has('licenses.lists')).toBe(false);
  });
});

describe('/metrics access', () => {
  it('without METRICS_TOKEN: loopback clients may scrape, others get 403', async () => {
    expect.hasAssertions();
    const app = await TestApp.start();
    try {
      expect((await fetch(`${app.baseUrl}/metrics`)).status).toBe(200);
      const external = externalIPv4();
      if (external) {
        const other = await listenOn(app, external);
        try {
          const res = await fetch(`${other.url}/metrics`);
          expect(res.status).toBe(403);
          expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(/METRICS_TOKEN/);
          expect((await fetch(`${other.url}/health`)).status).toBe(200); // only /metrics is held back
        } finally {
          await closeServer(other.server);
        }
      }
    } finally {
      await app.close();
    }
  });

  it('with METRICS_TOKEN: the Bearer token is required from everyone, loopback included', async () => {
    expect.hasAssertions();
    const token = randomBytes(24).toString('hex');
    const app = await TestApp.start({ METRICS_TOKEN: token });
    try {
      const none = await fetch(`${app.baseUrl}/metrics`);
      expect(none.status).toBe(401);
      expect(none.headers.get('www-authenticate')).toMatch(/^Bearer/);
      expect((await fetch(`${app.baseUrl}/metrics`, { headers: { authorization: `Bearer ${token}x` } })).status).toBe(401);
      expect((await fetch(`${app.baseUrl}/metrics`, { headers: { authorization: `Bearer ${token.slice(1)}` } })).status).toBe(401);
      const ok = await fetch(`${app.baseUrl}/metrics`, { headers: { authorization: `Bearer ${token}` } });
      expect(ok.status).toBe(200);
      expect(await ok.text()).toMatch(/tally_http_requests_total/);
      const external = externalIPv4();
      if (external) {
        const other = await listenOn(app, external);
        try {
          expect((await fetch(`${other.url}/metrics`)).status).toBe(401);
          expect((await fetch(`${other.url}/metrics`, { headers: { authorization: `Bearer ${token}` } })).status).toBe(200);
        } finally {
          await closeServer(other.server);
        }
      }
    } finally {
      await app.close();
    }
  });

  it('behind a trusted proxy the forwarded client address decides; without TRUST_PROXY the header is ignored', async () => {
    const proxied = await TestApp.start({ TRUST_PROXY: '1' });
    const direct = await TestApp.start();
    try {
      const from = (address: string) => ({ headers: { 'x-forwarded-for': address } });
      expect((await fetch(`${proxied.baseUrl}/metrics`, from('203.0.113.9'))).status).toBe(403);
      expect((await fetch(`${proxied.baseUrl}/metrics`, from('127.0.0.1'))).status).toBe(200);
      // only the entry our proxy appended counts, not what the client wrote before it
      expect((await fetch(`${proxied.baseUrl}/metrics`, from('127.0.0.1, 203.0.113.9'))).status).toBe(403);
      expect((await fetch(`${direct.baseUrl}/metrics`, from('203.0.113.9'))).status).toBe(200);
    } finally {
      await proxied.close();
      await direct.close();
    }
  });
});
