import type { PrismaClient } from '../../generated/prisma/client';
import type { JobPort } from '../jobs/port';
import type { WebhookEvent } from './events';
import type { Environment } from '../environments/environment';

export interface WebhookDispatchDeps {
  prisma: PrismaClient;
  jobs: Pick<JobPort, 'enqueue'>;
  /** Base of the exponential backoff between attempts. */
  retryBaseMs: number;
}

/**
 * One delivery per enabled endpoint of the tenant that takes this event type (an endpoint
 * with no event list takes all), each sent by its own queued job. Delivery rows are unique
 * per endpoint and event id and job ids name the delivery, so publishing an event twice
 * delivers it once. Only endpoints of the event's environment (its license's) get it: a test
 * endpoint receives test events only, a live one live events only.
 */
export async function publishWebhookEvent(
  deps: WebhookDispatchDeps,
  scope: { tenantId: string; environment: Environment },
  event: WebhookEvent,
): Promise<number> {
  const { tenantId, environment } = scope;
  const endpoints = await deps.prisma.webhookEndpoint.findMany({
    where: { tenantId, environment, enabled: true, OR: [{ events: { isEmpty: true } }, { events: { has: event.type } }] },
    select: { id: true },
  });
  if (endpoints.length === 0) return 0;
  await deps.prisma.webhookDelivery.createMany({
    data: endpoints.map((e) => ({ tenantId, endpointId: e.id, eventId: event.id, eventType: event.type, payload: event as object })),
    skipDuplicates: true,
  });
  const deliveries = await deps.prisma.webhookDelivery.findMany({
    where: { tenantId, eventId: event.id, status: 'PENDING', endpointId: { in: endpoints.map((e) => e.id) } },
    select: { id: true },
  });
  for (const d of deliveries) await deps.jobs.enqueue('webhooks.deliver', { deliveryId: d.id }, { backoffMs: deps.retryBaseMs });
  return deliveries.length;
}

/**
 * Queues again every PENDING delivery whose job the queue no longer holds. PostgreSQL is the
 * record of a delivery, Redis only carries its job: when Redis loses its data (a flush, a
 * restart without persistence, a failover) after the row was written, nothing else would ever
 * send it. A job id names its delivery, so a delivery whose job is still queued, delayed or
 * running is left alone; one whose job ran out of attempts while the row stayed PENDING (its
 * worker died on the last one) is retried. Returns how many were queued again.
 */
export async function requeueStrandedDeliveries(deps: WebhookDispatchDeps & { jobs: Pick<JobPort, 'enqueue' | 'find'> }, limit = 1000): Promise<number> {
  const pending = await deps.prisma.webhookDelivery.findMany({
    where: { status: 'PENDING' },
    select: { id: true },
    orderBy: { createdAt: 'asc' },
    take: limit,
  });
  let requeued = 0;
  for (const d of pending) {
    const job = await deps.jobs.find(`webhooks.deliver@${d.id}`);
    if (job && job.state !== 'failed') continue;
    await deps.jobs.enqueue('webhooks.deliver', { deliveryId: d.id }, { backoffMs: deps.retryBaseMs, retryFailed: true });
    requeued += 1;
  }
  return requeued;
}
