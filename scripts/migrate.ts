import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { applyMigrations, diffSchemaSql, ensureDatabase, MIGRATIONS_DIR, SCHEMA_PATH } from '../src/lib/migrator';
import { checkSchemaDrift } from '../src/lib/schema-drift';

// Offline stand-in for `prisma migrate deploy|dev --create-only` (see src/lib/migrator.ts).
//   deploy       create the database if missing and apply pending migrations
//   new <name>   write prisma/migrations/<timestamp>_<name>/migration.sql from the change
//                to schema.prisma since the last migration (snapshot kept beside them)
//   drift        exit 1 when the migrated database and schema.prisma disagree
const SNAPSHOT = path.join(MIGRATIONS_DIR, 'schema.snapshot.prisma');
// Migrations hold session advisory locks: through the direct connection when a pooler fronts DATABASE_URL.
const url = process.env.DATABASE_DIRECT_URL || process.env.DATABASE_URL || 'postgresql://postgres@127.0.0.1:5432/tally';

async function main(): Promise<void> {
  const [command, name] = process.argv.slice(2);
  switch (command) {
    case 'deploy': {
      await ensureDatabase(url);
      const applied = await applyMigrations(url, {
        log: (message, details) => process.stderr.write(`${message}${details ? ` ${JSON.stringify(details)}` : ''}\n`),
      });
      process.stdout.write(applied.length ? `applied: ${applied.join(', ')}\n` : 'database is up to date\n');
      return;
    }
    case 'new': {
      if (!name || !/^[a-z0-9_]+$/.test(name)) throw new Error('usage: migrate new <snake_case_name>');
      const previous = await readFile(SNAPSHOT, 'utf8').catch(() => null);
      // The diff is computed from two schema files; the engine only needs some database to open.
      const anyDatabase = new URL(url);
      anyDatabase.pathname = '/postgres';
      const sql = await diffSchemaSql(anyDatabase.toString(), previous);
      if (!sql.trim() || /^-- This is an empty migration\.?\s*$/.test(sql.trim())) {
        process.stdout.write('schema.prisma has not changed since the last migration\n');
        return;
      }
      const stamp = new Date().toISOString().replace(/\D/g, '').slice(0, 14);
      const dir = path.join(MIGRATIONS_DIR, `${stamp}_${name}`);
      await mkdir(dir, { recursive: true });
      await writeFile(path.join(dir, 'migration.sql'), sql);
      await writeFile(SNAPSHOT, await readFile(SCHEMA_PATH, 'utf8'));
      process.stdout.write(`wrote ${path.relative(process.cwd(), dir)}/migration.sql\n`);
      return;
    }
    case 'drift': {
      const differences = await checkSchemaDrift(url);
      if (differences.length) {
        process.stdout.write(`drift:\n${differences.join('\n')}\n`);
        process.exitCode = 1;
      } else {
        process.stdout.write('no drift\n');
      }
      return;
    }
    default:
      throw new Error('usage: migrate deploy | new <name> | drift');
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
