import type pg from 'pg';
import { Prisma } from '../../generated/prisma/client';
import type { LicenseStatus } from '../../generated/prisma/client';
import { duplicateRedis, type Redis } from '../../lib/redis';
import { LruMap } from '../../lib/bounded-cache';
import type { PeriodType } from '../periods';
import type { Environment } from '../environments/environment';
import type { LicenseLimits } from '../quotas/limits';

/** A license as ingestion needs it: who owns it, whether it takes events, and its limits. */
export interface LicenseRecord extends LicenseLimits {
  status: LicenseStatus;
  usageTrackingEnabled: boolean;
  deleted: boolean;
}

export type LicenseRefusal = { code: 'LICENSE_NOT_FOUND' | 'LICENSE_INACTIVE'; message: string };

/**
 * The one rule for an event's license. Another tenant's license, one of the other environment
 * or a deleted one is "not found" (never reveal that it exists); a license not ACTIVE, or with
 * usage tracking off, is inactive. Null: the license takes events.
 */
export function licenseRefusal(license: LicenseRecord | null | undefined, tenantId: string, environment: Environment): LicenseRefusal | null {
  if (!license || license.tenantId !== tenantId || license.environment !== environment || license.deleted) {
    return { code: 'LICENSE_NOT_FOUND', message: 'licenseId: license not found' };
  }
  if (license.status !== 'ACTIVE') return { code: 'LICENSE_INACTIVE', message: `licenseId: license is ${license.status}, not ACTIVE` };
  if (!license.usageTrackingEnabled) return { code: 'LICENSE_INACTIVE', message: 'licenseId: usage tracking is disabled for this license' };
  return null;
}

/** Operations that change a license, its plan or its thresholds drop its cached entry (QuotaLimitsCache). */
export interface LicenseInvalidation {
  invalidate(licenseId: string): void;
}

export interface LicenseCacheOptions {
  /** How long an entry is used without reading it again (0: every lookup reads PostgreSQL). */
  ttlMs: number;
  /** Entries held (least recently used go first). */
  maxEntries?: number;
  /** With Redis, an invalidation is broadcast to every process (as key revocations are). */
  redis?: Redis;
  channelPrefix?: string;
}

interface Row {
  id: string;
  tenant_id: string;
  environment: Environment;
  status: LicenseStatus;
  usage_tracking_enabled: boolean;
  deleted: boolean;
  timezone: string;
  billing_anchor: Date;
  plan_limits: { usageType: string; periodType: PeriodType; limitQuantity: string }[];
  thresholds: {
    id: string;
    usageType: string;
    periodType: PeriodType;
    limitQuantity: string;
    gracePercentage: string;
    allowOverage: boolean;
    overageRateCents: number;
    warningLevels: number[];
  }[];
}

/** Licenses with their plan's limits and their own thresholds: one statement for any number of ids. */
const LOAD_SQL = `
SELECT l.id, l.tenant_id, l.environment, l.status, l.usage_tracking_enabled, l.deleted_at IS NOT NULL AS deleted,
       l.timezone, l.billing_anchor,
       coalesce((SELECT json_agg(json_build_object('usageType', p.usage_type, 'periodType', p.period_type,
                                                   'limitQuantity', p.limit_quantity::text))
                   FROM plan_limits p WHERE p.plan_id = l.plan_id), '[]') AS plan_limits,
       coalesce((SELECT json_agg(json_build_object('id', t.id, 'usageType', t.usage_type, 'periodType', t.period_type,
                                                   'limitQuantity', t.limit_quantity::text,
                                                   'gracePercentage', t.grace_percentage::text,
                                                   'allowOverage', t.allow_overage, 'overageRateCents', t.overage_rate_cents,
                                                   'warningLevels', t.warning_levels))
                   FROM usage_thresholds t WHERE t.tenant_id = l.tenant_id AND t.license_id = l.id), '[]') AS thresholds
  FROM licenses l
 WHERE l.id = ANY($1::uuid[])`;

function recordOf(r: Row): LicenseRecord {
  return {
    tenantId: r.tenant_id,
    licenseId: r.id,
    environment: r.environment,
    status: r.status,
    usageTrackingEnabled: r.usage_tracking_enabled,
    deleted: r.deleted,
    timezone: r.timezone,
    billingAnchor: r.billing_anchor,
    planLimits: r.plan_limits.map((p) => ({ usageType: p.usageType, periodType: p.periodType, limitQuantity: new Prisma.Decimal(p.limitQuantity) })),
    thresholds: r.thresholds.map((t) => ({
      ...t,
      limitQuantity: new Prisma.Decimal(t.limitQuantity),
      gracePercentage: new Prisma.Decimal(t.gracePercentage),
    })),
  };
}

const CHANGED_CHANNEL = 'licenses:changed';

/**
 * The one per-process cache of licenses that ingestion reads: the quota decision (limits) and
 * the writer (owner, environment, status) take the same entry, so a license is read once per
 * TTL instead of twice per event. An entry is dropped at once by whatever changes the license
 * (plan, status, deletion, thresholds, a billing webhook) in this process, and in every other
 * process through a Redis broadcast; should a broadcast be missed, the TTL bounds how long a
 * process goes on with the old entry. Unknown ids are not cached (a stream of random ids must
 * not push the real licenses out).
 */
export class LicenseCache implements LicenseInvalidation {
  private readonly entries: LruMap<string, { at: number; value: Promise<LicenseRecord | null> }>;
  /** Loads already running, shared by concurrent lookups of the same id. */
  private readonly loading = new Map<string, Promise<LicenseRecord | null>>();
  /** Bumped by every invalidation: a load that began before one must not fill the cache. */
  private epoch = 0;
  private subscriber?: Redis;

  constructor(
    private readonly pool: pg.Pool,
    private readonly options: LicenseCacheOptions,
  ) {
    this.entries = new LruMap(options.maxEntries ?? 20_000);
  }

  private get channel(): string {
    return `${this.options.channelPrefix ?? 'tally:'}${CHANGED_CHANNEL}`;
  }

  /** Listens for invalidations broadcast by other processes. */
  async start(): Promise<void> {
    if (!this.options.redis || this.subscriber) return;
    this.subscriber = duplicateRedis(this.options.redis);
    this.subscriber.on('error', () => undefined);
    this.subscriber.on('message', (_channel: string, licenseId: string) => this.forget(licenseId));
    await this.subscriber.subscribe(this.channel);
  }

  async stop(): Promise<void> {
    if (this.subscriber) await this.subscriber.quit().catch(() => undefined);
    this.subscriber = undefined;
  }

  /** The license is read again on its next event, here and (broadcast) in every other process. */
  invalidate(licenseId: string): void {
    this.forget(licenseId);
    this.options.redis?.publish(this.channel, licenseId).catch(() => undefined);
  }

  private forget(licenseId: string): void {
    this.epoch += 1;
    this.entries.delete(licenseId);
    this.loading.delete(licenseId);
  }

  /** One license, whatever its tenant: the caller applies licenseRefusal (or its own rule). */
  get(licenseId: string): Promise<LicenseRecord | null> {
    const cached = this.fresh(licenseId);
    if (cached) return cached;
    return this.load([licenseId]).get(licenseId)!;
  }

  /** Several licenses at once (a group of events): one statement for those not cached. */
  async getMany(licenseIds: Iterable<string>): Promise<Map<string, LicenseRecord>> {
    const found: [string, Promise<LicenseRecord | null>][] = [];
    const missing: string[] = [];
    for (const id of licenseIds) {
      const cached = this.fresh(id);
      if (cached) found.push([id, cached]);
      else missing.push(id);
    }
    if (missing.length) for (const entry of this.load(missing)) found.push(entry);
    const out = new Map<string, LicenseRecord>();
    for (const [id, value] of found) {
      const record = await value;
      if (record) out.set(id, record);
    }
    return out;
  }

  private fresh(licenseId: string): Promise<LicenseRecord | null> | undefined {
    const running = this.loading.get(licenseId);
    if (running) return running;
    const cached = this.entries.get(licenseId);
    if (cached && Date.now() - cached.at < this.options.ttlMs) return cached.value;
    return undefined;
  }

  private load(ids: string[]): Map<string, Promise<LicenseRecord | null>> {
    const epoch = this.epoch;
    const at = Date.now();
    const rows = this.pool.query<Row>(LOAD_SQL, [ids]).then(({ rows }) => new Map(rows.map((r) => [r.id, recordOf(r)])));
    const out = new Map<string, Promise<LicenseRecord | null>>();
    for (const id of ids) {
      const value = rows.then((m) => m.get(id) ?? null);
      out.set(id, value);
      this.loading.set(id, value);
      value.then(
        (record) => {
          if (this.loading.get(id) === value) this.loading.delete(id);
          // Only a load no invalidation overtook may be kept; unknown ids are not kept.
          if (record && epoch === this.epoch && this.options.ttlMs > 0) this.entries.set(id, { at, value });
        },
        () => {
          if (this.loading.get(id) === value) this.loading.delete(id);
        },
      );
    }
    return out;
  }
}
