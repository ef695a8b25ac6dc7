import { useTestApp } from '../helpers/harness';
import { readScoreboard, scoreboardChanges } from '../helpers/scoreboard';

/**
 * Text PostgreSQL cannot hold (NUL, unpaired surrogates) and instants timestamptz cannot take
 * (year 0, past 9999) were passed to the database and answered 500 with Prisma's message (found
 * by the fuzz suite). Each is a 400 naming the field, and nothing is written; the values just
 * inside are accepted.
 */
const app = useTestApp({}, { isolatedDatabase: 'unstorable' });
let tenantId: string;
let licenseId: string;
let webhookId: string;

beforeAll(async () => {
  const tenant = await app.createTenant();
  tenantId = tenant.tenantId;
  licenseId = (await app.createLicense(tenant.ownerKey)).id;
  webhookId = (await app.call('webhooks.create', { url: 'https://example.com/hook' }, tenant.ownerKey)).data?.id ?? licenseId;
}, 180_000);

const call = (path: string, input: unknown, method: 'GET' | 'POST') =>
  app.call(path, input, app.adminKey, { method, headers: { 'x-tally-tenant': tenantId } });

const NUL = 'a\u0000b';
const LONE = 'a\uD800b';
const YEAR_0 = '0000-01-01T00:00:00Z';
const YEAR_10000 = '9999-12-31T23:59:59-14:00';

/** [procedure, method, input without the field, field, refused values] */
const cases: [string, 'GET' | 'POST', () => Record<string, unknown>, string, unknown[]][] = [
  ['tenants.create', 'POST', () => ({ name: 'x', slug: `s-${Date.now()}` }), 'name', [NUL, LONE]],
  ['tenants.create', 'POST', () => ({ name: 'x', slug: `s-${Date.now()}` }), 'organization', [NUL]],
  ['apiKeys.create', 'POST', () => ({ name: 'x', role: 'read' }), 'name', [NUL, LONE]],
  ['apiKeys.create', 'POST', () => ({ name: 'x', role: 'read' }), 'organization', [NUL]],
  ['apiKeys.create', 'POST', () => ({ name: 'x', role: 'read' }), 'metadata', [{ k: NUL }, { k: '\uD800' }, { [NUL]: 1 }, { k: [{ deep: [LONE] }] }]],
  ['licenses.create', 'POST', () => ({ name: 'x' }), 'name', [NUL, LONE]],
  ['licenses.create', 'POST', () => ({ name: 'x' }), 'externalId', [NUL]],
  ['licenses.create', 'POST', () => ({ name: 'x' }), 'metadata', [{ k: NUL }, { k: '\uDFFF' }]],
  ['licenses.create', 'POST', () => ({ name: 'x' }), 'billingAnchor', [YEAR_0, YEAR_10000]],
  ['licenses.update', 'POST', () => ({ id: licenseId }), 'name', [NUL]],
  ['licenses.update', 'POST', () => ({ id: licenseId }), 'externalId', [NUL]],
  ['licenses.update', 'POST', () => ({ id: licenseId }), 'metadata', [{ k: NUL }]],
  ['licenses.update', 'POST', () => ({ id: licenseId }), 'billingAnchor', [YEAR_0, YEAR_10000]],
  ['webhooks.create', 'POST', () => ({ url: 'https://example.com/hook' }), 'description', [NUL, LONE]],
  ['webhooks.update', 'POST', () => ({ id: webhookId }), 'description', [NUL]],
  ['usage.jobStatus', 'GET', () => ({}), 'jobId', [NUL]],
  ['jobs.get', 'GET', () => ({}), 'id', [NUL]],
  ['jobs.list', 'GET', () => ({}), 'name', [NUL]],
  ['jobs.trigger', 'POST', () => ({ name: 'usage.partitions.maintain' }), 'window', [NUL]],
  ['auditLogs.list', 'GET', () => ({}), 'action', [NUL]],
  ['auditLogs.list', 'GET', () => ({}), 'targetId', [NUL]],
  ['auditLogs.list', 'GET', () => ({}), 'from', [YEAR_0, YEAR_10000]],
  ['auditLogs.list', 'GET', () => ({}), 'to', [YEAR_0]],
  ['forecasts.accuracy', 'GET', () => ({}), 'since', [YEAR_0, YEAR_10000]],
  ['analytics.forecastAccuracy', 'GET', () => ({}), 'since', [YEAR_0]],
];

describe.each(cases)('%s', (path, method, base, field, values) => {
  it(`refuses unstorable ${field} with a 400 naming it, and writes nothing`, async () => {
    for (const value of values) {
      const before = await readScoreboard(app.services.db.pool);
      const res = await call(path, { ...base(), [field]: value }, method);
      expect([field, res.status]).toEqual([field, 400]);
      expect(res.body.error?.data.issues?.map((i) => i.path[0])).toContain(field);
      expect(scoreboardChanges(before, await readScoreboard(app.services.db.pool))).toEqual([]);
    }
  });
});

it('accepts the values just inside: paired surrogates, a backslash-u text, years 0001 and 9999', async () => {
  const license = await call('licenses.create', { name: 'a😀b \\u0000', billingAnchor: '0001-01-01T00:00:00Z', metadata: { k: '😀', '\\u0000': 'x' } }, 'POST');
  expect(license.status).toBe(200);
  expect(license.data).toMatchObject({ name: 'a😀b \\u0000', billingAnchor: '0001-01-01T00:00:00.000Z' });
  const late = await call('licenses.update', { id: licenseId, billingAnchor: '9999-12-31T23:59:59Z' }, 'POST');
  expect(late.status).toBe(200);
  expect(late.data.billingAnchor).toBe('9999-12-31T23:59:59.000Z');
  expect((await call('auditLogs.list', { from: '0001-01-01T00:00:00Z', to: '9999-12-31T23:59:59.999Z' }, 'GET')).status).toBe(200);
});
