import { z } from 'zod';
import { usageTypeSchema } from '../usage/event-schema';
import { isIanaTimeZone } from '../timezones';
import { rangeOf } from './buckets';
import { resolveScope, type AnalyticsDeps } from './usage-analytics';

export const EXPORT_KINDS = ['events', 'rollups'] as const;
export type ExportKind = (typeof EXPORT_KINDS)[number];
/** Rows read per round trip: memory stays bounded by one batch whatever the export's size. */
export const EXPORT_BATCH_ROWS = 5_000;

export const exportQuerySchema = z.strictObject({
  format: z.enum(['csv', 'json']).default('csv'),
  licenseId: z.uuid().optional(),
  usageType: usageTypeSchema.optional(),
  startDate: z.iso.date(),
  endDate: z.iso.date(),
  timezone: z.string().max(64).refine(isIanaTimeZone, 'must be an IANA time zone name').optional(),
});
export type ExportQuery = z.output<typeof exportQuerySchema>;

const EVENT_COLUMNS = [
  'id', 'license_id', 'usage_type', 'quantity', 'occurred_at', 'received_at', 'idempotency_key', 'platform', 'device_type',
  'user_id', 'route', 'method', 'status_code', 'duration_ms', 'sdk_version', 'properties',
] as const;
const ROLLUP_COLUMNS = [
  'license_id', 'usage_type', 'date', 'timezone', 'quantity', 'event_count', 'max_quantity', 'distinct_users', 'error_count', 'duration_ms_sum',
] as const;

export function exportUrl(kind: ExportKind, query: ExportQuery): string {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== undefined) params.set(k, String(v));
  return `/api/export/${kind}?${params.toString()}`;
}

function csvField(value: unknown): string {
  if (value === null || value === undefined) return '';
  const text = typeof value === 'object' ? JSON.stringify(value) : String(value);
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

/**
 * Streams a tenant's events (or daily rollups) of a range as CSV or a JSON array. One
 * read-only REPEATABLE READ transaction gives the whole export one snapshot (no row twice,
 * none missed while events keep arriving); a cursor per license walks the
 * (tenant, license, occurred_at) index in order and is fetched in batches, and the caller
 * drains each chunk to the client before the next fetch: memory holds one batch.
 */
export async function* exportRows(deps: AnalyticsDeps, tenantId: string, kind: ExportKind, query: ExportQuery): AsyncGenerator<string> {
  const { licenses, timezone } = await resolveScope(deps, tenantId, query);
  const range = rangeOf(query.startDate, query.endDate, 'daily', timezone);
  const columns = kind === 'events' ? EVENT_COLUMNS : ROLLUP_COLUMNS;
  yield query.format === 'csv' ? `${columns.join(',')}\n` : '[';
  const client = await deps.pool.connect();
  let broken: Error | undefined;
  let open = false;
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    open = true;
    let first = true;
    for (const license of [...licenses].sort((a, b) => (a.id < b.id ? -1 : 1))) {
      const select =
        kind === 'events'
          ? eventsQuery(tenantId, license.id, query.usageType, range)
          : rollupsQuery(tenantId, license.id, query);
      await client.query(`DECLARE export_rows NO SCROLL CURSOR FOR ${select.text}`, select.values);
      for (;;) {
        const { rows } = await client.query<Record<string, unknown>>(`FETCH ${EXPORT_BATCH_ROWS} FROM export_rows`);
        if (rows.length === 0) break;
        let chunk = '';
        for (const row of rows) {
          if (query.format === 'csv') chunk += `${columns.map((c) => csvField(row[c])).join(',')}\n`;
          else {
            chunk += `${first ? '' : ','}\n${JSON.stringify(Object.fromEntries(columns.map((c) => [c, row[c] ?? null])))}`;
            first = false;
          }
        }
        yield chunk;
        if (rows.length < EXPORT_BATCH_ROWS) break;
      }
      await client.query('CLOSE export_rows');
    }
    await client.query('COMMIT');
    open = false;
  } catch (err) {
    broken = err as Error;
    throw err;
  } finally {
    // Also reached when the client goes away mid-stream (the caller returns the generator).
    if (open && !broken) await client.query('ROLLBACK').catch((err: Error) => (broken = err));
    client.release(broken);
  }
  if (query.format === 'json') yield '\n]\n';
}

function eventsQuery(tenantId: string, licenseId: string, usageType: string | undefined, range: { start: number; end: number }) {
  return {
    text: `SELECT id, license_id, usage_type, quantity::text AS quantity,
                  to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS occurred_at,
                  to_char(received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS received_at,
                  idempotency_key, platform, device_type, user_id, route, method, status_code, duration_ms, sdk_version, properties
             FROM usage_events
            WHERE tenant_id = $1 AND license_id = $2 AND ($3::text IS NULL OR usage_type = $3)
              AND occurred_at >= $4 AND occurred_at < $5
            ORDER BY occurred_at`,
    values: [tenantId, licenseId, usageType ?? null, new Date(range.start), new Date(range.end)],
  };
}

function rollupsQuery(tenantId: string, licenseId: string, query: ExportQuery) {
  return {
    text: `SELECT license_id, usage_type, to_char(date, 'YYYY-MM-DD') AS date, timezone, quantity::text AS quantity, event_count::text AS event_count,
                  max_quantity::text AS max_quantity, distinct_users, error_count::text AS error_count, duration_ms_sum::text AS duration_ms_sum
             FROM usage_rollups_daily
            WHERE tenant_id = $1 AND license_id = $2 AND ($3::text IS NULL OR usage_type = $3) AND date >= $4::date AND date <= $5::date
            ORDER BY date, usage_type`,
    values: [tenantId, licenseId, query.usageType ?? null, query.startDate, query.endDate],
  };
}
