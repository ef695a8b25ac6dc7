import { readFileSync } from 'node:fs';
import path from 'node:path';
import { TestApp } from '../helpers/harness';
import { licenseWithLimit } from '../helpers/quota';
import { startReceiver } from '../helpers/receiver';
import { startTestWorkers } from '../helpers/workers';
import { hourWindow } from '../../src/domain/jobs/catalog';
import { signPayload } from '../../src/domain/webhooks/signing';
import { loadLicenseLimits } from '../../src/domain/quotas/limits';
import { checkLicenseThresholds } from '../../src/domain/quotas/threshold-check';

/** The receiver snippet exactly as the README shows it. */
function readmeVerifier(): (rawBody: string, header: string, secret: string, toleranceSeconds?: number) => boolean {
  const readme = readFileSync(path.join(__dirname, '..', '..', 'README.md'), 'utf8');
  const block = /<!-- webhook-verify:start -->\s*```js\n([\s\S]*?)```\s*<!-- webhook-verify:end -->/.exec(readme);
  if (!block) throw new Error('README has no webhook-verify block');
  return new Function('require', `${block[1]}\nreturn verifyTallySignature;`)(require);
}
const verify = readmeVerifier();

let app: TestApp;
let workers: Awaited<ReturnType<typeof startTestWorkers>>;

beforeAll(async () => {
  app = await TestApp.start({ WEBHOOK_RETRY_BASE_MS: '20', WEBHOOK_ALLOWED_HOSTS: '127.0.0.1' }); // the receiver listens on loopback
  workers = await startTestWorkers(app);
});
afterAll(async () => {
  await workers.close();
  await app.close();
});

/** Usage stored without going through ingestion's detection (as when a process dies after the write). */
async function usageBehindIngestion(tenantId: string, licenseId: string, usageType: string, quantity: number) {
  await app.services.db.pool.query(
    `INSERT INTO usage_events (id, tenant_id, license_id, usage_type, quantity, occurred_at, payload_hash)
     VALUES (gen_random_uuid(), $1, $2, $3, $4, now(), 'x')`,
    [tenantId, licenseId, usageType, quantity],
  );
}

/** A threshold check whose delivery rows are written, then queueing their jobs fails (Redis gone): it fails. */
async function checkWithQueueDown(tenantId: string, licenseId: string) {
  const webhooks = { prisma: app.prisma, retryBaseMs: 20, jobs: { enqueue: () => Promise.reject(new Error('Redis went away')) } };
  const limits = (await loadLicenseLimits(app.prisma, tenantId, licenseId))!;
  await expect(
    checkLicenseThresholds({ pool: app.services.db.pool, webhooks: webhooks as never, logger: app.services.logger }, limits, new Date()),
  ).rejects.toThrow('Redis went away');
}

/** The hourly usage.thresholds.check for the current hour, run to the end (`tag` makes it a fresh run). */
async function runThresholdCheck(tag: string) {
  const job = await app.services.queues.enqueue('usage.thresholds.check', { window: hourWindow(new Date()) }, { rerunTag: `${tag}${Date.now()}` });
  await workers.finished(job.id!);
}

async function deliveriesFinished(tenantOwner: string, expected: number) {
  const list = await app.call('webhooks.deliveries', { limit: 100 }, tenantOwner, { method: 'GET' });
  expect(list.data.items).toHaveLength(expected);
  for (const d of list.data.items) await workers.finished(`webhooks.deliver@${d.id}`);
  return (await app.call('webhooks.deliveries', { limit: 100 }, tenantOwner, { method: 'GET' })).data.items as any[];
}

it('creates each level alert exactly once under 200 concurrent calls, delivered signed to the receiver', async () => {
  const receiver = await startReceiver();
  try {
    const { ownerKey } = await app.createTenant();
    const hook = await app.call('webhooks.create', { url: receiver.url }, ownerKey);
    expect(hook.status).toBe(200);
    expect(hook.data.secret).toMatch(/^whsec_/);
    const { licenseId, thresholdId } = await licenseWithLimit(app, ownerKey, 'api_call', 100);
    const results = await Promise.all(
      Array.from({ length: 200 }, () => app.call('usage.trackEvent', { licenseId, usageType: 'api_call' }, ownerKey)),
    );
    expect(results.filter((r) => r.status === 200)).toHaveLength(100);

    const alerts = await app.call('alerts.list', { licenseId }, ownerKey, { method: 'GET' });
    expect(alerts.data.items.map((a: any) => a.level).sort((a: number, b: number) => a - b)).toEqual([50, 80, 95, 100]);
    expect(alerts.data.items.every((a: any) => a.thresholdId === thresholdId && a.detectedBy === 'ingestion')).toBe(true);

    const deliveries = await deliveriesFinished(ownerKey, 4);
    expect(deliveries.every((d) => d.status === 'SUCCEEDED' && d.responseStatus === 200 && d.attempts === 1)).toBe(true);
    expect(receiver.received).toHaveLength(4);
    const bodies = receiver.received.map((r) => {
      expect(verify(r.body, String(r.headers['tally-signature']), hook.data.secret)).toBe(true);
      expect(verify(r.body, String(r.headers['tally-signature']), 'whsec_wrong')).toBe(false);
      return JSON.parse(r.body);
    });
    expect(bodies.map((b) => b.type).sort()).toEqual([
      'usage.threshold.exceeded',
      'usage.threshold.warning',
      'usage.threshold.warning',
      'usage.threshold.warning',
    ]);
    expect(bodies[0]).toEqual({ id: expect.any(String), type: expect.any(String), createdAt: expect.any(String), data: expect.objectContaining({ licenseId, usageType: 'api_call', limit: '100' }) });

    // the hourly check finds nothing new for this period
    await runThresholdCheck('t');
    expect((await app.prisma.usageAlert.count({ where: { licenseId } }))).toBe(4);
  } finally {
    await receiver.close();
  }
});

it('retries a receiver that fails three times and records one success with every response code', async () => {
  const receiver = await startReceiver([500, 503, 502]);
  try {
    const { ownerKey } = await app.createTenant();
    const hook = await app.call('webhooks.create', { url: receiver.url, events: ['usage.threshold.warning'] }, ownerKey);
    const { licenseId } = await licenseWithLimit(app, ownerKey, 'retry', 2);
    expect((await app.call('usage.trackEvent', { licenseId, usageType: 'retry' }, ownerKey)).status).toBe(200);
    const [delivery] = await deliveriesFinished(ownerKey, 1);
    expect(delivery).toMatchObject({ status: 'SUCCEEDED', attempts: 4, responseStatus: 200, eventType: 'usage.threshold.warning' });
    expect(delivery.attemptLog.map((a: any) => a.responseStatus)).toEqual([500, 503, 502, 200]);
    expect(receiver.received).toHaveLength(4);
    expect(new Set(receiver.received.map((r) => JSON.parse(r.body).id)).size).toBe(1);
    for (const r of receiver.received) expect(verify(r.body, String(r.headers['tally-signature']), hook.data.secret)).toBe(true);
  } finally {
    await receiver.close();
  }
});

it('signs with both secrets during a rotation and refuses stale timestamps', async () => {
  const receiver = await startReceiver();
  try {
    const { ownerKey } = await app.createTenant();
    const created = await app.call('webhooks.create', { url: receiver.url }, ownerKey);
    const rotated = await app.call('webhooks.rotateSecret', { id: created.data.id }, ownerKey);
    expect(rotated.status).toBe(200);
    expect(rotated.data).toMatchObject({ rotating: true, secret: expect.stringMatching(/^whsec_/) });
    expect(rotated.data.secret).not.toBe(created.data.secret);
    const listed = await app.call('webhooks.list', {}, ownerKey, { method: 'GET' });
    expect(JSON.stringify(listed.data)).not.toContain('whsec_');

    const { licenseId } = await licenseWithLimit(app, ownerKey, 'rot', 2);
    await app.call('usage.trackEvent', { licenseId, usageType: 'rot' }, ownerKey);
    await deliveriesFinished(ownerKey, 1);
    const [r] = receiver.received;
    const header = String(r!.headers['tally-signature']);
    expect(header.match(/v1=/g)).toHaveLength(2);
    expect(verify(r!.body, header, created.data.secret)).toBe(true);
    expect(verify(r!.body, header, rotated.data.secret)).toBe(true);
    expect(verify(`${r!.body} `, header, rotated.data.secret)).toBe(false);

    const stale = Math.floor(Date.now() / 1000) - 301;
    expect(verify(r!.body, `t=${stale},v1=${signPayload(rotated.data.secret, stale, r!.body)}`, rotated.data.secret)).toBe(false);
    const fresh = Math.floor(Date.now() / 1000) - 299;
    expect(verify(r!.body, `t=${fresh},v1=${signPayload(rotated.data.secret, fresh, r!.body)}`, rotated.data.secret)).toBe(true);

    // overlap 0 ends the rotation: only the newest secret signs
    const ended = await app.call('webhooks.rotateSecret', { id: created.data.id, overlapHours: 0 }, ownerKey);
    expect(ended.data.rotating).toBe(false);
  } finally {
    await receiver.close();
  }
});

it('finds crossings ingestion did not see in the hourly usage.thresholds.check, once', async () => {
  const { ownerKey, tenantId } = await app.createTenant();
  const { licenseId } = await licenseWithLimit(app, ownerKey, 'missed', 10);
  await usageBehindIngestion(tenantId, licenseId, 'missed', 8);
  for (const tag of ['a', 'b']) await runThresholdCheck(tag);
  const alerts = await app.prisma.usageAlert.findMany({ where: { licenseId }, orderBy: { level: 'asc' } });
  expect(alerts.map((a) => [a.level, a.detectedBy, a.usedQuantity.toFixed()])).toEqual([
    [50, 'scheduled', '8'],
    [80, 'scheduled', '8'],
  ]);
  // the scheduler enqueues it at :30 for the hour it runs in
  const { SCHEDULE } = await import('../../src/domain/jobs/schedule');
  const entry = SCHEDULE.find((e) => e.job === 'usage.thresholds.check')!;
  expect(entry.cron).toBe('30 * * * *');
  expect(entry.windowAt(new Date('2026-11-23T10:30:00Z'))).toBe('2026-11-23T10Z');
});

it('sends, on the next check and once, level alerts whose publication failed', async () => {
  const receiver = await startReceiver();
  try {
    const { ownerKey, tenantId } = await app.createTenant();
    expect((await app.call('webhooks.create', { url: receiver.url }, ownerKey)).status).toBe(200);
    const { licenseId } = await licenseWithLimit(app, ownerKey, 'flaky', 10);
    await usageBehindIngestion(tenantId, licenseId, 'flaky', 8);
    await checkWithQueueDown(tenantId, licenseId);

    await runThresholdCheck('f');
    const alerts = await app.prisma.usageAlert.findMany({ where: { licenseId }, orderBy: { level: 'asc' } });
    expect(alerts.map((a) => a.level)).toEqual([50, 80]);
    const deliveries = await deliveriesFinished(ownerKey, 2);
    expect(deliveries.every((d) => d.status === 'SUCCEEDED')).toBe(true);
    expect(receiver.received.map((r) => JSON.parse(r.body).id).sort()).toEqual(alerts.map((a) => a.id).sort());
  } finally {
    await receiver.close();
  }
});

it('sends, on the next check and once, an overage whose publication failed', async () => {
  const receiver = await startReceiver();
  try {
    const { ownerKey, tenantId } = await app.createTenant();
    expect((await app.call('webhooks.create', { url: receiver.url, events: ['usage.overage.detected'] }, ownerKey)).status).toBe(200);
    const { licenseId, thresholdId } = await licenseWithLimit(app, ownerKey, 'over', 10, { allowOverage: true, overageRateCents: 7 });
    await usageBehindIngestion(tenantId, licenseId, 'over', 12.5);
    await checkWithQueueDown(tenantId, licenseId);
    expect(await app.prisma.usageOverage.count({ where: { thresholdId } })).toBe(0); // not written before its webhook is out

    for (const tag of ['oa', 'ob']) await runThresholdCheck(tag);
    const overage = await app.prisma.usageOverage.findFirstOrThrow({ where: { thresholdId } });
    expect([overage.quantity.toFixed(), overage.feeCents.toString()]).toEqual(['2.5', '18']);
    const deliveries = await deliveriesFinished(ownerKey, 1);
    expect(deliveries[0].status).toBe('SUCCEEDED');
    expect(receiver.received.map((r) => JSON.parse(r.body))).toEqual([
      expect.objectContaining({ id: overage.id, type: 'usage.overage.detected', data: expect.objectContaining({ overageId: overage.id, quantity: '2.5' }) }),
    ]);
  } finally {
    await receiver.close();
  }
});
