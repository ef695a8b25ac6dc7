import type { Db } from '../../lib/db';
import type { Prisma } from '../../generated/prisma/client';
import { AppError } from '../../lib/errors';
import { afterCursor, decodeCursor, pageOf } from '../../lib/cursor';
import { newWebhookSecret } from './signing';
import type { WebhookEventType } from './events';
import type { OutboundPolicy } from '../../lib/net-guard';
import { assertReceiverUrl } from './url-policy';
import type { Environment } from '../environments/environment';

type EndpointRow = Prisma.WebhookEndpointGetPayload<object>;

/** Never shows a secret: it is returned once, by create and rotateSecret. */
export function presentEndpoint(e: EndpointRow) {
  return {
    id: e.id,
    url: e.url,
    description: e.description,
    events: e.events,
    enabled: e.enabled,
    environment: e.environment,
    rotating: e.previousSecretExpiresAt !== null && e.previousSecretExpiresAt > new Date(),
    previousSecretExpiresAt: e.previousSecretExpiresAt,
    createdAt: e.createdAt,
    updatedAt: e.updatedAt,
  };
}

/** An endpoint of this tenant and environment; another's is "not found". */
async function ownEndpoint(db: Db, tenantId: string, environment: Environment, id: string): Promise<EndpointRow> {
  const endpoint = await db.webhookEndpoint.findFirst({ where: { id, tenantId, environment } });
  if (!endpoint) throw new AppError('NOT_FOUND', 'webhook endpoint not found');
  return endpoint;
}

/** In the caller's environment: it will receive events of that environment's licenses only. */
export async function createEndpoint(
  db: Db,
  tenantId: string,
  environment: Environment,
  args: { url: string; events?: WebhookEventType[]; description?: string },
  policy: OutboundPolicy,
) {
  assertReceiverUrl(args.url, policy);
  const secret = newWebhookSecret();
  const endpoint = await db.webhookEndpoint.create({
    data: { tenantId, environment, url: args.url, events: args.events ?? [], description: args.description ?? null, secret },
  });
  return { ...presentEndpoint(endpoint), secret };
}

export async function listEndpoints(db: Db, tenantId: string, environment: Environment) {
  const rows = await db.webhookEndpoint.findMany({ where: { tenantId, environment }, orderBy: [{ createdAt: 'desc' }, { id: 'desc' }] });
  return { items: rows.map(presentEndpoint) };
}

export async function updateEndpoint(
  db: Db,
  tenantId: string,
  environment: Environment,
  id: string,
  args: { url?: string; events?: WebhookEventType[]; description?: string | null; enabled?: boolean },
  policy: OutboundPolicy,
) {
  if (args.url !== undefined) assertReceiverUrl(args.url, policy);
  await ownEndpoint(db, tenantId, environment, id);
  return presentEndpoint(await db.webhookEndpoint.update({ where: { id }, data: args }));
}

export async function deleteEndpoint(db: Db, tenantId: string, environment: Environment, id: string) {
  await ownEndpoint(db, tenantId, environment, id);
  await db.webhookEndpoint.delete({ where: { id } });
  return { id, deleted: true as const };
}

/**
 * A new secret signs from now on; the current one keeps signing beside it for
 * `overlapHours`, so receivers can switch without dropping a delivery.
 */
export async function rotateEndpointSecret(db: Db, tenantId: string, environment: Environment, id: string, overlapHours: number) {
  const current = await ownEndpoint(db, tenantId, environment, id);
  const secret = newWebhookSecret();
  const endpoint = await db.webhookEndpoint.update({
    where: { id },
    data: {
      secret,
      previousSecret: overlapHours > 0 ? current.secret : null,
      previousSecretExpiresAt: overlapHours > 0 ? new Date(Date.now() + overlapHours * 3_600_000) : null,
    },
  });
  return { ...presentEndpoint(endpoint), secret };
}

/** The secrets that sign a delivery now: the current one, and the previous one during a rotation. */
export function signingSecrets(endpoint: EndpointRow, now = new Date()): string[] {
  return endpoint.previousSecret && endpoint.previousSecretExpiresAt && endpoint.previousSecretExpiresAt > now
    ? [endpoint.secret, endpoint.previousSecret]
    : [endpoint.secret];
}

export async function listDeliveries(
  db: Db,
  tenantId: string,
  environment: Environment,
  args: { endpointId?: string; status?: 'PENDING' | 'SUCCEEDED' | 'FAILED'; limit: number; cursor?: string },
) {
  if (args.endpointId) await ownEndpoint(db, tenantId, environment, args.endpointId);
  const after = args.cursor ? decodeCursor(args.cursor, 'webhooks.deliveries') : null;
  const rows = await db.webhookDelivery.findMany({
    where: { tenantId, endpoint: { environment }, ...(args.endpointId ? { endpointId: args.endpointId } : {}), ...(args.status ? { status: args.status } : {}), ...afterCursor(after) },
    orderBy: [{ createdAt: 'desc' }, { id: 'desc' }],
    take: args.limit + 1,
  });
  return pageOf(rows, args.limit);
}
