import type pg from 'pg';
import { AppError } from '../../lib/errors';
import { assertLicenseOfTenant } from './erasure';
import { isUuid } from '../../lib/uuid';
import type { EventDimensions } from '../usage/event-schema';
import { type DimensionColumns, dimensionsOf } from './scrub';
import type { Environment } from '../environments/environment';

export const EXPORT_PAGE_MAX = 1_000;

export interface UserExportRequest {
  tenantId: string;
  /** Only events of this environment's licenses, and deliveries to its webhook endpoints. */
  environment: Environment;
  userId: string;
  licenseId?: string;
  /** Events per page, 1..EXPORT_PAGE_MAX. */
  limit: number;
  cursor?: string;
}

export interface ExportedEvent extends Omit<EventDimensions, 'userId'> {
  id: string;
  /** The user asked about: every exported event is theirs. */
  userId: string;
  usageType: string;
  quantity: string;
  occurredAt: string;
  receivedAt: string;
  idempotencyKey: string | null;
  /**
   * Voided events are still data Tally holds about the user, so a subject-access export
   * includes them, marked (they count nowhere else).
   */
  voidedAt: string | null;
  voidReason: string | null;
}

interface Position {
  licenseId: string;
  occurredAt: string;
  id: string;
}


function encodePosition(p: Position): string {
  return Buffer.from(`${p.licenseId}|${p.occurredAt}|${p.id}`).toString('base64url');
}

function decodePosition(cursor: string): Position {
  const [licenseId, occurredAt, id] = Buffer.from(cursor, 'base64url').toString().split('|');
  if (!licenseId || !isUuid(licenseId) || !id || !isUuid(id) || !occurredAt || Number.isNaN(Date.parse(occurredAt))) {
    throw new AppError('BAD_REQUEST', 'cursor: not a cursor returned by privacy.exportUser');
  }
  return { licenseId, occurredAt, id };
}

/**
 * Everything Tally holds about one user of a tenant: their events with every dimension,
 * grouped per license, a page at a time in (license, occurredAt, id) order with a cursor for
 * the next page (null on the last), and, on the first page, the tenant's audit log entries
 * and webhook deliveries that mention the user id. Aggregates (rollups, forecasts, alerts)
 * hold no user ids and are not part of it.
 */
export async function exportUser(pool: pg.Pool, request: UserExportRequest) {
  const { tenantId, environment, userId, licenseId, limit } = request;
  if (licenseId !== undefined) await assertLicenseOfTenant(pool, tenantId, environment, licenseId);
  const after = request.cursor ? decodePosition(request.cursor) : null;

  const { rows } = await pool.query<
    DimensionColumns & {
      id: string;
      license_id: string;
      usage_type: string;
      quantity: string;
      occurred_at: Date;
      received_at: Date;
      idempotency_key: string | null;
      user_id: string;
      voided_at: Date | null;
      void_reason: string | null;
    }
  >(
    `SELECT id, license_id, usage_type, trim_scale(quantity)::text AS quantity, occurred_at, received_at, idempotency_key,
            platform, device_type, user_id, user_email, organization, route, method, status_code, duration_ms, sdk_version, ip_address,
            country, properties, voided_at, void_reason
       FROM usage_events
      WHERE tenant_id = $1 AND user_id = $2 AND ($3::uuid IS NULL OR license_id = $3)
        AND ($4::uuid IS NULL OR (license_id, occurred_at, id) > ($4::uuid, $5::timestamptz, $6::uuid))
        AND license_id IN (SELECT id FROM licenses WHERE tenant_id = $1 AND environment = $8::api_key_environment)
      ORDER BY license_id, occurred_at, id
      LIMIT $7`,
    [tenantId, userId, licenseId ?? null, after?.licenseId ?? null, after?.occurredAt ?? null, after?.id ?? null, limit + 1, environment],
  );
  const page = rows.slice(0, limit);
  const last = page.at(-1);
  const nextCursor =
    rows.length > limit && last ? encodePosition({ licenseId: last.license_id, occurredAt: last.occurred_at.toISOString(), id: last.id }) : null;

  const licenseIds = [...new Set(page.map((r) => r.license_id))];
  const { rows: licenseRows } = await pool.query<{ id: string; name: string; external_id: string | null }>(
    'SELECT id, name, external_id FROM licenses WHERE tenant_id = $1 AND id = ANY($2::uuid[])',
    [tenantId, licenseIds],
  );
  const licenseInfo = new Map(licenseRows.map((l) => [l.id, l]));
  const licenses = licenseIds.map((id) => ({
    licenseId: id,
    name: licenseInfo.get(id)?.name ?? null,
    externalId: licenseInfo.get(id)?.external_id ?? null,
    events: page
      .filter((r) => r.license_id === id)
      .map(
        (r): ExportedEvent => ({
          id: r.id,
          usageType: r.usage_type,
          quantity: r.quantity,
          occurredAt: r.occurred_at.toISOString(),
          receivedAt: r.received_at.toISOString(),
          idempotencyKey: r.idempotency_key,
          ...dimensionsOf(r),
          userId: r.user_id,
          voidedAt: r.voided_at?.toISOString() ?? null,
          voidReason: r.void_reason,
        }),
      ),
  }));

  const mentions = after ? null : await mentionsOf(pool, tenantId, environment, userId);
  return {
    userId,
    generatedAt: new Date().toISOString(),
    eventsInPage: page.length,
    licenses,
    nextCursor,
    auditLogs: mentions?.auditLogs ?? [],
    webhookDeliveries: mentions?.webhookDeliveries ?? [],
  };
}

/** Bounded: mentions outside the events are rare, and the newest are the ones worth reading. */
const MENTIONS_MAX = 100;

async function mentionsOf(pool: pg.Pool, tenantId: string, environment: Environment, userId: string) {
  const likeEscape = (s: string) => s.replace(/[\\%_]/g, '\\$&');
  const json = `%${likeEscape(JSON.stringify(userId).slice(1, -1))}%`;
  const text = `%${likeEscape(userId)}%`;
  const audit = await pool.query<{ id: string; action: string; target_type: string | null; target_id: string | null; metadata: unknown; created_at: Date }>(
    `SELECT id, action, target_type, target_id, metadata, created_at FROM audit_logs
      WHERE tenant_id = $1 AND (metadata::text LIKE $2 OR target_id LIKE $3)
      ORDER BY created_at DESC, id DESC LIMIT ${MENTIONS_MAX}`,
    [tenantId, json, text],
  );
  const deliveries = await pool.query<{ id: string; event_type: string; payload: unknown; created_at: Date }>(
    `SELECT id, event_type, payload, created_at FROM webhook_deliveries
      WHERE tenant_id = $1 AND (payload::text LIKE $2 OR attempt_log::text LIKE $2 OR last_error LIKE $3)
        AND endpoint_id IN (SELECT id FROM webhook_endpoints WHERE tenant_id = $1 AND environment = $4::api_key_environment)
      ORDER BY created_at DESC, id DESC LIMIT ${MENTIONS_MAX}`,
    [tenantId, json, text, environment],
  );
  return {
    auditLogs: audit.rows.map((r) => ({
      id: r.id,
      action: r.action,
      targetType: r.target_type,
      targetId: r.target_id,
      metadata: r.metadata,
      createdAt: r.created_at.toISOString(),
    })),
    webhookDeliveries: deliveries.rows.map((r) => ({ id: r.id, eventType: r.event_type, payload: r.payload, createdAt: r.created_at.toISOString() })),
  };
}
