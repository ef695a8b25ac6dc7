import type pg from 'pg';
import { z } from 'zod';
import { usageTypeSchema } from '../usage/event-schema';
import { isIanaTimeZone } from '../timezones';
import { calendarDate, rangeOf } from './buckets';
import { resolveScope, type AnalyticsDeps } from './usage-analytics';
import type { Environment } from '../environments/environment';

export const EXPORT_KINDS = ['events', 'rollups'] as const;
export type ExportKind = (typeof EXPORT_KINDS)[number];
/** Rows read per round trip: memory stays bounded by one batch whatever the export's size. */
export const EXPORT_BATCH_ROWS = 1_000;

export const exportQuerySchema = z.strictObject({
  format: z.enum(['csv', 'json']).default('csv'),
  licenseId: z.uuid().optional(),
  usageType: usageTypeSchema.optional(),
  startDate: calendarDate,
  endDate: calendarDate,
  timezone: z.string().max(64).refine(isIanaTimeZone, 'must be an IANA time zone name').optional(),
  /**
   * Events export only: voided events too, with their void columns (voided_at, void_reason,
   * voided_by_key_id). A query string says `true` or `false`; JSON callers may send a boolean.
   */
  includeVoided: z.union([z.boolean(), z.enum(['true', 'false']).transform((v) => v === 'true')]).optional(),
  /**
   * Events export only: the user_email column too. Emails are personal data: never exported
   * unless asked for, and only owners (and admins) may ask (EMAIL_EXPORT_ROLES).
   */
  includeUserEmail: z.union([z.boolean(), z.enum(['true', 'false']).transform((v) => v === 'true')]).optional(),
});
export type ExportQuery = z.output<typeof exportQuerySchema>;

/**
 * Columns of an export as SQL: PostgreSQL writes each row as one CSV line or one JSON object,
 * so the API handles a string per row instead of an object of 16 parsed fields (at a million
 * rows that garbage, not the batch, was what grew the heap). `text` is the column as text
 * (null stays null); `json` is its value in a JSON row (numbers stay numbers).
 */
interface Column {
  name: string;
  text: string;
  json: string;
}
const col = (name: string, text = name, json = text): Column => ({ name, text, json });
const utcStamp = (c: string) => `to_char(${c} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;

const EVENT_COLUMNS: Column[] = [
  col('id', 'id::text'), col('license_id', 'license_id::text'), col('usage_type'), col('quantity', 'trim_scale(quantity)::text'),
  col('occurred_at', utcStamp('occurred_at')), col('received_at', utcStamp('received_at')), col('idempotency_key'), col('platform'),
  col('device_type'), col('user_id'), col('route'), col('method'), col('status_code', 'status_code::text', 'status_code'),
  col('duration_ms', 'duration_ms::text', 'duration_ms'), col('sdk_version'), col('properties', 'properties::text', 'properties'),
  // Appended, so readers of the earlier columns by position are unaffected.
  col('country'), col('organization'),
];
/** Roles that may export users' emails (includeUserEmail); the others get a 403 for asking. */
export const EMAIL_EXPORT_ROLES: readonly string[] = ['owner', 'admin'];
/** Appended (before any void columns) only when includeUserEmail is asked for. */
const EMAIL_COLUMNS: Column[] = [col('user_email')];
/** The void columns, appended when an export includes voided events (null for the others). */
const VOID_COLUMNS: Column[] = [
  col('voided_at', utcStamp('voided_at')), col('void_reason'), col('voided_by_key_id', 'voided_by_key_id::text'),
];
const ROLLUP_COLUMNS: Column[] = [
  col('license_id', 'license_id::text'), col('usage_type'), col('date', "to_char(date, 'YYYY-MM-DD')"), col('timezone'),
  col('quantity', 'trim_scale(quantity)::text'), col('event_count', 'event_count::text'), col('max_quantity', 'trim_scale(max_quantity)::text'),
  col('distinct_users', 'distinct_users::text', 'distinct_users'), col('error_count', 'error_count::text'), col('duration_ms_sum', 'duration_ms_sum::text'),
];

/** RFC 4180: empty for null, quoted (quotes doubled) when the text holds a quote, comma or line break. */
const csvField = (text: string) => `CASE WHEN ${text} IS NULL THEN '' WHEN ${text} ~ '[",\r\n]' THEN '"' || replace(${text}, '"', '""') || '"' ELSE ${text} END`;

function lineSql(columns: Column[], format: 'csv' | 'json'): string {
  return format === 'csv'
    ? columns.map((c) => csvField(c.text)).join(` || ',' || `)
    : `json_build_object(${columns.map((c) => `'${c.name}', ${c.json}`).join(', ')})::text`;
}

export function exportUrl(kind: ExportKind, query: ExportQuery): string {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== undefined) params.set(k, String(v));
  return `/api/export/${kind}?${params.toString()}`;
}

export interface ExportDeps extends AnalyticsDeps {
  /** Where the export's long transaction runs: a pool of its own (see Database.exportPool). */
  exportPool: pg.Pool;
}

/**
 * Streams a tenant's events (or daily rollups) of a range as CSV or a JSON array. One
 * read-only REPEATABLE READ transaction gives the whole export one snapshot (no row twice,
 * none missed while events keep arriving); a cursor per license walks the
 * (tenant, license, occurred_at) index in order and is fetched in batches, and the caller
 * drains each chunk to the client before the next fetch: memory holds one batch.
 *
 * Nothing is yielded before the connection is held and the transaction open: a caller that
 * answers 200 on the first chunk never has to cut that answer short for want of a
 * connection. Each statement of the export is bounded by `statementTimeoutMs`.
 */
export async function* exportRows(
  deps: ExportDeps,
  tenantId: string,
  environment: Environment,
  kind: ExportKind,
  query: ExportQuery,
  options: { statementTimeoutMs: number },
): AsyncGenerator<string> {
  const { licenses, timezone } = await resolveScope(deps, tenantId, environment, query);
  const range = rangeOf(query.startDate, query.endDate, 'daily', timezone);
  const includeVoided = kind === 'events' && query.includeVoided === true;
  const includeEmail = kind === 'events' && query.includeUserEmail === true;
  const columns =
    kind === 'events' ? [...EVENT_COLUMNS, ...(includeEmail ? EMAIL_COLUMNS : []), ...(includeVoided ? VOID_COLUMNS : [])] : ROLLUP_COLUMNS;
  const client = await deps.exportPool.connect();
  let broken: Error | undefined;
  let open = false;
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    open = true;
    await client.query(`SET LOCAL statement_timeout = ${Math.max(1, Math.trunc(options.statementTimeoutMs))}`);
    yield query.format === 'csv' ? `${columns.map((c) => c.name).join(',')}\n` : '[';
    let first = true;
    for (const license of [...licenses].sort((a, b) => (a.id < b.id ? -1 : 1))) {
      const select =
        kind === 'events'
          ? eventsQuery(lineSql(columns, query.format), tenantId, license.id, query.usageType, range, includeVoided)
          : rollupsQuery(lineSql(columns, query.format), tenantId, license.id, query);
      await client.query(`DECLARE export_rows NO SCROLL CURSOR FOR ${select.text}`, select.values);
      for (;;) {
        const { rows } = await client.query<{ line: string }>(`FETCH ${EXPORT_BATCH_ROWS} FROM export_rows`);
        if (rows.length === 0) break;
        let chunk = '';
        for (const { line } of rows) {
          if (query.format === 'csv') chunk += `${line}\n`;
          else {
            chunk += `${first ? '' : ','}\n${line}`;
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
    // A connection whose statement failed or whose ROLLBACK failed is destroyed, not reused.
    if (open && !broken) await client.query('ROLLBACK').catch((err: Error) => (broken = err));
    client.release(broken);
  }
  if (query.format === 'json') yield '\n]\n';
}

function eventsQuery(
  line: string,
  tenantId: string,
  licenseId: string,
  usageType: string | undefined,
  range: { start: number; end: number },
  includeVoided: boolean,
) {
  return {
    text: `SELECT ${line} AS line
             FROM usage_events
            WHERE tenant_id = $1 AND license_id = $2 AND ($3::text IS NULL OR usage_type = $3)
              AND occurred_at >= $4 AND occurred_at < $5${includeVoided ? '' : ' AND voided_at IS NULL'}
            ORDER BY occurred_at`,
    values: [tenantId, licenseId, usageType ?? null, new Date(range.start), new Date(range.end)],
  };
}

function rollupsQuery(line: string, tenantId: string, licenseId: string, query: ExportQuery) {
  return {
    text: `SELECT ${line} AS line
             FROM usage_rollups_daily
            WHERE tenant_id = $1 AND license_id = $2 AND ($3::text IS NULL OR usage_type = $3) AND date >= $4::date AND date <= $5::date
            ORDER BY date, usage_type`,
    values: [tenantId, licenseId, query.usageType ?? null, query.startDate, query.endDate],
  };
}
