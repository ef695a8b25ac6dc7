import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import { TestApp } from '../helpers/harness';
import { startReceiver } from '../helpers/receiver';
import { startTestWorkers } from '../helpers/workers';
import { attemptDelivery, DeliveryFailed } from '../../src/domain/webhooks/deliver';
import { publishWebhookEvent } from '../../src/domain/webhooks/dispatch';
import { outboundPolicy, type Resolve } from '../../src/lib/net-guard';

/*
 * Webhook receivers must be public unless an operator allows otherwise. No test here sends a
 * packet outside 127.0.0.0/8: public addresses are only ever saved, never delivered to, and a
 * host name's "DNS" is a resolver handed to the delivery (what a name resolves to is exactly
 * what the guard must check, at connect time).
 */

let app: TestApp; // default rules
let allowLoopback: TestApp; // WEBHOOK_ALLOWED_HOSTS=127.0.0.1
let allowPrivate: TestApp; // WEBHOOK_ALLOW_PRIVATE=true
let workers: Awaited<ReturnType<typeof startTestWorkers>>;
let allowLoopbackWorkers: Awaited<ReturnType<typeof startTestWorkers>>;
const tenants: string[] = [];

async function createTenant(on: TestApp) {
  const tenant = await on.createTenant();
  tenants.push(tenant.tenantId);
  return tenant;
}

beforeAll(async () => {
  app = await TestApp.start({ WEBHOOK_RETRY_BASE_MS: '20' });
  allowLoopback = await TestApp.start({ WEBHOOK_RETRY_BASE_MS: '20', WEBHOOK_ALLOWED_HOSTS: '127.0.0.1' });
  allowPrivate = await TestApp.start({ WEBHOOK_ALLOW_PRIVATE: 'true' });
  workers = await startTestWorkers(app);
  allowLoopbackWorkers = await startTestWorkers(allowLoopback);
});
afterAll(async () => {
  // endpoints saved with public or private addresses go with the tenants of this file: none is ever delivered to
  await app.prisma.webhookEndpoint.deleteMany({ where: { tenantId: { in: tenants } } });
  await workers.close();
  await allowLoopbackWorkers.close();
  await Promise.all([app.close(), allowLoopback.close(), allowPrivate.close()]);
});

const INTERNAL = [
  'http://127.0.0.1/hook',
  'http://127.1/hook',
  'http://0x7f000001/hook',
  'http://2130706433/hook',
  'http://0177.0.0.1/hook',
  'http://[::1]/hook',
  'http://[::ffff:127.0.0.1]/hook',
  'http://[::ffff:7f00:1]/hook',
  'http://[64:ff9b::10.0.0.1]/hook',
  'http://[::]/hook',
  'http://0.0.0.0/hook',
  'http://localhost/hook',
  'http://LocalHost.:8080/hook',
  'http://169.254.169.254/latest/meta-data/',
  'http://[fe80::1]/hook',
  'http://[fd00::1]/hook',
  'http://10.0.0.1/hook',
  'http://172.16.0.1/hook',
  'http://192.168.1.1/hook',
  'http://100.64.0.1/hook',
  'http://224.0.0.1/hook',
  'http://255.255.255.255/hook',
  'http://127.0.0.1:6379/',
  'http://127.0.0.1:5432/',
];

async function endpointCount(tenantId: string) {
  return app.prisma.webhookEndpoint.count({ where: { tenantId } });
}

it('refuses every spelling of an internal address at create, naming url and why, and saves nothing', async () => {
  const { tenantId, ownerKey } = await createTenant(app);
  for (const url of INTERNAL) {
    const res = await app.call('webhooks.create', { url }, ownerKey);
    expect([url, res.status]).toEqual([url, 400]);
    expect(res.body.error?.data.issues).toEqual([{ path: ['url'], code: 'custom', message: expect.stringMatching(/^url points to \S+ \(.+ address\), which webhooks may not reach/) }]);
  }
  expect(await endpointCount(tenantId)).toBe(0);
});

it('says which kind of address it refused', async () => {
  const { ownerKey } = await createTenant(app);
  const reason = async (url: string) => (await app.call('webhooks.create', { url }, ownerKey)).body.error?.message;
  expect(await reason('http://0x7f000001:6379/')).toBe(
    'url points to 127.0.0.1 (loopback address), which webhooks may not reach (an operator can allow it with WEBHOOK_ALLOWED_HOSTS)',
  );
  expect(await reason('http://169.254.169.254/')).toContain('(link-local address)');
  expect(await reason('http://[::ffff:10.0.0.1]/')).toContain('(private address)');
});

it('refuses other schemes and credentials in the URL, naming url', async () => {
  const { tenantId, ownerKey } = await createTenant(app);
  const withCredentials = await app.call('webhooks.create', { url: 'https://user:secret@hooks.example.com/x' }, ownerKey);
  expect(withCredentials.status).toBe(400);
  expect(withCredentials.body.error?.data.issues).toEqual([
    { path: ['url'], code: 'custom', message: 'url must not carry credentials (user:password@); authenticate receivers by the signature' },
  ]);
  for (const url of ['ftp://hooks.example.com/x', 'file:///etc/passwd', 'gopher://127.0.0.1:6379/_INFO']) {
    const res = await app.call('webhooks.create', { url }, ownerKey);
    expect([url, res.status, res.body.error?.data.issues?.[0]?.path]).toEqual([url, 400, ['url']]);
  }
  expect(await endpointCount(tenantId)).toBe(0);
});

it('accepts a public address on any port (saved only: nothing is ever delivered to it)', async () => {
  const { tenantId, ownerKey } = await createTenant(app);
  for (const url of ['https://93.184.216.34/hook', 'http://93.184.216.34:6379/', 'http://[2606:2800:220:1:248:1893:25c8:1946]:5432/', 'https://hooks.example.com/tally']) {
    const res = await app.call('webhooks.create', { url, description: 'never delivered' }, ownerKey);
    expect([url, res.status, res.data?.url]).toEqual([url, 200, url]);
  }
  // this tenant publishes nothing, and its endpoints go before anything could
  await app.prisma.webhookEndpoint.deleteMany({ where: { tenantId } });
});

it('refuses an internal address on update and leaves the endpoint as it was', async () => {
  const { ownerKey } = await createTenant(app);
  const created = await app.call('webhooks.create', { url: 'https://93.184.216.34/hook' }, ownerKey);
  for (const url of ['http://127.1:6379/', 'http://[::ffff:169.254.169.254]/', 'http://user:pw@93.184.216.34/']) {
    const res = await app.call('webhooks.update', { id: created.data.id, url, description: 'changed' }, ownerKey);
    expect([url, res.status, res.body.error?.data.issues?.[0]?.path]).toEqual([url, 400, ['url']]);
  }
  expect(await app.prisma.webhookEndpoint.findUniqueOrThrow({ where: { id: created.data.id } })).toMatchObject({ url: 'https://93.184.216.34/hook', description: null });
});

it('WEBHOOK_ALLOWED_HOSTS lets 127.0.0.1 through, and the receiver gets the delivery', async () => {
  const receiver = await startReceiver();
  try {
    const { tenantId, ownerKey } = await createTenant(allowLoopback);
    const created = await allowLoopback.call('webhooks.create', { url: receiver.url }, ownerKey);
    expect(created.status).toBe(200);
    // only the listed address: its neighbour and other spellings of loopback stay refused
    expect((await allowLoopback.call('webhooks.create', { url: receiver.url.replace('127.0.0.1', '127.0.0.2') }, ownerKey)).status).toBe(400);
    expect((await allowLoopback.call('webhooks.create', { url: 'http://localhost/hook' }, ownerKey)).status).toBe(400);
    const event = { id: randomUUID(), type: 'usage.threshold.warning' as const, createdAt: new Date().toISOString(), data: {} };
    await publishWebhookEvent({ prisma: allowLoopback.prisma, jobs: allowLoopback.services.queues, retryBaseMs: 20 }, { tenantId, environment: 'live' }, event);
    const [delivery] = await allowLoopback.prisma.webhookDelivery.findMany({ where: { tenantId } });
    await allowLoopbackWorkers.finished(`webhooks.deliver@${delivery!.id}`);
    expect(receiver.received.map((r) => JSON.parse(r.body).id)).toEqual([event.id]);
  } finally {
    await receiver.close();
  }
});

it('WEBHOOK_ALLOW_PRIVATE lets private ranges through, but not loopback or link-local', async () => {
  const { ownerKey } = await createTenant(allowPrivate);
  for (const url of ['http://10.0.0.1/hook', 'http://192.168.1.10:8080/hook', 'http://[fd00::1]/hook', 'http://100.64.0.1/hook']) {
    expect([url, (await allowPrivate.call('webhooks.create', { url }, ownerKey)).status]).toEqual([url, 200]);
  }
  for (const url of ['http://127.0.0.1/hook', 'http://169.254.169.254/', 'http://0.0.0.0/']) {
    expect([url, (await allowPrivate.call('webhooks.create', { url }, ownerKey)).status]).toEqual([url, 400]);
  }
  // saved only: the tenant publishes nothing
});

it('refuses at delivery an endpoint that now points at loopback, and the tenant sees only "refused"', async () => {
  const receiver = await startReceiver();
  try {
    const { tenantId, ownerKey } = await createTenant(app);
    const created = await app.call('webhooks.create', { url: 'https://93.184.216.34/hook' }, ownerKey);
    expect(created.status).toBe(200);
    // What a DNS change (or a row saved before these rules) looks like from here: the saved
    // receiver now leads to this machine. Changed before any event exists, so nothing ever
    // goes to the public address.
    await app.prisma.webhookEndpoint.update({ where: { id: created.data.id }, data: { url: receiver.url.replace('127.0.0.1', 'localhost') } });
    const event = { id: randomUUID(), type: 'usage.threshold.warning' as const, createdAt: new Date().toISOString(), data: {} };
    await publishWebhookEvent({ prisma: app.prisma, jobs: app.services.queues, retryBaseMs: 20 }, { tenantId, environment: 'live' }, event);
    const [row] = await app.prisma.webhookDelivery.findMany({ where: { tenantId } });
    await workers.finished(`webhooks.deliver@${row!.id}`);

    expect(receiver.received).toEqual([]);
    const seen = (await app.call('webhooks.deliveries', {}, ownerKey, { method: 'GET' })).data.items;
    expect(seen).toHaveLength(1);
    // refused once and for good: a retry cannot make the address allowed
    expect(seen[0]).toMatchObject({ status: 'FAILED', attempts: 1, responseStatus: null, lastError: 'refused: address not allowed' });
    expect(seen[0].attemptLog).toEqual([expect.objectContaining({ attempt: 1, responseStatus: null, error: 'refused: address not allowed' })]);
  } finally {
    await receiver.close();
  }
});

describe('at connect time, on the address the name resolves to', () => {
  let tenantId: string;
  let ownerKey: string;
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  let port: number;

  beforeAll(async () => {
    ({ tenantId, ownerKey } = await createTenant(app));
    receiver = await startReceiver();
    port = Number(new URL(receiver.url).port);
  });
  afterAll(() => receiver.close());

  /** A delivery to `http://<host>:<port>/hook`, saved through the API (a name is not resolved when saved). */
  async function deliveryTo(host: string) {
    const endpoint = await app.call('webhooks.create', { url: `http://${host}:${port}/hook` }, ownerKey);
    expect(endpoint.status).toBe(200);
    const eventId = randomUUID();
    return app.prisma.webhookDelivery.create({
      data: { tenantId, endpointId: endpoint.data.id, eventId, eventType: 'usage.threshold.warning', payload: { id: eventId, type: 'usage.threshold.warning', data: {} } },
    });
  }

  /** A DNS that answers what the test says, for the names the test gave. */
  const dns =
    (answers: Record<string, string[]>): Resolve =>
    async (host) => {
      const addresses = answers[host];
      if (!addresses) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host} (resolver 10.0.0.53)`), { code: 'ENOTFOUND' });
      return addresses.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
    };

  const deps = (resolve: Resolve, allowedHosts = '') => ({ prisma: app.prisma, timeoutMs: 5_000, policy: outboundPolicy({ allowedHosts }), resolve });

  it('refuses a public-looking name that resolves to loopback: nothing reaches the receiver, the operator log says why', async () => {
    const row = await deliveryTo('hooks.customer.test');
    const logged: string[] = [];
    const logger = { warn: (details: object, message: string) => void logged.push(`${message}: ${(details as { err: Error }).err.message}`) };
    const outcome = await attemptDelivery({ ...deps(dns({ 'hooks.customer.test': ['127.0.0.1'] })), logger }, row.id, { number: 1, last: false });
    expect(outcome).toEqual({ status: 'FAILED', responseStatus: null });
    expect(receiver.received).toEqual([]);
    expect(await app.prisma.webhookDelivery.findUniqueOrThrow({ where: { id: row.id } })).toMatchObject({ status: 'FAILED', lastError: 'refused: address not allowed' });
    expect(logged).toEqual(['webhook delivery refused: address not allowed: hooks.customer.test: no allowed address (127.0.0.1 is loopback)']);
  });

  it('connects only to an allowed address among those a name resolves to', async () => {
    const row = await deliveryTo('mixed.customer.test');
    const received = receiver.received.length;
    const outcome = await attemptDelivery(deps(dns({ 'mixed.customer.test': ['127.0.0.2', '127.0.0.1'] }), '127.0.0.1'), row.id, { number: 1, last: true });
    expect(outcome).toEqual({ status: 'SUCCEEDED', responseStatus: 200 });
    expect(receiver.received.slice(received).map((r) => r.headers.host)).toEqual([`mixed.customer.test:${port}`]);
  });

  it('allows exactly the listed address: a trap on 127.0.0.2 gets nothing', async () => {
    const trapped: string[] = [];
    const trap = http.createServer((req, res) => {
      trapped.push(req.url ?? '');
      res.end();
    });
    await new Promise<void>((resolve) => trap.listen(0, '127.0.0.2', resolve));
    try {
      const trapPort = (trap.address() as AddressInfo).port;
      const endpoint = await app.call('webhooks.create', { url: `http://neighbour.customer.test:${trapPort}/hook` }, ownerKey);
      const eventId = randomUUID();
      const row = await app.prisma.webhookDelivery.create({ data: { tenantId, endpointId: endpoint.data.id, eventId, eventType: 'usage.threshold.warning', payload: { id: eventId } } });
      const outcome = await attemptDelivery(deps(dns({ 'neighbour.customer.test': ['127.0.0.2'] }), '127.0.0.1'), row.id, { number: 1, last: false });
      expect(outcome.status).toBe('FAILED');
      expect(trapped).toEqual([]);
    } finally {
      await new Promise<void>((resolve) => trap.close(() => resolve()));
    }
  });

  it('lets a listed name resolve to an internal address', async () => {
    const row = await deliveryTo('receiver.internal.test');
    const received = receiver.received.length;
    const outcome = await attemptDelivery(deps(dns({ 'receiver.internal.test': ['127.0.0.1'] }), 'receiver.internal.test'), row.id, { number: 1, last: true });
    expect(outcome.status).toBe('SUCCEEDED');
    expect(receiver.received).toHaveLength(received + 1);
  });
});

describe('what a tenant is told about a failed attempt', () => {
  const loopbackAllowed = () => ({ prisma: app.prisma, timeoutMs: 300, policy: outboundPolicy({ allowedHosts: '127.0.0.1' }) });
  let tenantId: string;
  let ownerKey: string;

  beforeAll(async () => {
    ({ tenantId, ownerKey } = await createTenant(app));
  });

  /** An endpoint row pointing at `url` (as an operator's allowlist would let it be saved) with one delivery. */
  async function deliveryTo(url: string) {
    const endpoint = await app.prisma.webhookEndpoint.create({ data: { tenantId, url, secret: 'whsec_test' } });
    const eventId = randomUUID();
    return app.prisma.webhookDelivery.create({ data: { tenantId, endpointId: endpoint.id, eventId, eventType: 'usage.threshold.warning', payload: { id: eventId } } });
  }

  async function shown(deliveryId: string) {
    const items = (await app.call('webhooks.deliveries', { limit: 100 }, ownerKey, { method: 'GET' })).data.items as { id: string; lastError: string | null; attemptLog: unknown }[];
    const item = items.find((d) => d.id === deliveryId)!;
    // never the socket's own words: no address, port or error code of what lies behind this server
    expect(JSON.stringify(item)).not.toMatch(/127\.0\.0\.1|ECONN|EADDR|getaddrinfo|10\.0\.0\.53|internal detail/);
    return item;
  }

  it('"unreachable" when nothing listens, and the next attempt is still scheduled', async () => {
    const closed = http.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const row = await deliveryTo(`http://127.0.0.1:${port}/hook`);
    await expect(attemptDelivery(loopbackAllowed(), row.id, { number: 1, last: false })).rejects.toThrow(DeliveryFailed);
    expect(await shown(row.id)).toMatchObject({ status: 'PENDING', lastError: 'unreachable' });
  });

  it('"timeout" when the receiver never answers', async () => {
    const silent = http.createServer(() => undefined);
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    try {
      const row = await deliveryTo(`http://127.0.0.1:${(silent.address() as AddressInfo).port}/hook`);
      expect(await attemptDelivery(loopbackAllowed(), row.id, { number: 8, last: true })).toEqual({ status: 'FAILED', responseStatus: null });
      expect(await shown(row.id)).toMatchObject({ status: 'FAILED', lastError: 'timeout' });
    } finally {
      silent.closeAllConnections();
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    }
  });

  it('"HTTP <status>" and no response body', async () => {
    const receiver = await startReceiver([503]);
    const chatty = http.createServer((req, res) => res.writeHead(500, { 'content-type': 'text/plain' }).end('internal detail: redis at 10.0.0.7:6379'));
    await new Promise<void>((resolve) => chatty.listen(0, '127.0.0.1', resolve));
    try {
      const unavailable = await deliveryTo(receiver.url);
      expect(await attemptDelivery(loopbackAllowed(), unavailable.id, { number: 8, last: true })).toEqual({ status: 'FAILED', responseStatus: 503 });
      expect(await shown(unavailable.id)).toMatchObject({ lastError: 'HTTP 503', responseStatus: 503 });
      const talkative = await deliveryTo(`http://127.0.0.1:${(chatty.address() as AddressInfo).port}/hook`);
      await attemptDelivery(loopbackAllowed(), talkative.id, { number: 8, last: true });
      expect(await shown(talkative.id)).toMatchObject({ lastError: 'HTTP 500', responseStatus: 500 });
    } finally {
      await receiver.close();
      await new Promise<void>((resolve) => chatty.close(() => resolve()));
    }
  });

  it('"HTTP 302" for a redirect, which is not followed', async () => {
    const trap = await startReceiver();
    const redirecting = http.createServer((req, res) => res.writeHead(302, { location: trap.url }).end());
    await new Promise<void>((resolve) => redirecting.listen(0, '127.0.0.1', resolve));
    try {
      const row = await deliveryTo(`http://127.0.0.1:${(redirecting.address() as AddressInfo).port}/hook`);
      expect(await attemptDelivery(loopbackAllowed(), row.id, { number: 8, last: true })).toEqual({ status: 'FAILED', responseStatus: 302 });
      expect(await shown(row.id)).toMatchObject({ lastError: 'HTTP 302' });
      expect(trap.received).toEqual([]);
    } finally {
      await trap.close();
      await new Promise<void>((resolve) => redirecting.close(() => resolve()));
    }
  });

  it('"refused: URL not allowed" for a saved URL that carries credentials, at once and without sending', async () => {
    const receiver = await startReceiver();
    try {
      const row = await deliveryTo(receiver.url.replace('http://', 'http://admin:hunter2@'));
      expect(await attemptDelivery(loopbackAllowed(), row.id, { number: 1, last: false })).toEqual({ status: 'FAILED', responseStatus: null });
      expect(await shown(row.id)).toMatchObject({ status: 'FAILED', lastError: 'refused: URL not allowed' });
      expect(receiver.received).toEqual([]);
    } finally {
      await receiver.close();
    }
  });

  it('"unreachable: host name not found" when the name does not resolve', async () => {
    const row = await deliveryTo('http://gone.customer.test/hook');
    const resolve: Resolve = () => Promise.reject(Object.assign(new Error('getaddrinfo ENOTFOUND gone.customer.test (resolver 10.0.0.53)'), { code: 'ENOTFOUND' }));
    await attemptDelivery({ ...loopbackAllowed(), resolve }, row.id, { number: 8, last: true });
    expect(await shown(row.id)).toMatchObject({ status: 'FAILED', lastError: 'unreachable: host name not found' });
  });
});
