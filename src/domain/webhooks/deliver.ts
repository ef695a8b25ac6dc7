import http from 'node:http';
import https from 'node:https';
import type { PrismaClient } from '../../generated/prisma/client';
import { AddressRefusedError, checkOutboundUrl, guardedLookup, systemResolve, type OutboundPolicy, type Resolve } from '../../lib/net-guard';
import { SIGNATURE_HEADER, signatureHeader } from './signing';
import { signingSecrets } from './endpoints';

export class DeliveryFailed extends Error {}

const MAX_LOGGED_ATTEMPTS = 20;

export interface DeliveryDeps {
  prisma: PrismaClient;
  timeoutMs: number;
  /** Which addresses a receiver may be at (see webhookPolicy). */
  policy: OutboundPolicy;
  /** Name resolution; the system resolver unless a test stands in for DNS. */
  resolve?: Resolve;
  userAgent?: string;
  /** The operator's log gets the details the tenant is not shown (which address, which socket error). */
  logger?: { warn(details: object, message: string): void };
}

/** A delivery stopped before it was sent, for a reason that a retry cannot change; `shown` is what the tenant reads. */
class ReceiverRefused extends Error {
  constructor(
    readonly shown: 'refused: address not allowed' | 'refused: URL not allowed',
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/**
 * One attempt at one delivery: POST the event, signed, and log the answer. A non-2xx answer
 * or a network error throws, so the queue retries with backoff; after the last attempt the
 * delivery is FAILED. A receiver at an address that is not allowed fails the delivery at once.
 * A delivery already SUCCEEDED (a re-run job) is not sent again.
 *
 * The log is shown to the tenant, so an error is one of a closed set of words ("refused",
 * "unreachable", "timeout", "HTTP <status>"): never socket error text, which can name
 * addresses behind this server, and never a response body.
 */
export async function attemptDelivery(
  deps: DeliveryDeps,
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
  let final = attempt.last;
  try {
    responseStatus = await post(deps, delivery.endpoint.url, body, {
      'content-type': 'application/json',
      'user-agent': deps.userAgent ?? 'Tally-Webhooks/1',
      [SIGNATURE_HEADER]: signatureHeader(signingSecrets(delivery.endpoint), body, timestamp),
      'Tally-Event-Id': String((delivery.payload as { id?: unknown }).id ?? delivery.eventId),
      'Tally-Delivery-Id': delivery.id,
    });
    if (responseStatus < 200 || responseStatus >= 300) error = `HTTP ${responseStatus}`;
  } catch (err) {
    error = describeDeliveryError(err);
    if (err instanceof ReceiverRefused) final = true;
    deps.logger?.warn({ deliveryId, endpointId: delivery.endpointId, attempt: attempt.number, err }, `webhook delivery ${error}`);
  }

  const ok = error === null;
  const status = ok ? 'SUCCEEDED' : final ? 'FAILED' : 'PENDING';
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
  if (!ok && !final) throw new DeliveryFailed(`delivery ${delivery.id} attempt ${attempt.number}: ${error}`);
  return { status: ok ? 'SUCCEEDED' : 'FAILED', responseStatus };
}

/**
 * POSTs through node:http(s) with a lookup that only hands the socket allowed addresses, so
 * the address checked is the address connected to. IP literals never go through a lookup and
 * are checked here, as written in the URL, which is then exactly where the socket goes.
 * Redirects are not followed, each attempt gets its own connection (no pooled socket outlives
 * its check), and the response is dropped once its status line is in.
 */
function post(deps: DeliveryDeps, rawUrl: string, body: string, headers: Record<string, string>): Promise<number> {
  const check = checkOutboundUrl(rawUrl, deps.policy);
  if (!check.ok) {
    // a row saved before these rules, or an operator who narrowed the allowlist since
    const shown = check.what === 'address' ? 'refused: address not allowed' : 'refused: URL not allowed';
    return Promise.reject(new ReceiverRefused(shown, `${rawUrl} ${check.reason}`));
  }
  const request = check.url.protocol === 'https:' ? https.request : http.request;
  return new Promise<number>((resolve, reject) => {
    const req = request(
      check.url,
      {
        method: 'POST',
        headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) },
        agent: false,
        lookup: guardedLookup(deps.policy, deps.resolve ?? systemResolve),
        signal: AbortSignal.timeout(deps.timeoutMs),
      },
      (res) => {
        resolve(res.statusCode ?? 0);
        res.destroy();
      },
    );
    req.on('error', (err) => reject(err instanceof AddressRefusedError ? new ReceiverRefused('refused: address not allowed', err.message, { cause: err }) : err));
    req.end(body);
  });
}

/** What the tenant is told about a failed attempt: a reason, never the socket's own words. */
export function describeDeliveryError(err: unknown): string {
  if (err instanceof ReceiverRefused) return err.shown;
  const { name, code } = (err ?? {}) as { name?: string; code?: string };
  if (name === 'AbortError' || name === 'TimeoutError' || code === 'ETIMEDOUT') return 'timeout';
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN' || code === 'EAI_NODATA' || code === 'EAI_NONAME') return 'unreachable: host name not found';
  if (typeof code === 'string' && (code.startsWith('ERR_TLS') || code.startsWith('ERR_SSL') || /CERT|SELF_SIGNED|UNABLE_TO_VERIFY/.test(code))) {
    return 'unreachable: TLS handshake failed';
  }
  return 'unreachable';
}
