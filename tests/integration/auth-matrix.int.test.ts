import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { appRouter } from '../../src/server/router';
import type { Meta, TenantRole } from '../../src/server/trpc';
import { useTestApp, type CallResult } from '../helpers/harness';
import Stripe from 'stripe';
import { useFakeStripe, secretKey, webhookSecret } from '../helpers/billing';
import { REST_ROUTES } from '../../src/server/rest/routes';
import { restCall } from '../helpers/rest';

/**
 * Every procedure of the router, enumerated from the router itself: a procedure without a
 * fixture here fails the suite. For each: no key, malformed, unknown and revoked keys are 401;
 * a role the procedure does not allow is 403; every role it allows, and an admin naming the
 * tenant, gets a 200 with valid fixtures; and one cross-tenant case at least (another tenant's
 * ids are 404, a list never shows another tenant's rows, a create lands in the caller's own
 * tenant, a platform procedure stays refused). Tenant A's owner sends `X-Tally-Tenant: <B>` in
 * every cross-tenant call: the header counts for admin keys only.
 *
 * To add a procedure: add an entry to `fixtures` under its path, with `input` (a valid call in
 * tenant A, made once per role, so a call that uses its target up, like a delete, builds a fresh
 * one) and `cross` (one or more of `foreign`, `list`, `lands`, `spares`, `adminOnly`); if it needs rows of
 * a new kind, create them for both tenants in `populate` and add them to `Side`.
 *
 * Environments are kept apart as tenants are: every cross case runs a second time inside tenant
 * A, with A's TEST owner key as the caller and A's LIVE rows as the other side (the test key
 * sends `X-Tally-Environment: live`, which counts for admin keys only; an admin caller names
 * the test environment with it). A live row is then 404, a list never shows one, a create lands
 * in test (`lands` needs `environmentOf` for that), and nothing live changes. A procedure whose
 * rows are not per environment says so with `environments` (its own cross cases for that run).
 * A public procedure (meta scope `public`, only signup.register) reads no key: every caller,
 * with no key, a bad key or any role's key, gets the same success, and its cross case is
 * `public` (what it made belongs to neither tenant, and B is untouched). The suite's app runs
 * with SIGNUP_MODE=open and a sign-up limit it cannot reach.
 */

const WEBHOOK_URL = 'https://93.184.215.14/tally-hook'; // a public address: webhook address rules refuse private ones
const TODAY = new Date().toISOString().slice(0, 10);
const YESTERDAY = new Date(Date.now() - 86_400_000).toISOString().slice(0, 10);
const USAGE_TYPE = 'matrix_t';
/** The end user behind each tenant's event (the same id in both tenants). */
const MATRIX_USER = 'matrix-user';
/** Another end user with an event in each tenant, for calls that remove a user's traces (privacy.eraseUser). */
const ERASABLE_USER = 'matrix-erasable';

/** One tenant and a row of every kind it can own. */
interface Side {
  tenantId: string;
  owner: string;
  license: string;
  /** An event of MATRIX_USER. */
  event: string;
  threshold: string;
  webhook: string;
  overage: string;
  alert: string;
  forecast: string;
  delivery: string;
  readKey: string;
  /** The audit row of the license's creation. */
  audit: string;
}

interface World {
  a: Side;
  b: Side;
  /** Tenant A's test environment: its test owner key and a row of every kind made with it. */
  aTest: Side;
  /** A BullMQ job of tenant A (usage.jobStatus). */
  jobId: string;
  /** A JobRun row (jobs.get). */
  jobRun: string;
}

type Res = CallResult<any>;
type Cross =
  /** Tenant B's ids in an otherwise valid call: 404 (or `expect`), and nothing of B changes. */
  | { kind: 'foreign'; input: (w: World) => unknown; expect?: (res: Res) => void; caller?: 'admin' }
  /** A list: asked with `input(side)` for both sides, it shows A's own row and never a row of B. */
  | { kind: 'list'; input?: (side: Side) => unknown; rows: (data: any) => string[]; mine: (side: Side) => string }
  /** A create without ids: what it made belongs to A (and, in the environment run, to A's test environment). */
  | {
      kind: 'lands';
      tenantOf: (data: any) => Promise<string | null | undefined> | string;
      environmentOf?: (data: any) => Promise<string | null | undefined> | string;
    }
  /** A's own valid call, while B holds the same kind of rows (and the same user id): nothing of B changes. */
  | { kind: 'spares'; input?: (w: World) => unknown }
  /** Admin only: a tenant key naming another tenant is still refused. */
  | { kind: 'adminOnly' }
  /** A public procedure: called with A's key naming B, it makes a tenant of its own, neither A nor B. */
  | { kind: 'public'; tenantOf: (data: any) => string };

interface Fixture {
  /** A valid call in tenant A. Called once per call: calls that use their target up get a fresh one. */
  input: (w: World) => unknown;
  cross: Cross | Cross[];
  /** The cross cases of the environment run, when they differ from `cross`. */
  environments?: Cross | Cross[];
}

// Stripe is the fake one (billing.createCustomer calls it); started before the app so the app points at it.
useFakeStripe();
const app = useTestApp({ SIGNUP_MODE: 'open', SIGNUP_LIMIT: '1000000' });
let world: World;

const foreign = (c: Omit<Extract<Cross, { kind: 'foreign' }>, 'kind'>): Cross => ({ kind: 'foreign', ...c });
const list = (rows: (data: any) => string[], mine: (side: Side) => string, input?: (side: Side) => unknown): Cross => ({ kind: 'list', rows, mine, input });
const ids = (data: any): string[] => data.items.map((i: { id: string }) => i.id);
const adminOnly: Cross = { kind: 'adminOnly' };
const range = { startDate: YESTERDAY, endDate: TODAY };

const freshKey = async (w: World) => (await app.createKey(w.a.owner, 'read')).id;
const freshLicense = async (w: World) => (await app.createLicense(w.a.owner)).id;
const freshWebhook = async (w: World) => (await app.call('webhooks.create', { url: WEBHOOK_URL }, w.a.owner)).data.id as string;
const freshThreshold = async (w: World) =>
  (await app.call('thresholds.create', { licenseId: w.a.license, usageType: `r${randomUUID().slice(0, 8)}`, periodType: 'daily', limitQuantity: 5 }, w.a.owner)).data
    .id as string;
const freshOverage = async (w: World) => (await overageFor(w.a, new Date(Date.now() - Math.floor(Math.random() * 1e12)))).id;

const connectA = async (w: World) => {
  const res = await app.call('billing.connect', { secretKey: secretKey('live'), webhookSecret: webhookSecret() }, w.a.owner);
  expect(res.status).toBe(200);
};
const connectionTenant = async (d: any) => (await app.prisma.billingConnection.findUnique({ where: { id: d.id } }))?.tenantId;
const billingRange = { from: new Date(Date.now() - 86_400_000).toISOString(), to: new Date().toISOString() };

const fixtures: Record<string, Fixture> = {
  // a key connects a Stripe account of its own environment (the environments run calls with A's test key)
  'billing.connect': {
    input: (w) => ({ secretKey: secretKey(w.a === w.aTest ? 'test' : 'live'), webhookSecret: webhookSecret() }),
    cross: { kind: 'lands', tenantOf: connectionTenant, environmentOf: async (d) => (await app.prisma.billingConnection.findUnique({ where: { id: d.id } }))?.mode },
  },
  'billing.disconnect': { input: () => ({}), cross: { kind: 'spares' } },
  'billing.createCustomer': {
    input: async (w) => {
      await connectA(w);
      return { licenseId: await freshLicense(w) };
    },
    cross: foreign({ input: (w) => ({ licenseId: w.b.license }) }),
  },
  'billing.meters.upsert': {
    input: () => ({ usageType: USAGE_TYPE, eventName: 'matrix_events' }),
    cross: { kind: 'lands', tenantOf: async (d) => (await app.prisma.billingMeter.findUnique({ where: { id: d.id } }))?.tenantId, environmentOf: (d) => d.mode },
  },
  'billing.meters.list': { input: () => ({}), cross: { kind: 'spares' } },
  'billing.planPrices.set': { input: () => ({ stripePriceId: 'price_matrix', plan: 'starter' }), cross: { kind: 'spares' } },
  'billing.reportNow': { input: () => ({}), cross: { kind: 'spares' } },
  'billing.health': { input: () => ({}), cross: { kind: 'spares' } },
  'billing.usageSummary': { input: (w) => ({ licenseId: w.a.license }), cross: foreign({ input: (w) => ({ licenseId: w.b.license }) }) },
  'billing.usageReport': { input: (w) => ({ licenseId: w.a.license, ...billingRange }), cross: foreign({ input: (w) => ({ licenseId: w.b.license, ...billingRange }) }) },
  'billing.reconciliation': { input: (w) => ({ licenseId: w.a.license, from: YESTERDAY, to: TODAY }), cross: { kind: 'spares' } },
  'tenants.create': { input: () => ({ name: 'Matrix', slug: `m-${randomUUID().slice(0, 8)}` }), cross: adminOnly },
  'tenants.list': { input: () => ({}), cross: adminOnly },
  'tenants.get': { input: (w) => ({ id: w.a.tenantId }), cross: adminOnly },
  'apiKeys.create': {
    input: () => ({ name: 'matrix', role: 'read' }),
    cross: { kind: 'lands', tenantOf: async (d) => (await app.prisma.apiKey.findUnique({ where: { id: d.id } }))?.tenantId, environmentOf: (d) => d.environment },
    environments: [
      { kind: 'lands', tenantOf: async (d) => (await app.prisma.apiKey.findUnique({ where: { id: d.id } }))?.tenantId, environmentOf: (d) => d.environment },
      // a test key never makes a live key: that would lead from test into live
      foreign({
        input: () => ({ name: 'matrix', role: 'owner', environment: 'live' }),
        expect: (res) => expect([res.status, res.body.error?.data.issues?.[0]?.path]).toEqual([400, ['environment']]),
      }),
    ],
  },
  'apiKeys.list': { input: () => ({}), cross: list(ids, (s) => s.readKey) },
  'apiKeys.me': { input: () => ({}), cross: { kind: 'lands', tenantOf: (d) => d.tenant.id, environmentOf: (d) => d.environment } },
  'apiKeys.revoke': { input: async (w) => ({ id: await freshKey(w) }), cross: foreign({ input: (w) => ({ id: w.b.readKey }) }) },
  'licenses.create': {
    input: () => ({ name: 'matrix' }),
    cross: { kind: 'lands', tenantOf: (d) => d.tenantId, environmentOf: (d) => d.environment },
    environments: [
      { kind: 'lands', tenantOf: (d) => d.tenantId, environmentOf: (d) => d.environment },
      foreign({
        input: () => ({ name: 'matrix', environment: 'live' }),
        expect: (res) => expect([res.status, res.body.error?.data.issues?.[0]?.path]).toEqual([400, ['environment']]),
      }),
    ],
  },
  'licenses.get': { input: (w) => ({ id: w.a.license }), cross: foreign({ input: (w) => ({ id: w.b.license }) }) },
  'licenses.list': { input: () => ({}), cross: list(ids, (s) => s.license, () => ({ limit: 100 })) },
  'licenses.update': {
    input: (w) => ({ id: w.a.license, name: 'License', plan: 'enterprise' }),
    cross: foreign({ input: (w) => ({ id: w.b.license, name: 'x' }) }),
  },
  'licenses.setStatus': {
    input: (w) => ({ id: w.a.license, status: 'ACTIVE' }),
    cross: foreign({ input: (w) => ({ id: w.b.license, status: 'SUSPENDED' }) }),
  },
  'licenses.delete': { input: async (w) => ({ id: await freshLicense(w) }), cross: foreign({ input: (w) => ({ id: w.b.license }) }) },
  'usage.trackEvent': {
    input: (w) => ({ licenseId: w.a.license, usageType: 'matrix' }),
    cross: foreign({ input: (w) => ({ licenseId: w.b.license, usageType: 'matrix' }) }),
  },
  'usage.trackEvents': {
    input: (w) => ({ events: [{ licenseId: w.a.license, usageType: 'matrix', userId: MATRIX_USER }] }),
    cross: [{ kind: 'spares' }, foreign({
      input: (w) => ({ events: [{ licenseId: w.b.license, usageType: 'matrix' }] }),
      // a batch judges each event: the foreign one is refused as not found, nothing is stored
      expect: (res) => {
        expect(res.status).toBe(200);
        expect(res.data).toMatchObject({ accepted: 0, rejected: [expect.objectContaining({ code: 'LICENSE_NOT_FOUND' })] });
      },
    })],
  },
  'usage.current': { input: (w) => ({ licenseId: w.a.license }), cross: foreign({ input: (w) => ({ licenseId: w.b.license }) }) },
  'usage.check': {
    input: (w) => ({ licenseId: w.a.license, usageType: 'matrix', quantity: 1 }),
    cross: foreign({ input: (w) => ({ licenseId: w.b.license, usageType: 'matrix' }) }),
  },
  'usage.recalculateAggregates': {
    input: () => ({ startDate: YESTERDAY, endDate: YESTERDAY }),
    // an admin acting for tenant A cannot recalculate tenant B's license through it
    cross: foreign({ caller: 'admin', input: (w) => ({ licenseId: w.b.license, startDate: YESTERDAY, endDate: YESTERDAY }) }),
  },
  'usage.jobStatus': { input: (w) => ({ jobId: w.jobId }), cross: adminOnly },
  'usage.voidEvents': {
    input: async (w) => {
      const res = await app.call('usage.trackEvent', { licenseId: w.a.license, usageType: 'matrix' }, w.a.owner);
      if (res.status !== 200) throw new Error(`event for usage.voidEvents: ${res.status}`);
      return { eventIds: [res.data.eventId], reason: 'matrix' };
    },
    cross: foreign({
      input: (w) => ({ eventIds: [w.b.event], reason: 'matrix' }),
      // answered per id: another tenant's event is not found, and stays as it was
      expect: (res) => {
        expect(res.status).toBe(200);
        expect(res.data).toMatchObject({ voided: 0, results: [{ eventId: null, status: 'not_found' }] });
      },
    }),
  },
  'analytics.usage': {
    input: (w) => ({ licenseId: w.a.license, ...range, granularity: 'daily' }),
    cross: foreign({ input: (w) => ({ licenseId: w.b.license, ...range, granularity: 'daily' }) }),
  },
  'analytics.breakdown': {
    input: (w) => ({ licenseId: w.a.license, ...range, by: 'platform' }),
    cross: foreign({ input: (w) => ({ licenseId: w.b.license, ...range, by: 'platform' }) }),
  },
  'analytics.topLicenses': {
    input: () => range,
    cross: list((d) => d.items.map((i: { licenseId: string }) => i.licenseId), (s) => s.license, () => ({ ...range, limit: 100 })),
  },
  'analytics.platform': { input: () => ({}), cross: adminOnly },
  'analytics.export': {
    input: (w) => ({ licenseId: w.a.license, ...range }),
    cross: foreign({ input: (w) => ({ licenseId: w.b.license, ...range }) }),
  },
  'analytics.forecastAccuracy': { input: () => ({}), cross: foreign({ input: (w) => ({ licenseId: w.b.license }) }) },
  'forecasts.get': {
    input: (w) => ({ licenseId: w.a.license, usageType: USAGE_TYPE }),
    cross: foreign({ input: (w) => ({ licenseId: w.b.license, usageType: USAGE_TYPE }) }),
  },
  'forecasts.list': { input: () => ({}), cross: list(ids, (s) => s.forecast, () => ({ limit: 100 })) },
  'forecasts.accuracy': { input: () => ({}), cross: foreign({ input: (w) => ({ licenseId: w.b.license }) }) },
  'auditLogs.list': {
    input: () => ({}),
    cross: list(ids, (s) => s.audit, (s) => ({ targetId: s.license, limit: 100 })),
    // the audit log is the tenant's record of its access (keys, refusals), not per environment
    environments: { kind: 'spares' },
  },
  'jobs.list': { input: () => ({}), cross: adminOnly },
  'jobs.get': { input: (w) => ({ id: w.jobRun }), cross: adminOnly },
  'jobs.trigger': { input: () => ({ name: 'usage.partitions.maintain' }), cross: adminOnly },
  'thresholds.create': {
    input: (w) => ({ licenseId: w.a.license, usageType: `m${randomUUID().slice(0, 8)}`, periodType: 'daily', limitQuantity: 10 }),
    cross: foreign({ input: (w) => ({ licenseId: w.b.license, usageType: 'foreign', periodType: 'daily', limitQuantity: 10 }) }),
  },
  'thresholds.list': { input: (w) => ({ licenseId: w.a.license }), cross: list(ids, (s) => s.threshold) },
  'thresholds.update': {
    input: (w) => ({ id: w.a.threshold, limitQuantity: 1000 }),
    cross: foreign({ input: (w) => ({ id: w.b.threshold, limitQuantity: 1 }) }),
  },
  'thresholds.remove': { input: async (w) => ({ id: await freshThreshold(w) }), cross: foreign({ input: (w) => ({ id: w.b.threshold }) }) },
  'thresholds.status': { input: (w) => ({ licenseId: w.a.license }), cross: foreign({ input: (w) => ({ licenseId: w.b.license }) }) },
  'alerts.list': { input: () => ({}), cross: list(ids, (s) => s.alert, () => ({ limit: 100 })) },
  'overages.list': { input: () => ({}), cross: list(ids, (s) => s.overage, () => ({ limit: 100 })) },
  'overages.approve': { input: async (w) => ({ id: await freshOverage(w) }), cross: foreign({ input: (w) => ({ id: w.b.overage }) }) },
  'overages.waive': { input: async (w) => ({ id: await freshOverage(w) }), cross: foreign({ input: (w) => ({ id: w.b.overage }) }) },
  'privacy.eraseUser': {
    input: async (w) => {
      const userId = `e-${randomUUID()}`;
      const res = await app.call('usage.trackEvent', { licenseId: w.a.license, usageType: USAGE_TYPE, userId }, w.a.owner);
      if (res.status !== 200) throw new Error(`event for privacy.eraseUser: ${res.status}`);
      return { userId };
    },
    cross: [foreign({ input: (w) => ({ userId: ERASABLE_USER, licenseId: w.b.license }) }), { kind: 'spares', input: () => ({ userId: ERASABLE_USER }) }],
  },
  'privacy.exportUser': {
    input: () => ({ userId: MATRIX_USER }),
    cross: list((d) => d.licenses.flatMap((l: { events: { id: string }[] }) => l.events.map((e) => e.id)), (s) => s.event, () => ({ userId: MATRIX_USER })),
  },
  'webhooks.create': {
    input: () => ({ url: WEBHOOK_URL }),
    cross: {
      kind: 'lands',
      tenantOf: async (d) => (await app.prisma.webhookEndpoint.findUnique({ where: { id: d.id } }))?.tenantId,
      environmentOf: async (d) => (await app.prisma.webhookEndpoint.findUnique({ where: { id: d.id } }))?.environment,
    },
  },
  'signup.register': {
    input: () => ({ email: `m-${randomUUID()}@example.com`, name: 'Matrix Dev', organization: 'Matrix Org', environment: 'test' }),
    cross: { kind: 'public', tenantOf: (d) => d.tenant.id },
  },
  'webhooks.list': { input: () => ({}), cross: list(ids, (s) => s.webhook) },
  'webhooks.update': {
    input: (w) => ({ id: w.a.webhook, enabled: true }),
    cross: foreign({ input: (w) => ({ id: w.b.webhook, enabled: false }) }),
  },
  'webhooks.delete': { input: async (w) => ({ id: await freshWebhook(w) }), cross: foreign({ input: (w) => ({ id: w.b.webhook }) }) },
  'webhooks.rotateSecret': { input: (w) => ({ id: w.a.webhook }), cross: foreign({ input: (w) => ({ id: w.b.webhook }) }) },
  'webhooks.deliveries': {
    input: () => ({}),
    cross: [list(ids, (s) => s.delivery, () => ({ limit: 100 })), foreign({ input: (w) => ({ endpointId: w.b.webhook }) })],
  },
};

const procedures = Object.entries(appRouter._def.procedures as unknown as Record<string, { _def: { type: string; meta?: Meta } }>).map(
  ([path, p]) => ({ path, type: p._def.type, meta: p._def.meta! }),
);
type Procedure = (typeof procedures)[number];
const TENANT_ROLES: TenantRole[] = ['owner', 'member', 'ingest', 'read'];
const ALL_ROLES = ['admin', ...TENANT_ROLES] as const;
/** The roles the code lets in: admin always, tenant roles unless the procedure is platform-only; a public one everyone. */
const allowedRoles = (p: Procedure): string[] =>
  p.meta.scope === 'public' ? [...ALL_ROLES] : ['admin', ...(p.meta.scope === 'platform' ? [] : p.meta.roles)];

let keys: Record<TenantRole, string>;
let revokedKey: string;

function overageFor(side: Side, periodStart: Date) {
  return app.prisma.usageOverage.create({
    data: {
      tenantId: side.tenantId, licenseId: side.license, thresholdId: side.threshold, usageType: USAGE_TYPE, periodType: 'monthly',
      periodStart, periodEnd: new Date(periodStart.getTime() + 86_400_000), quantity: '1', rateCents: 1, feeCents: 1n,
    },
  });
}

/** A tenant (or, given its owner key, one environment of it) with one row of every kind, made through the API where the API makes them. */
async function populate(owner?: { tenantId: string; ownerKey: string }): Promise<Side> {
  const t = owner ?? (await app.createTenant());
  const license = (await app.createLicense(t.ownerKey)).id;
  const tracked = await app.call('usage.trackEvent', { licenseId: license, usageType: USAGE_TYPE, userId: MATRIX_USER, ipAddress: '203.0.113.9' }, t.ownerKey);
  const erasable = await app.call('usage.trackEvent', { licenseId: license, usageType: USAGE_TYPE, userId: ERASABLE_USER, ipAddress: '203.0.113.10' }, t.ownerKey);
  expect([tracked.status, erasable.status]).toEqual([200, 200]);
  const threshold = await app.call('thresholds.create', { licenseId: license, usageType: USAGE_TYPE, periodType: 'monthly', limitQuantity: 1000 }, t.ownerKey);
  const webhook = await app.call('webhooks.create', { url: WEBHOOK_URL }, t.ownerKey);
  expect([threshold.status, webhook.status]).toEqual([200, 200]);
  const side = {
    tenantId: t.tenantId,
    owner: t.ownerKey,
    license,
    event: tracked.data.eventId as string,
    threshold: threshold.data.id as string,
    webhook: webhook.data.id as string,
    readKey: (await app.createKey(t.ownerKey, 'read')).id,
  } as Side;
  const now = new Date();
  const monthEnd = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1));
  side.overage = (await overageFor(side, new Date(Date.UTC(2020, 0, 1)))).id;
  const period = { usageType: USAGE_TYPE, periodType: 'monthly' as const, periodStart: new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1)), periodEnd: monthEnd };
  side.alert = (
    await app.prisma.usageAlert.create({
      data: { tenantId: side.tenantId, licenseId: license, thresholdId: side.threshold, ...period, level: 50, limitQuantity: '1000', usedQuantity: '500', detectedBy: 'matrix' },
    })
  ).id;
  side.forecast = (
    await app.prisma.usageForecast.create({
      data: {
        tenantId: side.tenantId, licenseId: license, ...period, timezone: 'UTC', thresholdId: side.threshold, limitQuantity: '1000',
        usedSoFar: '1', predictedTotal: '2', lowerBound: '1', upperBound: '3', method: 'run_rate', historyDays: 7, asOf: now, generatedAt: now,
      },
    })
  ).id;
  side.delivery = (
    await app.prisma.webhookDelivery.create({
      // FAILED, not PENDING: test files share the database, and another file's webhook worker
      // requeues every PENDING delivery it finds (as a deployment's should), which would try
      // this one mid-test and change what the matrix compares
      data: { tenantId: side.tenantId, endpointId: side.webhook, eventId: randomUUID(), eventType: 'usage.threshold.crossed', payload: { matrix: true }, status: 'FAILED' },
    })
  ).id;
  side.audit = (await app.prisma.auditLog.findFirstOrThrow({ where: { tenantId: side.tenantId, action: 'licenses.create', targetId: license } })).id;
  return side;
}

/**
 * Everything tenant B holds (or, with `environment`, everything of that environment of the
 * tenant), to show that a cross-tenant (cross-environment) call changed none of it. Key usage
 * counters are left out of an environment's holdings: the tenant's own calls flush them.
 */
async function holdings(tenantId: string, environment?: 'live' | 'test') {
  const inEnvironment = { where: { tenantId, ...(environment ? { environment } : {}) } };
  const licenseIds = environment ? (await app.prisma.license.findMany({ ...inEnvironment, select: { id: true } })).map((l) => l.id) : null;
  const owned = { where: { tenantId, ...(licenseIds ? { licenseId: { in: licenseIds } } : {}) } };
  const [licenses, apiKeys, thresholds, webhooks, overages, alerts, forecasts, deliveries, events] = await Promise.all([
    app.prisma.license.findMany(inEnvironment),
    // usage bookkeeping, written by the authenticator's periodic flush whenever it comes, is not a change
    app.prisma.apiKey.findMany({ ...inEnvironment, omit: { lastUsedAt: true, requestCount: true, ...(environment ? { sdkVersion: true } : {}) } }),
    app.prisma.usageThreshold.findMany(owned),
    app.prisma.webhookEndpoint.findMany(inEnvironment),
    app.prisma.usageOverage.findMany(owned),
    app.prisma.usageAlert.findMany(owned),
    app.prisma.usageForecast.findMany(owned),
    app.prisma.webhookDelivery.findMany({ where: { tenantId, ...(environment ? { endpoint: { environment } } : {}) } }),
    app.prisma.usageEvent.findMany({ ...owned, select: { id: true, userId: true, ipAddress: true, properties: true, quantity: true } }),
  ]);
  const byId = <T extends { id: string }>(rows: T[]) => [...rows].sort((x, y) => (x.id < y.id ? -1 : 1));
  return JSON.parse(
    JSON.stringify(
      { licenses: byId(licenses), apiKeys: byId(apiKeys), thresholds: byId(thresholds), webhooks: byId(webhooks), overages: byId(overages), alerts: byId(alerts), forecasts: byId(forecasts), deliveries: byId(deliveries), events: byId(events) },
      (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v),
    ),
  ) as unknown;
}

beforeAll(async () => {
  const a = await populate();
  const b = await populate();
  // A's test environment: a test owner key (a live owner may make test keys, never the reverse) and its rows
  const testOwner = await app.call('apiKeys.create', { name: 'test owner', role: 'owner', environment: 'test' }, a.owner);
  expect([testOwner.status, testOwner.data?.environment]).toEqual([200, 'test']);
  const aTest = await populate({ tenantId: a.tenantId, ownerKey: testOwner.data.key });
  keys = {
    owner: a.owner,
    member: (await app.createKey(a.owner, 'member')).key,
    ingest: (await app.createKey(a.owner, 'ingest')).key,
    read: (await app.createKey(a.owner, 'read')).key,
  };
  const revoked = await app.createKey(a.owner, 'owner');
  await app.call('apiKeys.revoke', { id: revoked.id }, a.owner);
  revokedKey = revoked.key;
  const job = await app.call('usage.recalculateAggregates', { startDate: YESTERDAY, endDate: YESTERDAY }, app.adminKey, { headers: { 'x-tally-tenant': a.tenantId } });
  expect(job.status).toBe(200);
  const jobRun = await app.prisma.jobRun.create({ data: { jobId: `matrix:${randomUUID()}`, name: 'usage.partitions.maintain', status: 'completed' } });
  world = { a, b, aTest, jobId: job.data.jobId, jobRun: jobRun.id };
});

const call = (p: Procedure, input: unknown, key: string | null, headers?: Record<string, string>) =>
  app.call(p.path, input, key, { method: p.type === 'query' ? 'GET' : 'POST', headers });
const asAdminOf = (tenantId: string) => ({ 'x-tally-tenant': tenantId });

it('has a fixture for every procedure of the router, and none for a procedure it does not have', () => {
  const paths = procedures.map((p) => p.path);
  expect(paths.filter((path) => !fixtures[path])).toEqual([]);
  expect(Object.keys(fixtures).filter((path) => !paths.includes(path))).toEqual([]);
});

/**
 * The role table of the README ("## API keys and roles"): a row lists procedures (`x.y`, or `x.*`
 * for all of x) and marks the roles that may call them.
 */
function readmeRoleTable(): Map<string, Set<string>> {
  const readme = readFileSync(path.join(__dirname, '..', '..', 'README.md'), 'utf8');
  const section = readme.split(/^## /m).find((s) => s.startsWith('API keys and roles\n'));
  if (!section) throw new Error('README has no "## API keys and roles" section');
  const lines = section.split('\n').filter((l) => l.startsWith('|'));
  const cells = (line: string) => line.slice(1, line.lastIndexOf('|')).split('|').map((c) => c.trim());
  const header = lines.findIndex((l) => cells(l)[0] === 'procedures');
  if (header < 0) throw new Error('README role table (first column "procedures") not found');
  const roles = cells(lines[header]!).slice(1);
  expect(roles).toEqual([...ALL_ROLES]);
  const table = new Map<string, Set<string>>();
  for (const line of lines.slice(header + 2)) {
    const [names, ...marks] = cells(line);
    const allowed = new Set(roles.filter((_, i) => marks[i] === '✓'));
    expect([line, marks.every((m) => m === '✓' || m === '')]).toEqual([line, true]);
    // nested routers too: `billing.meters.upsert`
    for (const [, name] of names!.matchAll(/`([A-Za-z]+(?:\.[A-Za-z]+)*\.(?:[A-Za-z]+|\*))`/g)) {
      const matching = name!.endsWith('.*') ? procedures.filter((p) => p.path.startsWith(name!.slice(0, -1))) : procedures.filter((p) => p.path === name);
      expect([name, matching.length > 0]).toEqual([name, true]); // the table names no procedure the router lacks
      for (const p of matching) {
        expect([p.path, table.has(p.path)]).toEqual([p.path, false]); // one row per procedure
        table.set(p.path, allowed);
      }
    }
  }
  return table;
}

it("says in the README's role table exactly what every procedure's meta allows", () => {
  const table = readmeRoleTable();
  const disagreements = procedures
    .map((p) => ({ path: p.path, code: allowedRoles(p).sort(), readme: [...(table.get(p.path) ?? [])].sort() }))
    .filter((d) => d.code.join() !== d.readme.join());
  expect(disagreements).toEqual([]);
  for (const p of procedures) if (p.meta.scope === 'platform') expect([p.path, p.meta.roles]).toEqual([p.path, []]);
});

describe.each(procedures)('$path', (p) => {
  const fixture = () => fixtures[p.path]!;
  const input = () => Promise.resolve(fixture().input(world));

  it('refuses a missing, malformed, unknown or revoked key with 401 (a public procedure reads no key: 200 for each)', async () => {
    const unknownKey = `tk_live_${'Z'.repeat(24)}`;
    if (p.meta.scope === 'public') {
      for (const key of [null, 'not-a-key', unknownKey, revokedKey]) {
        const res = await call(p, await input(), key);
        expect([String(key), res.status, res.body.error?.message]).toEqual([String(key), 200, undefined]);
      }
      const basic = await call(p, await input(), null, { authorization: `Basic ${Buffer.from('a:b').toString('base64')}` });
      expect(basic.status).toBe(200);
      return;
    }
    for (const key of [null, 'not-a-key', unknownKey, revokedKey]) {
      const res = await call(p, await input(), key);
      expect([String(key), res.status]).toEqual([String(key), 401]);
    }
    const basic = await call(p, await input(), null, { authorization: `Basic ${Buffer.from('a:b').toString('base64')}` });
    expect(basic.status).toBe(401);
  });

  it('answers every role its meta allows with a success, and every other role with 403', async () => {
    const allowed = allowedRoles(p);
    for (const role of TENANT_ROLES) {
      const res = await call(p, await input(), keys[role]);
      if (allowed.includes(role)) expect([role, res.status, res.body.error?.message]).toEqual([role, 200, undefined]);
      else expect([role, res.status]).toEqual([role, 403]);
    }
  });

  it('lets an admin in (naming the tenant for tenant-scoped procedures)', async () => {
    const headers = p.meta.scope === 'platform' ? undefined : asAdminOf(world.a.tenantId);
    const res = await call(p, await input(), app.adminKey, headers);
    expect([res.status, res.body.error?.message]).toEqual([200, undefined]);
    if (p.meta.scope === 'tenant') {
      expect((await call(p, await input(), app.adminKey)).status).toBe(400);
      expect((await call(p, await input(), app.adminKey, asAdminOf(randomUUID()))).status).toBe(404);
    }
  });

  const crosses = [fixtures[p.path]?.cross ?? []].flat();
  it.each(crosses.map((cross) => ({ cross, kind: cross.kind })))('keeps tenants apart ($kind)', async ({ cross }) => {
    const { a, b } = world;
    await runCross(p, cross, {
      world,
      // sent with A's owner key: it must not take A into B
      intoB: asAdminOf(b.tenantId),
      adminOfA: asAdminOf(a.tenantId),
      holdingsOfB: () => holdings(b.tenantId),
      landed: async (c, data) => expect(await c.tenantOf(data)).toBe(a.tenantId),
    });
  });

  const environmentCrosses = [fixtures[p.path]?.environments ?? fixtures[p.path]?.cross ?? []].flat();
  it.each(environmentCrosses.map((cross) => ({ cross, kind: cross.kind })))('keeps environments apart ($kind)', async ({ cross }) => {
    const { a, aTest } = world;
    // A's test side calls; A's live side is the other one, whose rows it must never reach
    await runCross(p, cross, {
      world: { ...world, a: aTest, b: a },
      // sent with the test owner key: the header counts for admin keys only
      intoB: { ...asAdminOf(a.tenantId), 'x-tally-environment': 'live' },
      adminOfA: { ...asAdminOf(a.tenantId), 'x-tally-environment': 'test' },
      holdingsOfB: () => holdings(a.tenantId, 'live'),
      landed: async (c, data) => {
        expect(await c.tenantOf(data)).toBe(a.tenantId);
        expect(c.environmentOf).toBeDefined(); // a create's fixture says how to find its environment
        expect(await c.environmentOf!(data)).toBe('test');
      },
    });
  });
});

interface CrossRun {
  /** `a` calls, `b` is the side it must not reach. */
  world: World;
  /** The headers of A's owner key's calls (they name B: they must not take A there). */
  intoB: Record<string, string>;
  /** The headers of an admin acting for A. */
  adminOfA: Record<string, string>;
  holdingsOfB: () => Promise<unknown>;
  landed: (cross: Extract<Cross, { kind: 'lands' }>, data: any) => Promise<void>;
}

async function runCross(p: Procedure, cross: Cross, run: CrossRun): Promise<void> {
  const { world, intoB } = run;
  const { a, b } = world;
  const input = () => Promise.resolve(fixtures[p.path]!.input(world));
  // key use from the setup is written by a timer; write it now, not between the two reads
  await app.services.authenticator.flushUsage();
  const before = await run.holdingsOfB();
  switch (cross.kind) {
    case 'foreign': {
      const res =
        cross.caller === 'admin'
          ? await call(p, cross.input(world), app.adminKey, run.adminOfA)
          : await call(p, cross.input(world), a.owner, intoB);
      if (cross.expect) cross.expect(res);
      else expect([res.status, res.body.error?.data.code]).toEqual([404, 'NOT_FOUND']);
      break;
    }
    case 'list': {
      const bRows = new Set(Object.values(b));
      const own = await call(p, cross.input?.(a) ?? {}, a.owner, intoB);
      expect(own.status).toBe(200);
      expect(cross.rows(own.data)).toContain(cross.mine(a));
      expect(cross.rows(own.data).filter((id) => bRows.has(id))).toEqual([]);
      const aimed = await call(p, cross.input?.(b) ?? {}, a.owner, intoB);
      expect([200, 404]).toContain(aimed.status);
      if (aimed.status === 200) expect(cross.rows(aimed.data).filter((id) => bRows.has(id))).toEqual([]);
      break;
    }
    case 'lands': {
      const res = await call(p, await input(), a.owner, intoB);
      expect([res.status, res.body.error?.message]).toEqual([200, undefined]);
      await run.landed(cross, res.data);
      break;
    }
    case 'spares': {
      const res = await call(p, cross.input ? cross.input(world) : await input(), a.owner, intoB);
      expect([res.status, res.body.error?.message]).toEqual([200, undefined]);
      break;
    }
    case 'adminOnly': {
      const res = await call(p, await input(), a.owner, intoB);
      expect(res.status).toBe(403);
      break;
    }
    case 'public': {
      const res = await call(p, await input(), a.owner, intoB);
      expect(res.status).toBe(200);
      expect([a.tenantId, b.tenantId]).not.toContain(cross.tenantOf(res.data));
      expect(await app.prisma.tenant.count({ where: { id: cross.tenantOf(res.data) } })).toBe(1);
      break;
    }
  }
  expect(await run.holdingsOfB()).toEqual(before);
}

describe('owner work', () => {
  it("refuses a member's change of a license's plan, billing anchor or Stripe customer with 403 naming the field, and writes nothing", async () => {
    const { a } = world;
    const license = (await app.createLicense(a.owner, { plan: 'starter' })).id;
    const stored = async () => app.prisma.license.findUniqueOrThrow({ where: { id: license }, include: { plan: true } });
    const before = await stored();
    for (const [field, value] of [
      ['plan', 'vip_founder'],
      ['billingAnchor', new Date().toISOString()],
      ['stripeCustomerId', 'cus_Matrix1'],
    ] as const) {
      const res = await app.call('licenses.update', { id: license, [field]: value }, keys.member);
      expect([field, res.status, res.body.error?.message]).toEqual([field, 403, `only owners may change a license's ${field}`]);
      expect(res.body.error?.data.issues).toEqual([expect.objectContaining({ path: [field] })]);
    }
    const mixed = await app.call('licenses.update', { id: license, name: 'renamed', plan: 'byok' }, keys.member);
    expect(mixed.status).toBe(403);
    expect(await stored()).toEqual(before);

    // the values it already has are not a change; everything else about a license is member work
    const same = await app.call('licenses.update', { id: license, name: 'renamed', plan: 'starter', billingAnchor: before.billingAnchor.toISOString() }, keys.member);
    expect([same.status, same.data?.plan, same.data?.name]).toEqual([200, 'starter', 'renamed']);
    const byOwner = await app.call('licenses.update', { id: license, plan: 'vip_founder', stripeCustomerId: 'cus_Matrix1' }, a.owner);
    expect([byOwner.status, byOwner.data?.plan]).toEqual([200, 'vip_founder']);
  });

  it("refuses a member's new license on a plan other than the default, or with billing fields, and creates nothing", async () => {
    const count = () => app.prisma.license.count({ where: { tenantId: world.a.tenantId } });
    const before = await count();
    for (const input of [{ plan: 'vip_founder' }, { plan: 'starter' }, { billingAnchor: new Date().toISOString() }, { stripeCustomerId: 'cus_Matrix2' }]) {
      const res = await app.call('licenses.create', { name: 'by member', ...input }, keys.member);
      expect([input, res.status, res.body.error?.message]).toEqual([input, 403, `only owners may change a license's ${Object.keys(input)[0]}`]);
    }
    expect(await count()).toBe(before);
    const plain = await app.call('licenses.create', { name: 'by member' }, keys.member);
    const trial = await app.call('licenses.create', { name: 'by member', plan: 'trial' }, keys.member);
    expect([plain.status, plain.data?.plan, trial.status, trial.data?.plan]).toEqual([200, 'trial', 200, 'trial']);
    const owned = await app.call('licenses.create', { name: 'by owner', plan: 'vip_founder' }, world.a.owner);
    expect([owned.status, owned.data?.plan]).toEqual([200, 'vip_founder']);
  });

  it('shows API keys, webhooks and their deliveries to owners only', async () => {
    for (const path of ['apiKeys.list', 'webhooks.list', 'webhooks.deliveries']) {
      for (const role of ['member', 'read', 'ingest'] as const) {
        const res = await app.call(path, {}, keys[role], { method: 'GET' });
        expect([path, role, res.status, res.data]).toEqual([path, role, 403, undefined]);
      }
      expect([path, (await app.call(path, {}, keys.owner, { method: 'GET' })).status]).toEqual([path, 200]);
    }
  });
});

it("never shows one tenant another tenant's audit log", async () => {
  const { a, b } = world;
  await app.call('licenses.update', { id: b.license, name: 'License' }, b.owner);
  const res = await app.call('auditLogs.list', { targetId: b.license }, a.owner, { method: 'GET' });
  expect(res.status).toBe(200);
  expect(res.data.items).toEqual([]);
  const own = await app.call('auditLogs.list', { targetId: b.license }, b.owner, { method: 'GET' });
  expect(own.data.items.length).toBeGreaterThan(0);
});

/**
 * The doors outside tRPC (the export routes and the queue dashboard) pass the same access
 * check as every procedure (src/server/access.ts): the same answers for the same callers.
 */
describe('the export routes and the queue dashboard', () => {
  const get = async (path: string, key: string | null, headers: Record<string, string> = {}) => {
    const res = await fetch(`${app.baseUrl}${path}`, { headers: { ...(key ? { authorization: `Bearer ${key}` } : {}), ...headers } });
    const body = await res.text();
    return { status: res.status, body, headers: res.headers };
  };
  const exportOf = (licenseId: string) => `/api/export/events?format=csv&licenseId=${licenseId}&startDate=${YESTERDAY}&endDate=${TODAY}`;

  it('exports for the roles analytics.export allows, 403 for the others, 401 without a valid key', async () => {
    for (const role of TENANT_ROLES) {
      const res = await get(exportOf(world.a.license), keys[role]);
      expect([role, res.status]).toEqual([role, ['owner', 'member', 'read'].includes(role) ? 200 : 403]);
    }
    for (const key of [null, 'nope', `tk_live_${'x'.repeat(24)}`, revokedKey]) expect((await get(exportOf(world.a.license), key)).status).toBe(401);
  });

  it("answers another tenant's license 404, and lets an admin in only naming a tenant that exists", async () => {
    expect((await get(exportOf(world.b.license), world.a.owner, asAdminOf(world.b.tenantId))).status).toBe(404);
    expect((await get(exportOf(world.a.license), app.adminKey)).status).toBe(400);
    expect((await get(exportOf(world.a.license), app.adminKey, asAdminOf(randomUUID()))).status).toBe(404);
    expect((await get(exportOf(world.a.license), app.adminKey, asAdminOf('not-a-uuid'))).status).toBe(404);
    const admitted = await get(exportOf(world.a.license), app.adminKey, asAdminOf(world.a.tenantId));
    expect(admitted.status).toBe(200);
    expect(admitted.body.split('\n')[0]).toMatch(/^id,/);
  });

  it('serves the queue dashboard to admins only: 401 with a Basic challenge without a valid key, 403 for every tenant role', async () => {
    const none = await get('/admin/queues', null);
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toMatch(/^Basic /);
    expect((await get('/admin/queues', revokedKey)).status).toBe(401);
    for (const role of TENANT_ROLES) expect([role, (await get('/admin/queues', keys[role])).status]).toEqual([role, 403]);
    expect((await get('/admin/queues', app.adminKey)).status).toBe(200);
    const basic = Buffer.from(`admin:${app.adminKey}`).toString('base64');
    expect((await get('/admin/queues', null, { authorization: `Basic ${basic}` })).status).toBe(200);
  });

  it('serves the web console (/dashboard) alike to every caller, key or none: static files, never API data', async () => {
    // 200 with the bundle, 503 saying it is not built when this checkout has none: the same either way
    for (const path of ['/dashboard/', `/dashboard/licenses/${world.a.license}`, '/dashboard/api/trpc/licenses.list']) {
      const anonymous = await get(path, null);
      expect([path, [200, 503].includes(anonymous.status)]).toEqual([path, true]);
      for (const key of [...TENANT_ROLES.map((r) => keys[r]), app.adminKey, 'nope', revokedKey]) {
        const res = await get(path, key, asAdminOf(world.a.tenantId));
        expect([path, res.status, res.body]).toEqual([path, anonymous.status, anonymous.body]);
      }
      expect([path, anonymous.body.includes(world.a.license) || anonymous.body.includes(world.a.tenantId)]).toEqual([path, false]);
    }
  });
});

/**
 * POST /api/stripe/webhook/:tenantId is public (Stripe holds none of our keys) and guarded by
 * the Stripe signature of the path tenant's own webhook secret: no signature, a bad one, or
 * another tenant's secret is a 400 and writes nothing, whatever API key or X-Tally-Tenant comes
 * along; only the path tenant's own secret gets in, and its event lands in that tenant alone.
 */
describe('the Stripe webhook', () => {
  const hook = (tenantId: string) => `${app.baseUrl}/api/stripe/webhook/${tenantId}`;
  const signed = (payload: string, secret: string, timestamp = Math.floor(Date.now() / 1000)) =>
    Stripe.webhooks.generateTestHeaderString({ payload, secret, timestamp });
  const post = async (tenantId: string, payload: string, headers: Record<string, string>) => {
    const res = await fetch(hook(tenantId), { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: payload });
    return { status: res.status, body: await res.text() };
  };
  const recorded = (tenantId: string) => app.prisma.stripeWebhookEvent.count({ where: { tenantId } });

  it('refuses unsigned, badly signed and other-tenant-signed deliveries with 400 for every caller, writing nothing; the own secret gets in', async () => {
    const { a, b } = world;
    const secretA = webhookSecret();
    const secretB = webhookSecret();
    for (const [side, secret] of [[a, secretA], [b, secretB]] as const) {
      expect((await app.call('billing.connect', { secretKey: secretKey('live'), webhookSecret: secret }, side.owner)).status).toBe(200);
    }
    // a subscription event for tenant A's customer: if it got in, the license's status would change
    const customer = `cus_${randomUUID().replace(/-/g, '').slice(0, 14)}`;
    const license = (await app.createLicense(a.owner, { stripeCustomerId: customer })).id;
    const payload = JSON.stringify({
      id: `evt_${randomUUID().replace(/-/g, '')}`, object: 'event', type: 'customer.subscription.deleted', livemode: true,
      data: { object: { customer, status: 'canceled', items: { data: [] } } },
    });
    const before = { a: await recorded(a.tenantId), b: await recorded(b.tenantId) };
    const callers: Record<string, string>[] = [
      {},
      ...[...TENANT_ROLES.map((r) => keys[r]), a.owner, b.owner, revokedKey, 'nope'].map((k) => ({ authorization: `Bearer ${k}` })),
      { authorization: `Bearer ${app.adminKey}`, 'x-tally-tenant': a.tenantId },
    ];
    const signatures: [string, Record<string, string>][] = [
      ['none', {}],
      ['garbage', { 'stripe-signature': 'garbage' }],
      ['empty v1', { 'stripe-signature': `t=${Math.floor(Date.now() / 1000)},v1=` }],
      ['random secret', { 'stripe-signature': signed(payload, webhookSecret()) }],
      ["tenant B's secret", { 'stripe-signature': signed(payload, secretB) }],
      ['stale', { 'stripe-signature': signed(payload, secretA, Math.floor(Date.now() / 1000) - 301) }],
      ['other body', { 'stripe-signature': signed(`${payload} `, secretA) }],
    ];
    for (const caller of callers) {
      for (const [name, signature] of signatures) {
        const res = await post(a.tenantId, payload, { ...caller, ...signature });
        expect([name, res.status]).toEqual([name, 400]);
        expect(JSON.parse(res.body).error.message).toEqual(expect.any(String));
      }
      // A's secret on B's path: B does not take it either
      const crossed = await post(b.tenantId, payload, { ...caller, 'stripe-signature': signed(payload, secretA) });
      expect(crossed.status).toBe(400);
    }
    expect({ a: await recorded(a.tenantId), b: await recorded(b.tenantId) }).toEqual(before);
    expect((await app.prisma.license.findUniqueOrThrow({ where: { id: license } })).status).toBe('ACTIVE');

    // no API key at all, the tenant's own secret: in, in tenant A only
    const own = await post(a.tenantId, payload, { 'stripe-signature': signed(payload, secretA) });
    expect([own.status, JSON.parse(own.body).outcome]).toEqual([200, 'license_updated']);
    expect({ a: await recorded(a.tenantId), b: await recorded(b.tenantId) }).toEqual({ a: before.a + 1, b: before.b });
    expect((await app.prisma.license.findUniqueOrThrow({ where: { id: license } })).status).toBe('EXPIRED');
  });
});

/**
 * The REST face (/api/v1): every route of its route table, derived from the table (a new route
 * is checked here as soon as it exists), with its procedure's fixture sent as REST: the same
 * 401s, 403s, admin rules and tenant isolation as the procedure it calls.
 */
describe('the REST face', () => {
  it('serves only procedures this matrix has fixtures for', () => {
    expect(REST_ROUTES.filter((r) => !fixtures[r.procedure]).map((r) => r.procedure)).toEqual([]);
  });

  describe.each(REST_ROUTES.map((route) => ({ route, name: `${route.method} /api/v1${route.path}` })))('$name', ({ route }) => {
    const p = procedures.find((x) => x.path === route.procedure)!;
    const input = () => Promise.resolve(fixtures[route.procedure]!.input(world));
    const ok = route.status ?? 200;
    const rest = (body: unknown, key: string | null, headers?: Record<string, string>) => restCall(app, route, body, key, headers);

    it('refuses a missing, malformed, unknown or revoked key with 401', async () => {
      for (const key of [null, 'not-a-key', `tk_live_${'Z'.repeat(24)}`, revokedKey]) {
        const res = await rest(await input(), key);
        expect([String(key), res.status, res.body.error?.code]).toEqual([String(key), 401, 'UNAUTHORIZED']);
      }
      const basic = await rest(await input(), null, { authorization: `Basic ${Buffer.from('a:b').toString('base64')}` });
      expect(basic.status).toBe(401);
    });

    it("answers every role the procedure's meta allows with a success, and every other role with 403", async () => {
      for (const role of TENANT_ROLES) {
        const res = await rest(await input(), keys[role]);
        if (allowedRoles(p).includes(role)) expect([role, res.status, res.body.error?.message]).toEqual([role, ok, undefined]);
        else expect([role, res.status, res.body.error?.code]).toEqual([role, 403, 'FORBIDDEN']);
      }
    });

    it('lets an admin in naming the tenant, and refuses one naming none (400) or an unknown one (404)', async () => {
      const res = await rest(await input(), app.adminKey, p.meta.scope === 'platform' ? undefined : asAdminOf(world.a.tenantId));
      expect([res.status, res.body.error?.message]).toEqual([ok, undefined]);
      if (p.meta.scope === 'tenant') {
        expect((await rest(await input(), app.adminKey)).status).toBe(400);
        expect((await rest(await input(), app.adminKey, asAdminOf(randomUUID()))).status).toBe(404);
      }
    });

    const crosses = [fixtures[route.procedure]?.cross ?? []].flat();
    it.each(crosses.map((cross) => ({ cross, kind: cross.kind })))('keeps tenants apart ($kind)', async ({ cross }) => {
      const { a, b } = world;
      const intoB = asAdminOf(b.tenantId); // sent with A's owner key: it must not take A into B
      // B's key use from the setup is written by a timer; write it now, not between the two reads
      await app.services.authenticator.flushUsage();
      const before = await holdings(b.tenantId);
      switch (cross.kind) {
        case 'foreign': {
          const res =
            cross.caller === 'admin' ? await rest(cross.input(world), app.adminKey, asAdminOf(a.tenantId)) : await rest(cross.input(world), a.owner, intoB);
          if (cross.expect) cross.expect(res as unknown as Res);
          else expect([res.status, res.body.error?.code]).toEqual([404, 'NOT_FOUND']);
          break;
        }
        case 'list': {
          const bRows = new Set(Object.values(b));
          const own = await rest(cross.input?.(a) ?? {}, a.owner, intoB);
          expect(own.status).toBe(200);
          expect(cross.rows(own.data)).toContain(cross.mine(a));
          expect(cross.rows(own.data).filter((id) => bRows.has(id))).toEqual([]);
          const aimed = await rest(cross.input?.(b) ?? {}, a.owner, intoB);
          expect([200, 404]).toContain(aimed.status);
          if (aimed.status === 200) expect(cross.rows(aimed.data).filter((id) => bRows.has(id))).toEqual([]);
          break;
        }
        case 'lands': {
          const res = await rest(await input(), a.owner, intoB);
          expect(res.status).toBe(ok);
          expect(await cross.tenantOf(res.data)).toBe(a.tenantId);
          break;
        }
        case 'spares': {
          const res = await rest(cross.input ? cross.input(world) : await input(), a.owner, intoB);
          expect([res.status, res.body.error?.message]).toEqual([ok, undefined]);
          break;
        }
        case 'adminOnly': {
          expect((await rest(await input(), a.owner, intoB)).status).toBe(403);
          break;
        }
      }
      expect(await holdings(b.tenantId)).toEqual(before);
    });
  });
});
