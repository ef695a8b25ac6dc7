import type { PrismaClient } from '../../generated/prisma/client';
import { SIGNATURE_HEADER, signatureHeader } from './signing';
import { signingSecrets } from './endpoints';

export class DeliveryFailed extends Error {}

const MAX_LOGGED_ATTEMPTS = 20;

/**
 * One attempt at one delivery: POST the event, signed, and log the answer. A non-2xx answer
 * or a network error throws, so the queue retries with backoff; after the last attempt the
 * delivery is FAILED. A delivery already SUCCEEDED (a re-run job) is not sent again.
 */
export async function attemptDelivery(
  deps: { prisma: PrismaClient; timeoutMs: number; userAgent?: string },
  deliveryId: string,
  attempt: { number: number; last: boolean },
): Promise<{ status: 'SUCCEEDED' | 'FAILED' | 'RETRY' | 'SKIPPED'; responseStatus: number | null }> {
  const delivery = await deps.prisma.webhookDelivery.findUnique({ where: { id: deliveryId }, include: { endpoint: true } });
  if (!delivery || delivery.status !== 'PENDING') return { status: 'SKIPPED', responseStatus: null };

  const body = JSON.stringify(delivery.payload);
  const timestamp = Math.floor(Date.now() / 1000);
  const started = Date.now();
  let responseStatus: number | null = null;
  let error: string | null = null;
  try {
    const response = await fetch(delivery.endpoint.url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'user-agent': deps.userAgent ?? 'Tally-Webhooks/1',
        [SIGNATURE_HEADER]: signatureHeader(signingSecrets(delivery.endpoint), body, timestamp),
        'Tally-Event-Id': String((delivery.payload as { id?: unknown }).id ?? delivery.eventId),
        'Tally-Delivery-Id': delivery.id,
      },
      body,
      redirect: 'manual',
      signal: AbortSignal.timeout(deps.timeoutMs),
    });
    responseStatus = response.status;
    await response.body?.cancel().catch(() => undefined);
    if (response.status < 200 || response.status >= 300) error = `HTTP ${response.status}`;
  } catch (err) {
    error = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
  }

  const ok = error === null;
  const status = ok ? 'SUCCEEDED' : attempt.last ? 'FAILED' : 'PENDING';
  const log = [
    ...((delivery.attemptLog as unknown[]) ?? []),
    { attempt: attempt.number, at: new Date(started).toISOString(), durationMs: Date.now() - started, responseStatus, error },
  ].slice(-MAX_LOGGED_ATTEMPTS);
  await deps.prisma.webhookDelivery.update({
    where: { id: delivery.id },
    data: {
      status,
      attempts: { increment: 1 },
      responseStatus,
      lastError: error,
      attemptLog: log as object,
      deliveredAt: ok ? new Date() : null,
    },
  });
  if (!ok && !attempt.last) throw new DeliveryFailed(`delivery ${delivery.id} attempt ${attempt.number}: ${error}`);
  return { status: ok ? 'SUCCEEDED' : 'FAILED', responseStatus };
}
