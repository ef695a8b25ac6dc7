import type pg from 'pg';
import { Prisma } from '../../generated/prisma/client';
import { describeRange, rangeOf, type Span } from './buckets';
import { resolveScope, type AnalyticsDeps } from './usage-analytics';
import { usageSeries, type SeriesScope } from '../usage-reader/series';
import type { Environment } from '../environments/environment';

export const BREAKDOWN_DIMENSIONS = ['platform', 'deviceType', 'route', 'statusClass', 'sdkVersion', 'usageType', 'country', 'organization'] as const;
export type BreakdownDimension = (typeof BREAKDOWN_DIMENSIONS)[number];

export interface BreakdownInput {
  licenseId?: string;
  usageType?: string;
  startDate: string;
  endDate: string;
  timezone?: string;
  by: BreakdownDimension;
  limit: number;
}

interface Group {
  key: string | null;
  quantity: Prisma.Decimal;
  events: bigint;
}

/** One way of grouping a range's usage; chosen per dimension by an exhaustive switch. */
type BreakdownStrategy = (pool: pg.Pool, scope: SeriesScope, range: Span, timezone: string) => Promise<Group[]>;

/** Dimensions rollups do not keep are grouped over the raw events (kept USAGE_EVENT_RETENTION_DAYS). */
function rawDimension(column: string): BreakdownStrategy {
  return async (pool, scope, range) => {
    const { rows } = await pool.query<{ key: string | null; quantity: string; events: string }>(
      `SELECT ${column} AS key, sum(quantity)::text AS quantity, count(*)::text AS events
         FROM usage_events
        WHERE tenant_id = $1 AND license_id = ANY($2::uuid[]) AND ($3::text IS NULL OR usage_type = $3)
          AND occurred_at >= $4 AND occurred_at < $5 AND voided_at IS NULL
        GROUP BY 1`,
      [scope.tenantId, scope.licenses.map((l) => l.id), scope.usageType ?? null, new Date(range.start), new Date(range.end)],
    );
    return rows.map((r) => ({ key: r.key, quantity: new Prisma.Decimal(r.quantity), events: BigInt(r.events) }));
  };
}

/** Usage types are in the rollups: exact over any range, however old. */
const byUsageType: BreakdownStrategy = async (pool, scope, range, timezone) => {
  const series = await usageSeries(pool, scope, [range], timezone);
  return [...(series.get(0) ?? new Map())].map(([key, cell]) => ({ key, quantity: cell.quantity, events: cell.events }));
};

function strategyFor(by: BreakdownDimension): BreakdownStrategy {
  switch (by) {
    case 'platform':
      return rawDimension('platform');
    case 'deviceType':
      return rawDimension('device_type');
    case 'route':
      return rawDimension('route');
    case 'sdkVersion':
      return rawDimension('sdk_version');
    case 'statusClass':
      return rawDimension(`CASE WHEN status_code IS NULL THEN NULL ELSE (status_code / 100)::text || 'xx' END`);
    case 'usageType':
      return byUsageType;
    case 'country':
      // Looked up from ipAddress at ingestion (ISO 3166-1 alpha-2); null: no public address, or unplaced.
      return rawDimension('country');
    case 'organization':
      // As the client sent it on the event. The user's email is never a dimension: personal data
      // stays out of analytics answers (privacy.exportUser and exports with includeUserEmail have it).
      return rawDimension('organization');
    default: {
      const never: never = by;
      throw new Error(`unknown breakdown ${String(never)}`);
    }
  }
}

/**
 * The top `limit` values of a dimension by quantity (ties by events, then by value), the
 * rest summed as "other". `key: null` is usage without that dimension.
 */
export async function usageBreakdown(deps: AnalyticsDeps, tenantId: string, environment: Environment, args: BreakdownInput) {
  const { licenses, timezone } = await resolveScope(deps, tenantId, environment, args);
  const range = rangeOf(args.startDate, args.endDate, 'daily', timezone);
  const groups = await strategyFor(args.by)(deps.pool, { tenantId, licenses, usageType: args.usageType }, range, timezone);
  groups.sort(
    (a, b) =>
      b.quantity.comparedTo(a.quantity) ||
      (b.events > a.events ? 1 : b.events < a.events ? -1 : 0) ||
      (a.key === b.key ? 0 : a.key === null ? 1 : b.key === null ? -1 : a.key < b.key ? -1 : 1),
  );
  const total = groups.reduce((s, g) => ({ quantity: s.quantity.plus(g.quantity), events: s.events + g.events }), {
    quantity: new Prisma.Decimal(0),
    events: 0n,
  });
  const share = (q: Prisma.Decimal) => (total.quantity.isZero() ? 0 : q.div(total.quantity).toDecimalPlaces(6).toNumber());
  const top = groups.slice(0, args.limit);
  const rest = groups.slice(args.limit);
  const otherQuantity = rest.reduce((s, g) => s.plus(g.quantity), new Prisma.Decimal(0));
  return {
    period: describeRange(args, timezone, range),
    by: args.by,
    total: { quantity: total.quantity.toFixed(), events: Number(total.events) },
    items: top.map((g) => ({ key: g.key, quantity: g.quantity.toFixed(), events: Number(g.events), share: share(g.quantity) })),
    other: {
      keys: rest.length,
      quantity: otherQuantity.toFixed(),
      events: Number(rest.reduce((s, g) => s + g.events, 0n)),
      share: share(otherQuantity),
    },
  };
}
