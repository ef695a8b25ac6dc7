import { TestApp } from '../helpers/harness';
import { createIsolatedDatabase } from '../helpers/isolated-db';
import { licenseWithLimit } from '../helpers/quota';
import { startReceiver } from '../helpers/receiver';
import { startTestWorkers } from '../helpers/workers';
import { hourWindow } from '../../src/domain/jobs/catalog';

/**
 * Redis losing its data after an alert was claimed (found by the chaos suite: a FLUSHALL took
 * the queued, or delayed for a retry, `webhooks.deliver` jobs, and their deliveries stayed
 * PENDING for good). The hourly usage.thresholds.check queues them again.
 */
let app: TestApp;
let db: ReturnType<typeof createIsolatedDatabase>;

// A database of its own: the check re-queues every PENDING delivery it finds, other files' too.
beforeAll(async () => {
  db = createIsolatedDatabase('requeue');
  app = await TestApp.start({ WEBHOOK_RETRY_BASE_MS: '20', DATABASE_URL: db.url, WEBHOOK_ALLOWED_HOSTS: '127.0.0.1' });
});
afterAll(async () => {
  await app?.close();
  await db?.drop();
});

it('delivers, after the next threshold check and once, an alert whose queued delivery job Redis lost', async () => {
  const receiver = await startReceiver();
  let workers: Awaited<ReturnType<typeof startTestWorkers>> | undefined;
  try {
    const { ownerKey } = await app.createTenant();
    expect((await app.call('webhooks.create', { url: receiver.url }, ownerKey)).status).toBe(200);
    const { licenseId } = await licenseWithLimit(app, ownerKey, 'api_call', 10, { warningLevels: [50] });
    // 5 of 10: the 50% alert is claimed and its delivery queued; no worker runs yet
    for (let i = 0; i < 5; i++) expect((await app.call('usage.trackEvent', { licenseId, usageType: 'api_call' }, ownerKey)).status).toBe(200);
    const deliveries = (await app.call('webhooks.deliveries', { limit: 10 }, ownerKey, { method: 'GET' })).data.items as { id: string; status: string }[];
    expect(deliveries.map((d) => d.status)).toEqual(['PENDING']);
    const deliveryJob = `webhooks.deliver@${deliveries[0]!.id}`;
    expect(await app.services.queues.getJob(deliveryJob)).toBeDefined();

    // Redis loses the webhooks queue (as a FLUSHALL or a restart without persistence would)
    await app.services.queues.queues.webhooks.obliterate({ force: true });
    expect(await app.services.queues.getJob(deliveryJob)).toBeUndefined();

    workers = await startTestWorkers(app);
    const check = async (tag: string) => {
      const job = await app.services.queues.enqueue('usage.thresholds.check', { window: hourWindow(new Date()) }, { rerunTag: `${tag}${Date.now()}` });
      return (await workers!.finished(job.id!)) as { deliveriesRequeued: number };
    };
    expect((await check('first')).deliveriesRequeued).toBe(1);
    await workers.finished(deliveryJob);
    const after = (await app.call('webhooks.deliveries', { limit: 10 }, ownerKey, { method: 'GET' })).data.items as { status: string }[];
    expect(after.map((d) => d.status)).toEqual(['SUCCEEDED']);
    expect(receiver.received).toHaveLength(1);

    // a delivery that succeeded (or whose job is still queued) is not queued again
    expect((await check('second')).deliveriesRequeued).toBe(0);
    expect(receiver.received).toHaveLength(1);
  } finally {
    await workers?.close();
    await receiver.close();
  }
});
