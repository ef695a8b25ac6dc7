import type http from 'node:http';
import { receiveStripeWebhook } from '../domain/billing/webhooks-in';
import type { Services } from './services';
import { drainRest } from './linger';

export const STRIPE_WEBHOOK_PATH = '/api/stripe/webhook/';

function sendJson(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { ...headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/**
 * POST /api/stripe/webhook/:tenantId — no API key (Stripe has none of ours); the Stripe
 * signature over the exact bytes received is the authentication, so the body is read raw,
 * up to BILLING_WEBHOOK_MAX_BYTES (413 past it; the rest is read and dropped, see linger.ts).
 */
export function createStripeWebhookHandler(services: Services) {
  const maxBytes = services.env.BILLING_WEBHOOK_MAX_BYTES;
  // read no further into memory: the rest is dropped as it comes (a client still sending gets the 413, not a reset)
  const refuseTooLarge = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    sendJson(res, 413, { error: { message: `body larger than ${maxBytes} bytes`, code: 'PAYLOAD_TOO_LARGE' } });
    drainRest(req);
  };
  return async (req: http.IncomingMessage, res: http.ServerResponse, pathname: string): Promise<void> => {
    if (req.method !== 'POST') {
      sendJson(res, 405, { error: { message: 'use POST', code: 'METHOD_NOT_SUPPORTED' } }, { allow: 'POST' });
      return;
    }
    const tenantId = pathname.slice(STRIPE_WEBHOOK_PATH.length);
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > maxBytes) {
      refuseTooLarge(req, res);
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    await new Promise<void>((resolve, reject) => {
      const onData = (chunk: Buffer): void => {
        size += chunk.length;
        if (size > maxBytes) {
          tooLarge = true;
          req.off('data', onData);
          resolve();
          return;
        }
        chunks.push(chunk);
      };
      req.on('data', onData);
      req.on('end', () => resolve());
      req.on('error', reject);
    });
    if (tooLarge) {
      refuseTooLarge(req, res);
      return;
    }
    const signature = req.headers['stripe-signature'];
    const answer = await receiveStripeWebhook(services.billing, tenantId, Buffer.concat(chunks), typeof signature === 'string' ? signature : undefined);
    sendJson(res, answer.status, answer.body);
  };
}
