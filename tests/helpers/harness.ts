import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { randomUUID } from 'node:crypto';
import { loadEnv, type Env } from '../../src/env';
import { createLogger, type Logger } from '../../src/lib/logger';
import { closeServices, createServices, prepareData } from '../../src/app';
import { createHttpServer } from '../../src/server/http';
import type { Services } from '../../src/server/services';
import { createApiKey } from '../../src/domain/api-keys/api-keys';
import { createIsolatedDatabase } from './isolated-db';
import { deleteKeys, keysWithPrefix } from '../../src/lib/redis';

export interface CallResult<T = unknown> {
  status: number;
  headers: Headers;
  body: { result?: { data: T }; error?: { message: string; data: { code: string; httpStatus: number; issues?: { path: (string | number)[]; message: string }[]; appCode?: string } } };
  data: T;
}

/**
 * A real Tally API on an ephemeral port, against the run's test database and a Redis key
 * prefix of its own (deleted on close). Requests go over HTTP with plain JSON, like curl.
 */
export class TestApp {
  readonly prefix = `test:${randomUUID()}:`;
  services!: Services;
  server!: Server;
  baseUrl!: string;
  adminKey!: string;

  static async start(overrides: Partial<Record<keyof Env, string>> = {}, options: { logger?: Logger } = {}): Promise<TestApp> {
    const app = new TestApp();
    // Every test client comes from 127.0.0.1: suites that send hundreds of bad keys on purpose
    // (the auth matrix) would be throttled; the throttle's own tests set the limits they test.
    const throttle = { AUTH_FAILURE_LIMIT: '1000000', AUTH_FAILURE_PREFIX_LIMIT: '1000000' };
    const env = loadEnv({ ...process.env, LOG_LEVEL: 'silent', PORT: '0', REDIS_KEY_PREFIX: app.prefix, ...throttle, ...overrides });
    app.services = await createServices(env, options.logger ?? createLogger(env.LOG_LEVEL));
    await prepareData(app.services);
    app.server = createHttpServer(app.services);
    await new Promise<void>((resolve) => app.server.listen(0, '127.0.0.1', resolve));
    app.baseUrl = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
    // live, like the tenants' owner keys: an admin acts in its key's environment (X-Tally-Environment names the other)
    app.adminKey = (await createApiKey(app.services.db.prisma, { tenantId: null, name: 'test admin', role: 'admin', environment: 'live' })).key;
    return app;
  }

  get prisma() {
    return this.services.db.prisma;
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
    await deleteKeys(this.services.redis, await keysWithPrefix(this.services.redis, this.prefix));
    await closeServices(this.services);
  }

  /** POST for mutations, GET with ?input= for queries, exactly as curl would send them. */
  async call<T = any>(
    path: string,
    input: unknown,
    key: string | null,
    options: { method?: 'GET' | 'POST'; headers?: Record<string, string>; rawBody?: string } = {},
  ): Promise<CallResult<T>> {
    const method = options.method ?? 'POST';
    const headers: Record<string, string> = { 'content-type': 'application/json', ...options.headers };
    if (key !== null) headers.authorization = `Bearer ${key}`;
    const url =
      method === 'GET'
        ? `${this.baseUrl}/api/trpc/${path}${input === undefined ? '' : `?input=${encodeURIComponent(JSON.stringify(input))}`}`
        : `${this.baseUrl}/api/trpc/${path}`;
    const response = await fetch(url, {
      method,
      headers,
      body: method === 'POST' ? (options.rawBody ?? JSON.stringify(input ?? {})) : undefined,
    });
    const text = await response.text();
    let body: CallResult<T>['body'];
    try {
      body = JSON.parse(text) as CallResult<T>['body'];
    } catch {
      body = { error: { message: text, data: { code: 'NON_JSON', httpStatus: response.status } } };
    }
    return { status: response.status, headers: response.headers, body, data: body.result?.data as T };
  }

  /** A new tenant with its owner key, through the API. */
  async createTenant(name = `Tenant ${randomUUID().slice(0, 8)}`) {
    const slug = `t-${randomUUID().slice(0, 12)}`;
    const res = await this.call<{ tenant: { id: string }; apiKey: { key: string; id: string } }>(
      'tenants.create',
      { name, slug },
      this.adminKey,
    );
    if (res.status !== 200) throw new Error(`tenants.create failed: ${JSON.stringify(res.body)}`);
    return { tenantId: res.data.tenant.id, ownerKey: res.data.apiKey.key, ownerKeyId: res.data.apiKey.id };
  }

  async createKey(ownerKey: string, role: 'owner' | 'member' | 'ingest' | 'read') {
    const res = await this.call<{ key: string; id: string }>('apiKeys.create', { name: role, role }, ownerKey);
    if (res.status !== 200) throw new Error(`apiKeys.create failed: ${JSON.stringify(res.body)}`);
    return res.data;
  }

  async createLicense(ownerKey: string, input: Record<string, unknown> = {}) {
    const res = await this.call<{ id: string }>('licenses.create', { name: 'License', plan: 'enterprise', ...input }, ownerKey);
    if (res.status !== 200) throw new Error(`licenses.create failed: ${JSON.stringify(res.body)}`);
    return res.data;
  }
}

/**
 * The test file's TestApp, started before its tests and closed after them, on a database of its
 * own when `isolatedDatabase` names one (for files whose jobs work across all licenses): the
 * beforeAll/afterAll pair every integration file used to write. The answer stands for the app
 * once it has started (use it inside hooks and tests, not at the top level of the file).
 */
export function useTestApp(overrides: Partial<Record<keyof Env, string>> = {}, options: { isolatedDatabase?: string; logger?: Logger } = {}): TestApp {
  let app: TestApp | undefined;
  let db: ReturnType<typeof createIsolatedDatabase> | undefined;
  beforeAll(async () => {
    if (options.isolatedDatabase) db = createIsolatedDatabase(options.isolatedDatabase);
    app = await TestApp.start({ ...(db ? { DATABASE_URL: db.url } : {}), ...overrides }, { logger: options.logger });
  }, 180_000);
  afterAll(async () => {
    try {
      await app?.close();
    } finally {
      await db?.drop();
    }
  });
  return new Proxy({} as TestApp, {
    get(_target, key) {
      if (!app) throw new Error('the TestApp is used before its beforeAll started it');
      const value: unknown = Reflect.get(app, key);
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(app) : value;
    },
  });
}
