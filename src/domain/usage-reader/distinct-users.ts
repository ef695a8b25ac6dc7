import { createHash } from 'node:crypto';
import type pg from 'pg';
import type { Span } from '../analytics/buckets';
import type { SourcePlan } from './source-plan';
import { pgArray } from '../../lib/pg-array';

/** Licenses that share a source plan (see usageSeries' groups). */
export interface UserPlanGroup {
  licenseIds: string[];
  plan: SourcePlan;
}

/**
 * The spans of a plan that are not whole final days (hourly-rolled-up hours too: hourly
 * rollups keep no user sets), sorted and merged, so each is one index range scan.
 */
export function rawUserSpans(plan: SourcePlan): Span[] {
  const spans = [...plan.hourly, ...plan.raw].map((s) => ({ start: s.start, end: s.end })).sort((a, b) => a.start - b.start);
  const merged: Span[] = [];
  for (const span of spans) {
    const last = merged.at(-1);
    if (last && span.start <= last.end) last.end = Math.max(last.end, span.end);
    else merged.push(span);
  }
  return merged;
}

const statementNames = new Map<string, string>();
function statementName(text: string): string {
  let name = statementNames.get(text);
  if (name === undefined) {
    if (statementNames.size >= 200) statementNames.clear();
    name = `analytics.users.${createHash('sha1').update(text).digest('hex')}`;
    statementNames.set(text, name);
  }
  return name;
}

/**
 * Distinct non-null user ids of a scope, exactly, in one statement: the whole final days of
 * each group's plan come from daily_user_sets (bitmaps over the tenant's user numbers, OR-ed
 * after padding to one length), every other instant from raw events (partial days at the
 * range's edges, days not final yet or marked by late events, voids or erasures, days cut in
 * another zone). A raw user counts unless its number is already set in the union of the
 * bitmaps; a user without a number (not rolled up anywhere yet) always counts. The groups
 * partition the licenses, so everything is OR-ed together and no user counts twice.
 */
export async function distinctUsersOfPlans(
  pool: pg.Pool,
  scope: { tenantId: string; usageType?: string },
  groups: UserPlanGroup[],
): Promise<number> {
  const statement = distinctUsersStatement(scope, groups);
  if (!statement) return 0;
  const { rows } = await pool.query<{ n: string }>({ name: statementName(statement.text), ...statement });
  return Number(rows[0]!.n);
}

/** A statement with its parameters, not run yet (so that several can go in one round trip). */
export interface Statement {
  text: string;
  values: unknown[];
}

/** distinctUsersOfPlans' statement (one row, `n`: the count as text); null when the plans read nothing. */
export function distinctUsersStatement(scope: { tenantId: string; usageType?: string }, groups: UserPlanGroup[]): Statement | null {
  const params: unknown[] = [scope.tenantId, scope.usageType ?? null];
  const param = (value: unknown) => `$${params.push(value)}`;
  const sets: string[] = [];
  const raw: string[] = [];
  for (const group of groups) {
    const ids = param(group.licenseIds);
    if (group.plan.daily.length) {
      sets.push(`SELECT users FROM daily_user_sets
                  WHERE tenant_id = $1 AND license_id = ANY(${ids}::uuid[]) AND ($2::text IS NULL OR usage_type = $2)
                    AND date = ANY(${param(pgArray(group.plan.daily, true, (d) => d.date))}::date[])`);
    }
    const spans = rawUserSpans(group.plan);
    if (spans.length) {
      // One index range scan per span (LATERAL), never one scan from the first span's start to the last one's end.
      raw.push(`SELECT e.user_id
                  FROM unnest(${param(pgArray(spans, true, (s) => new Date(s.start).toISOString()))}::timestamptz[],
                              ${param(pgArray(spans, true, (s) => new Date(s.end).toISOString()))}::timestamptz[]) AS w(s, e)
                 CROSS JOIN LATERAL (
                   SELECT user_id FROM usage_events
                    WHERE tenant_id = $1 AND license_id = ANY(${ids}::uuid[]) AND ($2::text IS NULL OR usage_type = $2)
                      AND occurred_at >= w.s AND occurred_at < w.e AND voided_at IS NULL AND user_id IS NOT NULL) e`);
    }
  }
  if (sets.length === 0 && raw.length === 0) return null;
  const text = `
    WITH sets AS (${sets.length ? sets.join(' UNION ALL ') : 'SELECT NULL::varbit AS users WHERE false'}),
    u AS (SELECT bit_or(s.users || repeat('0', w.n - length(s.users))::varbit) AS bits
            FROM sets s, (SELECT max(length(users)) AS n FROM sets) w),
    raw AS (${raw.length ? `SELECT DISTINCT user_id FROM (${raw.join(' UNION ALL ')}) r` : 'SELECT NULL::text AS user_id WHERE false'})
    SELECT (coalesce((SELECT bit_count(bits) FROM u), 0)
          + (SELECT count(*) FROM raw CROSS JOIN u
               LEFT JOIN usage_user_numbers n ON n.tenant_id = $1 AND n.user_id = raw.user_id
              WHERE n.user_no IS NULL OR u.bits IS NULL OR n.user_no >= length(u.bits) OR get_bit(u.bits, n.user_no) = 0))::text AS n`;
  return { text, values: params };
}
