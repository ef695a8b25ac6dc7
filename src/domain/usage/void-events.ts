import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import type { PrismaClient } from '../../generated/prisma/client';
import type { Logger } from '../../lib/logger';
import { inTransaction } from '../../lib/transaction';
import { HOUR_MS } from '../../lib/time';
import type { AnalyticsInvalidator } from '../analytics/cache';
import { hourWindow } from '../jobs/catalog';
import type { JobPort } from '../jobs/port';
import type { QuotaEnforcer } from '../quotas/enforcer';
import { loadLicenseLimits } from '../quotas/limits';
import type { ReactionDeps } from '../quotas/reactions';
import { checkLicenseThresholds } from '../quotas/threshold-check';
import { hourFloor } from '../rollups/recompute';

/** Ids and idempotency keys one call may void, together. */
export const MAX_VOID_IDS = 1_000;
export const MAX_VOID_REASON = 500;
/** Voided event ids (and windows) named in the audit row; the rest are found by voided_at and voided_by_key_id. */
export const AUDIT_IDS_MAX = 100;

export type VoidStatus = 'voided' | 'already_void' | 'not_found';

export interface VoidDeps {
  pool: pg.Pool;
  prisma: PrismaClient;
  /** Gives voided quantities back to the real-time quota counters. */
  quota: Pick<QuotaEnforcer, 'giveBack'>;
  analytics: AnalyticsInvalidator;
  /** Queues the recompute of the marked hours now rather than at the next hourly run. */
  jobs: Pick<JobPort, 'enqueue'>;
  /** Thresholds and overages of the licenses whose usage went down are checked again. */
  reactions: ReactionDeps;
  logger: Logger;
}

export interface VoidCaller {
  tenantId: string;
  /** A key reaches only licenses of its own environment: others' events are not found. */
  environment: 'live' | 'test';
  keyId: string;
  keyPrefix: string;
  ip: string | null;
  userAgent: string | null;
}

export interface VoidRequest {
  eventIds?: string[];
  idempotencyKeys?: string[];
  reason: string;
}

export interface VoidResult {
  voided: number;
  alreadyVoid: number;
  notFound: number;
  /** One per id and key asked for, in the order asked (ids first, then keys). */
  results: { eventId: string | null; idempotencyKey?: string; status: VoidStatus }[];
  /**
   * The hourly windows (license, usage type, UTC hour) whose rollups this call changed: each
   * was marked for recomputation in the same transaction as the void, exactly as a late
   * event marks its hour. Billing and any other reader of hourly rollups re-reads these.
   */
  windows: { licenseId: string; usageType: string; hour: string }[];
  /** The job that recomputes the marked hours now (null when nothing needs it or it could not be queued: the next hourly run does it). */
  recomputeJobId: string | null;
}

interface Target {
  id: string;
  license_id: string;
  usage_type: string;
  quantity: string;
  occurred_at: Date;
  voided: boolean;
}

/**
 * Voids stored events of the caller's tenant and environment: they stay in usage_events for
 * the record (voided_at, void_reason, voided_by_key_id) and count nowhere from then on.
 *
 * One transaction locks the events (in id order, so concurrent voids cannot deadlock), sets
 * their void columns, marks their hours in rollup_dirty_hours and writes the audit row.
 * The mark commits with the void, as a late event's mark commits with the event: a rollup
 * that read the window before the void committed leaves the mark (or meets a fresh one), so
 * the next recompute makes the window exact; readers treat marked hours as raw until then,
 * and raw reads skip voided events, so usage, quotas and analytics change at once.
 *
 * Idempotency keys are left claimed: a retry of the voided event's original call is still a
 * duplicate of it, never a new event.
 */
export async function voidEvents(deps: VoidDeps, caller: VoidCaller, request: VoidRequest, now = new Date()): Promise<VoidResult> {
  const eventIds = request.eventIds ?? [];
  const keys = request.idempotencyKeys ?? [];

  const { targets, eventOfKey, voidedNow } = await inTransaction(deps.pool, {}, async (client) => {
    const eventOfKey = new Map<string, string>();
    if (keys.length) {
      const { rows } = await client.query<{ key: string; event_id: string }>(
        'SELECT key, event_id FROM idempotency_keys WHERE tenant_id = $1 AND key = ANY($2::text[])',
        [caller.tenantId, [...new Set(keys)]],
      );
      for (const r of rows) eventOfKey.set(r.key, r.event_id);
    }
    const wanted = [...new Set([...eventIds, ...eventOfKey.values()])];
    const { rows: targets } = await client.query<Target>(
      `SELECT e.id, e.license_id, e.usage_type, trim_scale(e.quantity)::text AS quantity, e.occurred_at, e.voided_at IS NOT NULL AS voided
         FROM usage_events e
         JOIN licenses l ON l.id = e.license_id AND l.tenant_id = e.tenant_id
        WHERE e.tenant_id = $1 AND e.id = ANY($2::uuid[]) AND l.environment = $3::api_key_environment
        ORDER BY e.id
          FOR UPDATE OF e`,
      [caller.tenantId, wanted, caller.environment],
    );
    // Locked rows are current: one another call voided meanwhile reads as voided here.
    const voidedNow = targets.filter((t) => !t.voided);
    if (voidedNow.length) {
      await client.query(
        `UPDATE usage_events e SET voided_at = now(), void_reason = $4, voided_by_key_id = $5
           FROM unnest($2::uuid[], $3::timestamptz[]) AS t(id, occurred_at)
          WHERE e.tenant_id = $1 AND e.id = t.id AND e.occurred_at = t.occurred_at AND e.voided_at IS NULL`,
        [caller.tenantId, voidedNow.map((t) => t.id), voidedNow.map((t) => t.occurred_at), request.reason, caller.keyId],
      );
      const marks = uniqueBy(
        voidedNow.map((t) => ({ licenseId: t.license_id, hour: hourFloor(t.occurred_at) })),
        (m) => `${m.licenseId}|${m.hour.getTime()}`,
      ).sort((a, b) => (a.licenseId < b.licenseId ? -1 : a.licenseId > b.licenseId ? 1 : a.hour.getTime() - b.hour.getTime()));
      // Same statement shape and lock order (tenant, license, hour) as ingestion's marks.
      await client.query(
        `INSERT INTO rollup_dirty_hours (tenant_id, license_id, hour)
         SELECT $1, license_id, hour FROM unnest($2::uuid[], $3::timestamptz[]) AS m(license_id, hour)
         ON CONFLICT (tenant_id, license_id, hour) DO UPDATE SET marked_at = EXCLUDED.marked_at`,
        [caller.tenantId, marks.map((m) => m.licenseId), marks.map((m) => m.hour)],
      );
    }
    await client.query(
      `INSERT INTO audit_logs (id, tenant_id, actor_key_id, actor_prefix, action, target_type, target_id, outcome, ip, user_agent, metadata, created_at)
       VALUES ($1, $2, $3, $4, 'usage.voidEvents', 'usage_event', $5, 'success', $6, $7, $8, now())`,
      [
        randomUUID(),
        caller.tenantId,
        caller.keyId,
        caller.keyPrefix,
        voidedNow.length === 1 ? voidedNow[0]!.id : null,
        caller.ip,
        caller.userAgent?.slice(0, 512) ?? null,
        JSON.stringify({
          reason: request.reason,
          requested: eventIds.length + keys.length,
          voided: voidedNow.length,
          alreadyVoid: targets.length - voidedNow.length,
          // Every voided event carries voided_at = this row's created_at and this key's id: the full list beyond the first ids.
          eventIds: voidedNow.slice(0, AUDIT_IDS_MAX).map((t) => t.id),
          eventIdsTruncated: voidedNow.length > AUDIT_IDS_MAX,
        }),
      ],
    );
    return { targets, eventOfKey, voidedNow };
  });

  const byId = new Map(targets.map((t) => [t.id, t]));
  const newlyVoided = new Set(voidedNow.map((t) => t.id));
  const statusOf = (id: string | undefined): VoidStatus => (id === undefined || !byId.has(id) ? 'not_found' : newlyVoided.has(id) ? 'voided' : 'already_void');
  const results: VoidResult['results'] = [
    ...eventIds.map((id) => ({ eventId: byId.has(id) ? id : null, status: statusOf(id) })),
    ...keys.map((key) => {
      const id = eventOfKey.get(key);
      return { eventId: id !== undefined && byId.has(id) ? id : null, idempotencyKey: key, status: statusOf(id) };
    }),
  ];
  const windows = uniqueBy(
    voidedNow.map((t) => ({ licenseId: t.license_id, usageType: t.usage_type, hour: hourFloor(t.occurred_at).toISOString() })),
    (w) => `${w.licenseId}|${w.usageType}|${w.hour}`,
  ).sort((a, b) => (a.hour < b.hour ? -1 : a.hour > b.hour ? 1 : a.licenseId < b.licenseId ? -1 : a.licenseId > b.licenseId ? 1 : a.usageType < b.usageType ? -1 : 1));

  const recomputeJobId = voidedNow.length ? await afterVoid(deps, caller.tenantId, voidedNow, now) : null;
  return {
    voided: results.filter((r) => r.status === 'voided').length,
    alreadyVoid: results.filter((r) => r.status === 'already_void').length,
    notFound: results.filter((r) => r.status === 'not_found').length,
    results,
    windows,
    recomputeJobId,
  };
}

/**
 * What follows a committed void; none of it may fail the call (the void is done, and a retry
 * would answer already_void without doing any of this): counters given back, cached
 * analytics dropped, the recompute queued, thresholds checked again. A step that fails is
 * logged; the hourly rollup and threshold runs catch up on their own.
 */
async function afterVoid(deps: VoidDeps, tenantId: string, voided: Target[], now: Date): Promise<string | null> {
  await deps.quota
    .giveBack(
      tenantId,
      voided.map((t) => ({ licenseId: t.license_id, usageType: t.usage_type, quantity: t.quantity, occurredAt: t.occurred_at })),
    )
    .catch((err: unknown) => deps.logger.warn({ err }, 'voided usage not given back to the quota counters; they refuse early until rebuilt'));
  await deps.analytics.invalidate([tenantId]).catch((err: unknown) => deps.logger.warn({ err }, 'analytics cache not invalidated after a void'));

  // The hourly job of the last ended hour recomputes every hour marked before its end (the
  // late-event path). Marks of the current hour are cleared by that hour's own run.
  let recomputeJobId: string | null = null;
  const currentHour = hourFloor(now);
  if (voided.some((t) => t.occurred_at.getTime() < currentHour.getTime())) {
    try {
      const job = await deps.jobs.enqueue(
        'usage.aggregate.hourly',
        { window: hourWindow(new Date(currentHour.getTime() - HOUR_MS)) },
        { rerunTag: `void-${randomUUID().slice(0, 8)}` },
      );
      recomputeJobId = job.id ?? null;
    } catch (err) {
      deps.logger.warn({ err }, 'recompute after a void not queued; the next hourly run recomputes the marked hours');
    }
  }

  for (const licenseId of new Set(voided.map((t) => t.license_id))) {
    try {
      const limits = await loadLicenseLimits(deps.prisma, tenantId, licenseId);
      if (limits) await checkLicenseThresholds(deps.reactions, limits, now);
    } catch (err) {
      deps.logger.warn({ err, licenseId }, 'thresholds not checked after a void; the hourly check will');
    }
  }
  return recomputeJobId;
}

function uniqueBy<T>(items: T[], keyOf: (item: T) => string): T[] {
  const seen = new Map<string, T>();
  for (const item of items) if (!seen.has(keyOf(item))) seen.set(keyOf(item), item);
  return [...seen.values()];
}
