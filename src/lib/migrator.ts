import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { createRequire } from 'node:module';
import { PrismaPg } from '@prisma/adapter-pg';
import { bindMigrationAwareSqlAdapterFactory } from '@prisma/driver-adapter-utils';
import pg from 'pg';

// Prisma 7's CLI downloads a native schema engine before any migration command, and its
// binary host is unreachable on our machines (../shared/notes/prisma-offline.md). The same
// engine ships as wasm on npm; we drive it here so `npm start` can migrate anywhere, while
// migrations stay in Prisma's folder layout for `prisma migrate deploy` where it works.

const ROOT = path.resolve(__dirname, '..', '..');
export const SCHEMA_PATH = path.join(ROOT, 'prisma', 'schema.prisma');
export const MIGRATIONS_DIR = path.join(ROOT, 'prisma', 'migrations');
const LOCKFILE = 'provider = "postgresql"\n';
const NO_FILTERS = { externalTables: [], externalEnums: [] };

// Node has WebAssembly at run time; TypeScript only types it with the DOM lib.
interface WasmApi {
  instantiate(bytes: Uint8Array, imports: object): Promise<{ instance: { exports: Record<string, unknown> } }>;
}
const { WebAssembly } = globalThis as unknown as { WebAssembly: WasmApi };

interface WasmSchemaEngine {
  applyMigrations(input: unknown): Promise<{ appliedMigrationNames: string[] }>;
  diff(input: unknown): Promise<{ exitCode: number; stdout: string | null }>;
  free(): void;
}

interface EngineModule {
  __wbg_set_wasm(exports: Record<string, unknown>): void;
  SchemaEngine: {
    new: (options: unknown, log: (message: string) => void, adapter: object) => Promise<WasmSchemaEngine>;
  };
}

/**
 * adapter-pg's executeScript splits a migration on every ";", which breaks function bodies
 * and comments. We send the script whole instead: PostgreSQL runs a multi-statement simple
 * query in one implicit transaction, so a migration applies completely or not at all.
 */
class WholeScriptPg extends PrismaPg {
  override async connect(): ReturnType<PrismaPg['connect']> {
    const adapter = await super.connect();
    const queryable = adapter as unknown as { client: pg.Pool; onError(error: unknown): never };
    adapter.executeScript = async (script: string) => {
      try {
        await queryable.client.query(script);
      } catch (error) {
        queryable.onError(error);
      }
    };
    return adapter;
  }
}

let enginePromise: Promise<EngineModule> | undefined;

async function loadEngineModule(): Promise<EngineModule> {
  const require = createRequire(__filename);
  const bgPath = require.resolve('@prisma/schema-engine-wasm/schema_engine_bg');
  // The package is a wasm-bindgen "bundler" build: we instantiate the wasm ourselves.
  const bindings = (await import(bgPath)) as EngineModule & { __wbindgen_start?: () => void };
  const bytes = await readFile(path.join(path.dirname(bgPath), 'schema_engine_bg.wasm'));
  const { instance } = await WebAssembly.instantiate(bytes, { './schema_engine_bg.js': bindings as never });
  bindings.__wbg_set_wasm(instance.exports);
  (instance.exports.__wbindgen_start as (() => void) | undefined)?.();
  return bindings;
}

async function withEngine<T>(
  connectionString: string,
  fn: (engine: WasmSchemaEngine, schemaText: string) => Promise<T>,
): Promise<T> {
  enginePromise ??= loadEngineModule();
  const bindings = await enginePromise;
  const schemaText = await readFile(SCHEMA_PATH, 'utf8');
  const adapter = bindMigrationAwareSqlAdapterFactory(new WholeScriptPg({ connectionString }));
  const engine = await bindings.SchemaEngine.new(
    { datamodels: [[SCHEMA_PATH, schemaText]] },
    () => undefined,
    adapter,
  );
  try {
    return await fn(engine, schemaText);
  } finally {
    engine.free();
  }
}

export async function listMigrations(): Promise<{ name: string; sql: string }[]> {
  const entries = await readdir(MIGRATIONS_DIR, { withFileTypes: true }).catch(() => []);
  const dirs = entries.filter((e) => e.isDirectory()).map((e) => e.name).sort();
  return Promise.all(
    dirs.map(async (name) => ({ name, sql: await readFile(path.join(MIGRATIONS_DIR, name, 'migration.sql'), 'utf8') })),
  );
}

/** Creates the database named in the URL when it does not exist yet. */
export async function ensureDatabase(connectionString: string): Promise<boolean> {
  const url = new URL(connectionString);
  const database = decodeURIComponent(url.pathname.replace(/^\//, ''));
  if (!database) throw new Error('DATABASE_URL names no database');
  const adminUrl = new URL(connectionString);
  adminUrl.pathname = '/postgres';
  const client = new pg.Client({ connectionString: adminUrl.toString() });
  await client.connect();
  try {
    const found = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [database]);
    if (found.rowCount) return false;
    try {
      await client.query(`CREATE DATABASE "${database.replace(/"/g, '""')}"`);
    } catch (err) {
      // Another process created it between our check and our CREATE.
      if ((err as { code?: string }).code !== '42P04') throw err;
      return false;
    }
    return true;
  } finally {
    await client.end();
  }
}

/** The advisory lock Prisma's schema engine holds while it migrates. */
const ENGINE_MIGRATION_LOCK = 72707369;

/**
 * Applies prisma/migrations/* in order, recording them in _prisma_migrations like `migrate
 * deploy`. Every role migrates at start, so several processes starting together queue on the
 * engine's advisory lock, and the engine gives up after waiting 10 s, which a busy machine
 * exceeds (the chaos suite saw a scheduler fail to start beside a starting worker). So the
 * wait happens here first, on a connection of our own and without a time limit: the lock is
 * taken and given back at once, and the engine finds it free. (Retrying the engine instead
 * left its timed-out lock request behind on a connection nobody released, which then held
 * the lock against every later attempt.)
 */
export async function applyMigrations(connectionString: string): Promise<string[]> {
  const client = new pg.Client({ connectionString });
  await client.connect();
  try {
    await client.query('SELECT pg_advisory_lock($1)', [ENGINE_MIGRATION_LOCK]);
    await client.query('SELECT pg_advisory_unlock($1)', [ENGINE_MIGRATION_LOCK]);
  } finally {
    await client.end();
  }
  return applyMigrationsOnce(connectionString);
}

async function applyMigrationsOnce(connectionString: string): Promise<string[]> {
  const migrations = await listMigrations();
  return withEngine(connectionString, async (engine) => {
    const result = await engine.applyMigrations({
      migrationsList: {
        baseDir: MIGRATIONS_DIR,
        lockfile: { path: 'migration_lock.toml', content: LOCKFILE },
        shadowDbInitScript: '',
        migrationDirectories: migrations.map((m) => ({
          path: m.name,
          migrationFile: { path: 'migration.sql', content: { tag: 'ok', value: m.sql } },
        })),
      },
      filters: NO_FILTERS,
    });
    return result.appliedMigrationNames;
  });
}

/** SQL that takes a database built from `fromSchema` (or an empty one) to today's schema.prisma. */
export async function diffSchemaSql(connectionString: string, fromSchema: string | null): Promise<string> {
  return withEngine(connectionString, async (engine, schemaText) => {
    const result = await engine.diff({
      from: fromSchema === null ? { tag: 'empty' } : { tag: 'schemaDatamodel', files: [{ path: SCHEMA_PATH, content: fromSchema }] },
      to: { tag: 'schemaDatamodel', files: [{ path: SCHEMA_PATH, content: schemaText }] },
      script: true,
      exitCode: null,
      filters: NO_FILTERS,
    });
    return result.stdout ?? '';
  });
}
