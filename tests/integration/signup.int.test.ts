import { randomUUID } from 'node:crypto';
import { useTestApp, type TestApp } from '../helpers/harness';
import { hashApiKey } from '../../src/domain/api-keys/key-material';
import { AddressRateLimiter } from '../../src/domain/api-keys/throttles';
import { createRedis } from '../../src/lib/redis';

/**
 * signup.register: off by default, test keys only in test-only mode, both in open mode; one
 * tenant per email with the same answer for a taken one; throttled per client address;
 * audited; counted by the platform view.
 */

const LIMIT = 3;
const WINDOW = 3600;

let addressCounter = 0;
/** A client address of its own for each test (TRUST_PROXY=1: the X-Forwarded-For entry counts). */
const freshAddress = () => `198.51.100.${++addressCounter}`;

const input = (overrides: Record<string, unknown> = {}) => ({
  email: `dev-${randomUUID()}@example.com`,
  name: 'Ada Developer',
  organization: `Acme ${randomUUID().slice(0, 8)}`,
  useCase: 'metering our public API',
  expectedVolume: '50,000 events a month',
  environment: 'test',
  ...overrides,
});

function register(app: TestApp, body: unknown, address: string, key: string | null = null) {
  return app.call('signup.register', body, key, { headers: { 'x-forwarded-for': address } });
}

/** Everything a sign-up could write, except audit rows (in the run's shared database: what these inputs would write). */
async function footprint(app: TestApp, bodies?: Record<string, unknown>[]) {
  const emails = bodies?.map((b) => String(b.email).toLowerCase());
  const organizations = bodies?.map((b) => String(b.organization));
  const [tenants, apiKeys, registrations] = await Promise.all([
    app.prisma.tenant.count(organizations ? { where: { name: { in: organizations } } } : undefined),
    app.prisma.apiKey.count(emails ? { where: { userEmail: { in: emails } } } : undefined),
    app.prisma.registration.count(emails ? { where: { email: { in: emails } } } : undefined),
  ]);
  return { tenants, apiKeys, registrations };
}

/** The shape of a JSON value: its keys and the types of its leaves, recursively. */
function shapeOf(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(shapeOf);
  if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, v]) => [k, shapeOf(v)]));
  return value === null ? 'null' : typeof value;
}

describe('SIGNUP_MODE=off (the default)', () => {
  const app = useTestApp({ TRUST_PROXY: '1' });

  it('refuses with 403 naming SIGNUP_MODE, whatever the input, and writes nothing', async () => {
    const valid = [input(), input({ environment: 'live' })];
    const addresses: string[] = [];
    for (const body of [...valid, { nonsense: true }, {}]) {
      addresses.push(freshAddress());
      const res = await register(app, body, addresses.at(-1)!);
      expect([res.status, res.body.error?.data.code]).toEqual([403, 'FORBIDDEN']);
      expect(res.body.error?.message).toMatch(/SIGNUP_MODE=off/);
    }
    expect(await footprint(app, valid)).toEqual({ tenants: 0, apiKeys: 0, registrations: 0 });
    expect(await app.prisma.auditLog.count({ where: { action: 'signup.register', ip: { in: addresses } } })).toBe(0);
  });
});

describe('SIGNUP_MODE=test-only', () => {
  const app = useTestApp({ TRUST_PROXY: '1', SIGNUP_MODE: 'test-only' });

  it('hands out a working test owner key', async () => {
    const res = await register(app, input({ environment: 'test' }), freshAddress());
    expect(res.status).toBe(200);
    expect(res.data.apiKey).toMatchObject({ role: 'owner', environment: 'test' });
    expect(res.data.apiKey.key).toMatch(/^tk_test_/);
    const me = await app.call('apiKeys.me', {}, res.data.apiKey.key, { method: 'GET' });
    expect([me.status, me.data.tenant.id, me.data.environment]).toEqual([200, res.data.tenant.id, 'test']);
  });

  it('refuses a live key with 403 naming environment, and writes nothing', async () => {
    const body = input({ environment: 'live' });
    const res = await register(app, body, freshAddress());
    expect([res.status, res.body.error?.data.code]).toEqual([403, 'FORBIDDEN']);
    expect(res.body.error?.message).toMatch(/environment/);
    expect(res.body.error?.data.issues).toEqual([expect.objectContaining({ path: ['environment'] })]);
    expect(await footprint(app, [body])).toEqual({ tenants: 0, apiKeys: 0, registrations: 0 });
  });
});

describe('SIGNUP_MODE=open', () => {
  const app = useTestApp(
    { TRUST_PROXY: '1', SIGNUP_MODE: 'open', SIGNUP_LIMIT: String(LIMIT), SIGNUP_WINDOW_SECONDS: String(WINDOW) },
    { isolatedDatabase: 'signup' },
  );

  it('creates a tenant with an owner key of the asked environment, shown once, and stores the registration', async () => {
    for (const environment of ['live', 'test'] as const) {
      const body = input({ environment, email: `Mixed.Case-${randomUUID()}@Example.COM` });
      const res = await register(app, body, freshAddress());
      expect(res.status).toBe(200);
      const { tenant, apiKey, message } = res.data;
      expect(tenant).toMatchObject({ name: body.organization, timezone: 'UTC' });
      expect(tenant.slug).toMatch(/^acme-[a-z0-9]+-[a-z0-9]{8}$/);
      expect(apiKey).toMatchObject({ role: 'owner', environment, userEmail: body.email.toLowerCase(), organization: body.organization });
      expect(apiKey.key.startsWith(`tk_${environment}_`)).toBe(true);
      expect(message).toMatch(/shown once/);

      const stored = await app.prisma.registration.findUniqueOrThrow({ where: { email: body.email.toLowerCase() } });
      expect(stored).toMatchObject({
        tenantId: tenant.id, name: body.name, organization: body.organization, useCase: body.useCase, expectedVolume: body.expectedVolume, environment,
      });
      const key = await app.prisma.apiKey.findFirstOrThrow({ where: { tenantId: tenant.id } });
      expect([key.role, key.environment, key.prefix, key.keyHash]).toEqual(['owner', environment, apiKey.prefix, hashApiKey(apiKey.key)]);

      // the key works as the new tenant's owner
      const license = await app.call('licenses.create', { name: 'first' }, apiKey.key);
      expect(license.status).toBe(200);
      expect(license.data.tenantId).toBe(tenant.id);
    }
  });

  it('answers a taken email (any case) with the same shape and status, an unusable key, and writes nothing new', async () => {
    const email = `taken-${randomUUID()}@example.com`;
    const first = await register(app, input({ email }), freshAddress());
    expect(first.status).toBe(200);
    const before = await footprint(app);
    for (const again of [email, email.toUpperCase()]) {
      const repeat = await register(app, input({ email: again, environment: 'live', organization: 'Someone Else' }), freshAddress());
      expect(repeat.status).toBe(200);
      expect(repeat.headers.get('content-type')).toBe(first.headers.get('content-type'));
      expect(shapeOf(repeat.body)).toEqual(shapeOf(first.body));
      expect(repeat.data.message).toBe(first.data.message);
      expect(repeat.data.apiKey.key).toMatch(/^tk_live_[A-Za-z0-9]{24}$/);
      expect(repeat.data.apiKey.key.length).toBe(first.data.apiKey.key.length);
      expect(repeat.data.apiKey.prefix).toBe(repeat.data.apiKey.key.slice(0, 16));
      expect(repeat.data.tenant.slug).toMatch(/^someone-else-[a-z0-9]{8}$/);
      // nothing of it exists: the key is refused, the tenant id names no tenant
      expect((await app.call('apiKeys.me', {}, repeat.data.apiKey.key, { method: 'GET' })).status).toBe(401);
      expect(await app.prisma.tenant.count({ where: { id: repeat.data.tenant.id } })).toBe(0);
    }
    expect(await footprint(app)).toEqual(before);
    // the first key is untouched and still the only owner of the registered tenant
    const me = await app.call('apiKeys.me', {}, first.data.apiKey.key, { method: 'GET' });
    expect([me.status, me.data.tenant.id]).toEqual([200, first.data.tenant.id]);
    expect(await app.prisma.apiKey.count({ where: { tenantId: first.data.tenant.id } })).toBe(1);
  });

  it('makes one tenant of concurrent registrations of one email', async () => {
    const email = `race-${randomUUID()}@example.com`;
    const before = await footprint(app);
    const answers = await Promise.all(Array.from({ length: 6 }, () => register(app, input({ email }), freshAddress())));
    expect(answers.map((a) => a.status)).toEqual(Array(6).fill(200));
    expect(await footprint(app)).toEqual({ tenants: before.tenants + 1, apiKeys: before.apiKeys + 1, registrations: before.registrations + 1 });
    const stored = await app.prisma.registration.findUniqueOrThrow({ where: { email } });
    const working = [];
    for (const a of answers) if ((await app.call('apiKeys.me', {}, a.data.apiKey.key, { method: 'GET' })).status === 200) working.push(a.data);
    expect(working.map((w) => w.tenant.id)).toEqual([stored.tenantId]);
  });

  it('audits a registration and a repeat, without the key', async () => {
    const email = `audit-${randomUUID()}@example.com`;
    const first = await register(app, input({ email }), '203.0.113.77');
    const repeat = await register(app, input({ email }), '203.0.113.78');
    const rows = await app.prisma.auditLog.findMany({ where: { action: 'signup.register', tenantId: first.data.tenant.id }, orderBy: { createdAt: 'asc' } });
    expect(rows).toEqual([
      expect.objectContaining({
        outcome: 'success', targetType: 'tenant', targetId: first.data.tenant.id, ip: '203.0.113.77', actorKeyId: null,
        metadata: { email, environment: 'test', keyPrefix: first.data.apiKey.prefix },
      }),
      expect.objectContaining({
        outcome: 'refused', targetId: first.data.tenant.id, ip: '203.0.113.78',
        metadata: { reason: 'email already registered', environment: 'test', issuedPrefix: repeat.data.apiKey.prefix },
      }),
    ]);
    const text = JSON.stringify(rows);
    for (const key of [first.data.apiKey.key, repeat.data.apiKey.key]) expect(text).not.toContain(key.slice(16));
    // the tenant's owner sees both in its audit log
    const log = await app.call('auditLogs.list', { action: 'signup.register' }, first.data.apiKey.key, { method: 'GET' });
    expect(log.data.items.map((i: { outcome: string }) => i.outcome).sort()).toEqual(['refused', 'success']);
  });

  it(`lets an address try ${LIMIT} times per window (malformed attempts count), then answers 429 with Retry-After; other addresses go on`, async () => {
    const address = freshAddress();
    const before = await footprint(app);
    expect((await register(app, input(), address)).status).toBe(200);
    expect((await register(app, { email: 'not an email' }, address)).status).toBe(400);
    const atLimit = await register(app, input(), address);
    expect(atLimit.status).toBe(200);
    expect(await footprint(app)).toEqual({ tenants: before.tenants + 2, apiKeys: before.apiKeys + 2, registrations: before.registrations + 2 });

    const past = await register(app, input(), address);
    expect([past.status, past.body.error?.data.code]).toEqual([429, 'TOO_MANY_REQUESTS']);
    expect(past.body.error?.message).toMatch(/too many sign-up attempts/);
    const retryAfter = Number(past.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(WINDOW);
    expect(past.headers.get('ratelimit-limit')).toBe(String(LIMIT));
    expect(past.headers.get('ratelimit-remaining')).toBe('0');
    // still refused, even with a valid key or a taken email; nothing was written past the limit
    expect((await register(app, input(), address, app.adminKey)).status).toBe(429);
    expect(await footprint(app)).toEqual({ tenants: before.tenants + 2, apiKeys: before.apiKeys + 2, registrations: before.registrations + 2 });

    expect((await register(app, input(), freshAddress())).status).toBe(200);
  });

  it('refuses every sign-up with 503 while the counters in Redis cannot answer (fails closed), and writes nothing', async () => {
    // port 1: nothing listens there, so every command fails
    const unreachable = createRedis('redis://127.0.0.1:1', { retryStrategy: () => null });
    const throttle = app.services.signup.throttle;
    app.services.signup.throttle = new AddressRateLimiter(unreachable, undefined, { keyPrefix: app.prefix, redisTimeoutMs: 200, namespace: 'signup', limit: LIMIT, windowSeconds: WINDOW });
    try {
      const before = await footprint(app);
      const res = await register(app, input(), freshAddress());
      expect([res.status, res.body.error?.data.code]).toEqual([503, 'SERVICE_UNAVAILABLE']);
      expect(res.body.error?.message).toMatch(/sign-up is unavailable/);
      expect(await footprint(app)).toEqual(before);
    } finally {
      app.services.signup.throttle = throttle;
      unreachable.disconnect();
    }
    expect((await register(app, input(), freshAddress())).status).toBe(200);
  });

  it('refuses bad input with 400 naming the field, and writes nothing', async () => {
    const before = await footprint(app);
    const cases: [Record<string, unknown>, string][] = [
      [input({ email: 'nope' }), 'email'],
      [input({ environment: 'staging' }), 'environment'],
      [input({ environment: undefined }), 'environment'],
      [input({ organization: '   ' }), 'organization'],
      [input({ name: 'x'.repeat(201) }), 'name'],
      [input({ useCase: 'x'.repeat(2001) }), 'useCase'],
      [input({ tenantId: randomUUID() }), ''],
    ];
    for (const [body, field] of cases) {
      const res = await register(app, body, freshAddress());
      expect([field, res.status]).toEqual([field, 400]);
      if (field) expect(res.body.error?.data.issues?.map((i) => i.path[0])).toContain(field);
    }
    // the longest accepted values are accepted
    const longest = await register(app, input({ name: 'x'.repeat(200), useCase: 'u'.repeat(2000), expectedVolume: 'v'.repeat(200) }), freshAddress());
    expect(longest.status).toBe(200);
    expect(await footprint(app)).toEqual({ tenants: before.tenants + 1, apiKeys: before.apiKeys + 1, registrations: before.registrations + 1 });
  });

  it('is counted by the platform view: tenants registered, and those with (unvoided) events in the last 30 days', async () => {
    const platform = async () => {
      const res = await app.call('analytics.platform', {}, app.adminKey, { method: 'GET' });
      expect(res.status).toBe(200);
      return res.data.signups as { tenants: number; activeLast30Days: number };
    };
    const before = await platform();
    const busy = await register(app, input(), freshAddress());
    const idle = await register(app, input({ environment: 'live' }), freshAddress());
    expect([busy.status, idle.status]).toEqual([200, 200]);
    await app.createTenant(); // made by an admin: not a sign-up
    const license = (await app.createLicense(busy.data.apiKey.key)).id;
    // an event of 31 days ago does not make the idle tenant active
    const idleLicense = (await app.createLicense(idle.data.apiKey.key)).id;
    const old = await app.call('usage.trackEvent', { licenseId: idleLicense, usageType: 'api_call', occurredAt: new Date(Date.now() - 31 * 86_400_000).toISOString() }, idle.data.apiKey.key);
    expect(old.status).toBe(200);
    // nor does a recent event that was voided
    const voided = await app.call('usage.trackEvent', { licenseId: idleLicense, usageType: 'api_call' }, idle.data.apiKey.key);
    expect(voided.status).toBe(200);
    const voiding = await app.call('usage.voidEvents', { eventIds: [voided.data.eventId], reason: 'sent by mistake' }, idle.data.apiKey.key);
    expect([voiding.status, voiding.data.voided]).toEqual([200, 1]);
    expect((await app.call('usage.trackEvent', { licenseId: license, usageType: 'api_call' }, busy.data.apiKey.key)).status).toBe(200);
    expect(await platform()).toEqual({ tenants: before.tenants + 2, activeLast30Days: before.activeLast30Days + 1 });
  });
});
