import { createHash } from 'node:crypto';
import type { Db } from '../../lib/db';
import type { Logger } from '../../lib/logger';

export type RefusalReason = 'missing' | 'malformed' | 'unknown' | 'revoked' | 'throttled';

interface Pending {
  address: string | null;
  windowStart: number;
  firstPrefix: string | null;
  userAgent: string | null;
  /** Counted here since the last write. */
  count: number;
  reasons: Partial<Record<RefusalReason, number>>;
  prefixes: Set<string>;
  targets: Set<string>;
}

/** Distinct key prefixes and targets kept per row; the count still counts every refusal. */
const MAX_LISTED = 20;
/** Addresses followed per process at once; past it, refusals share one row with no address. */
const MAX_PENDING = 10_000;

/**
 * Refused authentication, audited as one `auth.refused` row per client address and window
 * with a count, instead of a row per refusal (a flood of bad keys wrote a row each). The row's
 * id is derived from the deployment, the address and the window, so every process adds its
 * counts to the same row (INSERT … ON CONFLICT (id)). A new address's first refusal is written
 * at once; later ones are added by `flush`, every few seconds.
 */
export class RefusalAudit {
  private readonly pending = new Map<string, Pending>();

  constructor(
    private readonly db: Db,
    private readonly logger: Logger | undefined,
    private readonly options: { namespace: string; windowSeconds: number },
  ) {}

  record(entry: { reason: RefusalReason; address: string | null; prefix?: string; target?: string; userAgent?: string | null }): void {
    const windowMs = this.options.windowSeconds * 1000;
    const windowStart = Math.floor(Date.now() / windowMs) * windowMs;
    let id = `${entry.address ?? ''}|${windowStart}`;
    let address = entry.address;
    if (!this.pending.has(id) && this.pending.size >= MAX_PENDING) {
      id = `|${windowStart}`;
      address = null;
    }
    let item = this.pending.get(id);
    const isNew = !item;
    if (!item) {
      item = {
        address,
        windowStart,
        firstPrefix: entry.prefix ?? null,
        userAgent: entry.userAgent?.slice(0, 512) ?? null,
        count: 0,
        reasons: {},
        prefixes: new Set(),
        targets: new Set(),
      };
      this.pending.set(id, item);
    }
    item.count += 1;
    item.reasons[entry.reason] = (item.reasons[entry.reason] ?? 0) + 1;
    if (entry.prefix && item.prefixes.size < MAX_LISTED) item.prefixes.add(entry.prefix);
    if (entry.target && item.targets.size < MAX_LISTED) item.targets.add(entry.target.slice(0, 200));
    if (isNew) void this.write(item);
  }

  /** Writes what was counted since the last write; forgets windows that are over. */
  async flush(): Promise<void> {
    const windowMs = this.options.windowSeconds * 1000;
    const writes: Promise<void>[] = [];
    for (const [id, item] of this.pending) {
      if (item.count > 0) writes.push(this.write(item));
      if (item.windowStart + windowMs <= Date.now()) this.pending.delete(id);
    }
    await Promise.all(writes);
  }

  private rowId(item: Pending): string {
    const hex = createHash('sha256').update(`${this.options.namespace}|auth.refused|${item.address ?? ''}|${item.windowStart}`).digest('hex');
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
  }

  private async write(item: Pending): Promise<void> {
    const metadata = {
      count: item.count,
      windowStart: new Date(item.windowStart).toISOString(),
      windowEnd: new Date(item.windowStart + this.options.windowSeconds * 1000).toISOString(),
      reasons: item.reasons,
      prefixes: [...item.prefixes],
      targets: [...item.targets],
    };
    item.count = 0;
    item.reasons = {};
    try {
      // counts add up; the lists are merged and stay bounded
      await this.db.$executeRaw`
        INSERT INTO audit_logs (id, tenant_id, actor_key_id, actor_prefix, action, target_type, target_id, outcome, ip, user_agent, metadata)
        VALUES (${this.rowId(item)}::uuid, NULL, NULL, ${item.firstPrefix}, 'auth.refused', 'address', ${item.address}, 'refused',
                ${item.address}, ${item.userAgent}, ${JSON.stringify(metadata)}::jsonb)
        ON CONFLICT (id) DO UPDATE SET metadata = jsonb_build_object(
          'count', (audit_logs.metadata->>'count')::bigint + (EXCLUDED.metadata->>'count')::bigint,
          'windowStart', audit_logs.metadata->'windowStart',
          'windowEnd', audit_logs.metadata->'windowEnd',
          'reasons', (SELECT coalesce(jsonb_object_agg(k, total), '{}'::jsonb)
                        FROM (SELECT k, sum(v::bigint) AS total
                                FROM (SELECT * FROM jsonb_each_text(audit_logs.metadata->'reasons')
                                      UNION ALL SELECT * FROM jsonb_each_text(EXCLUDED.metadata->'reasons')) AS r(k, v)
                               GROUP BY k) AS s),
          'prefixes', (SELECT coalesce(jsonb_agg(p), '[]'::jsonb)
                         FROM (SELECT p FROM jsonb_array_elements_text(audit_logs.metadata->'prefixes') AS a(p)
                               UNION SELECT p FROM jsonb_array_elements_text(EXCLUDED.metadata->'prefixes') AS b(p)
                               ORDER BY p LIMIT ${MAX_LISTED}) AS s),
          'targets', (SELECT coalesce(jsonb_agg(t), '[]'::jsonb)
                        FROM (SELECT t FROM jsonb_array_elements_text(audit_logs.metadata->'targets') AS a(t)
                              UNION SELECT t FROM jsonb_array_elements_text(EXCLUDED.metadata->'targets') AS b(t)
                              ORDER BY t LIMIT ${MAX_LISTED}) AS s))`;
    } catch (err) {
      // audit writes must not turn a request into a failure; a lost count is logged
      this.logger?.error({ err, address: item.address }, 'audit write failed (auth.refused)');
    }
  }
}
