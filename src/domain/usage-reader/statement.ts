import type pg from 'pg';

/** A statement with its parameters, not run yet (so that several can go in one round trip). */
export interface Statement {
  text: string;
  values: unknown[];
}

/** Marks the statements of analytics reads in pg_stat_activity and logs (and for the tests that count them). */
export const READ_LABEL = '/* analytics.read */ ';

/**
 * Runs an analytics read unnamed, so PostgreSQL plans it for its values every time. Named (a
 * prepared statement per connection), PostgreSQL may switch to one generic plan after five
 * runs, and these statements' generic plans lose their bounds: with `license_id = ANY($2)`,
 * `($3 IS NULL OR usage_type = $3)` and ranges over event partitions given as parameters, a
 * review on skewed data (3,000 licenses; one license with 80k events over six months) saw the
 * distinct users read a license's whole retained history with no partition pruned (37 ms
 * against 7.4), the raw events filtered by license instead of sought, and a given usage type no
 * longer bound the rollup scans. Planning each run costs PostgreSQL about a millisecond for a
 * year's statement; a plan that reads a license's whole history costs more, and grows with it.
 */
export function runUnnamed<R extends pg.QueryResultRow>(pool: pg.Pool, statement: Statement): Promise<pg.QueryResult<R>> {
  return pool.query<R>({ text: READ_LABEL + statement.text, values: statement.values });
}
