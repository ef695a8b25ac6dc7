import pg from 'pg';
import { diffSchemaSql, ensureDatabase } from './migrator';

// Prisma's own drift check (`migrate diff --from-config-datasource`) needs the native engine,
// and the wasm engine cannot describe a live database through the pg adapter. So we build a
// scratch database straight from schema.prisma and compare catalogs: tables, columns,
// primary/unique/foreign keys, indexes and enums. Partition children and hand-written extras
// (functions, CHECKs) are not part of schema.prisma and are left out on both sides.

const CATALOG_SQL = `
  SELECT 'table ' || c.relname || ' column ' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
         || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
         || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '') AS item
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
    LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
   WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND c.relname <> '_prisma_migrations'
  UNION ALL
  SELECT 'table ' || c.relname || ' constraint ' || con.conname || ' ' || pg_get_constraintdef(con.oid)
    FROM pg_constraint con
    JOIN pg_class c ON c.oid = con.conrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
   WHERE con.contype IN ('p', 'u', 'f') AND NOT c.relispartition AND c.relname <> '_prisma_migrations'
  UNION ALL
  SELECT 'index ' || replace(pg_get_indexdef(i.indexrelid), ' ON ONLY ', ' ON ')
    FROM pg_index i
    JOIN pg_class ic ON ic.oid = i.indexrelid
    JOIN pg_class c ON c.oid = i.indrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
   WHERE NOT c.relispartition AND c.relname <> '_prisma_migrations'
  UNION ALL
  SELECT 'enum ' || t.typname || ' ' || string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder)
    FROM pg_type t
    JOIN pg_enum e ON e.enumtypid = t.oid
    JOIN pg_namespace n ON n.oid = t.typnamespace AND n.nspname = 'public'
   GROUP BY t.typname`;

async function describe(connectionString: string): Promise<Set<string>> {
  const client = new pg.Client({ connectionString });
  await client.connect();
  try {
    const { rows } = await client.query<{ item: string }>(CATALOG_SQL);
    return new Set(rows.map((r) => r.item));
  } finally {
    await client.end();
  }
}

/** Lines that differ between the migrated database and schema.prisma; empty when in sync. */
export async function checkSchemaDrift(connectionString: string): Promise<string[]> {
  const scratchUrl = new URL(connectionString);
  scratchUrl.pathname = `/tally_drift_${process.pid}_${Date.now()}`;
  const scratch = scratchUrl.toString();
  await ensureDatabase(scratch);
  try {
    const sql = await diffSchemaSql(scratch, null);
    const client = new pg.Client({ connectionString: scratch });
    await client.connect();
    try {
      await client.query(sql);
    } finally {
      await client.end();
    }
    const [migrated, expected] = await Promise.all([describe(connectionString), describe(scratch)]);
    const differences: string[] = [];
    for (const item of expected) if (!migrated.has(item)) differences.push(`- missing in database: ${item}`);
    for (const item of migrated) if (!expected.has(item)) differences.push(`+ not in schema.prisma: ${item}`);
    return differences.sort();
  } finally {
    const admin = new URL(connectionString);
    admin.pathname = '/postgres';
    const client = new pg.Client({ connectionString: admin.toString() });
    await client.connect();
    await client.query(`DROP DATABASE IF EXISTS "${scratchUrl.pathname.slice(1)}" WITH (FORCE)`);
    await client.end();
  }
}
