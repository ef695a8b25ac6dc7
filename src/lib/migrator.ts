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

/** `database`: a connection string, or a pool of ours the engine is to use (and leave open). */
async function withEngine<T>(
  database: string | pg.Pool,
  fn: (engine: WasmSchemaEngine, schemaText: string) => Promise<T>,
): Promise<T> {
  enginePromise ??= loadEngineModule();
  const bindings = await enginePromise;
  const schemaText = await readFile(SCHEMA_PATH, 'utf8');
  const adapter = bindMigrationAwareSqlAdapterFactory(new WholeScriptPg(typeof database === 'string' ? { connectionString: database } : database));
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
      // Another process created it between our check and our CREATE: 42P04 when its CREATE
      // committed first, 23505 (pg_database's unique index) when both were in flight at once.
      const code = (err as { code?: string }).code;
      if (code !== '42P04' && code !== '23505') throw err;
      return false;
    }
    return true;
  } finally {
    await client.end();
  }
}

/** The advisory lock Prisma's schema engine holds while it migrates. */
const ENGINE_MIGRATION_LOCK = 72707369;
/** How often a process waiting for another's migration says so. */
const WAIT_LOG_EVERY_MS = 15_000;

export interface MigrateOptions {
  /** Told when this process has to wait for another's migration, while it waits, and when it stops waiting. */
  log?: (message: string, details?: Record<string, unknown>) => void;
}

/**
 * Names of the migrations recorded as applied, or null when the database has none recorded
 * or one that failed (the engine then applies or reports; this only spares it a start).
 */
async function appliedMigrationNames(client: pg.ClientBase): Promise<Set<string> | null> {
  try {
    const { rows } = await client.query<{ migration_name: string; done: boolean }>(
      `SELECT migration_name, finished_at IS NOT NULL AND rolled_back_at IS NULL AS done FROM _prisma_migrations
        WHERE rolled_back_at IS NULL`,
    );
    if (rows.some((r) => !r.done)) return null;
    return new Set(rows.map((r) => r.migration_name));
  } catch (err) {
    if ((err as { code?: string }).code === '42P01') return null; // no _prisma_migrations yet
    throw err;
  }
}

async function schemaIsCurrent(client: pg.ClientBase): Promise<boolean> {
  const applied = await appliedMigrationNames(client);
  if (!applied) return false;
  return (await listMigrations()).every((m) => applied.has(m.name));
}

/**
 * Applies prisma/migrations/* in order, recording them in _prisma_migrations like `migrate
 * deploy`. Every role migrates at start, and an orchestrator starts them together, so:
 * - a process that finds every migration applied is done at once, without taking a lock;
 * - otherwise it takes the schema engine's own advisory lock, waiting as long as it takes
 *   (and saying so), on the one connection the engine then migrates through. A session may
 *   take an advisory lock it already holds, so the engine's own attempt, which gives up after
 *   10 s, succeeds at once, and no other migrator can take the lock between our wait and the
 *   engine's run (the gap of an earlier wait-then-release, which a busy machine hit);
 * - once it holds the lock it looks again: the process it waited for has usually migrated
 *   everything, and then the engine is never loaded.
 */
export async function applyMigrations(connectionString: string, options: MigrateOptions = {}): Promise<string[]> {
  const log = options.log ?? (() => undefined);
  // One connection that is never closed while idle: the lock lives on its session.
  const pool = new pg.Pool({ connectionString, max: 1, idleTimeoutMillis: 0 });
  pool.on('error', () => undefined); // a broken connection fails the query that uses it
  try {
    const client = await pool.connect();
    try {
      if (await schemaIsCurrent(client)) return [];
      await waitForMigrationLock(client, log);
    } finally {
      client.release();
    }
    try {
      const again = await pool.connect();
      try {
        if (await schemaIsCurrent(again)) return [];
      } finally {
        again.release();
      }
      return await applyMigrationsOnce(pool);
    } finally {
      await pool.query('SELECT pg_advisory_unlock($1)', [ENGINE_MIGRATION_LOCK]).catch(() => undefined);
    }
  } finally {
    await pool.end();
  }
}

async function waitForMigrationLock(client: pg.ClientBase, log: NonNullable<MigrateOptions['log']>): Promise<void> {
  const tried = await client.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1) AS locked', [ENGINE_MIGRATION_LOCK]);
  if (tried.rows[0]!.locked) return;
  const holder = await client
    .query<{ pid: number; application_name: string }>(
      `SELECT a.pid, a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'advisory' AND l.classid = 0 AND l.objid = $1 AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
      [ENGINE_MIGRATION_LOCK],
    )
    .then((r) => r.rows[0])
    .catch(() => undefined);
  const started = Date.now();
  log('waiting for the migration lock: another process is migrating this database', { holderPid: holder?.pid });
  const timer = setInterval(
    () => log('still waiting for the migration lock', { waitedSeconds: Math.round((Date.now() - started) / 1000) }),
    WAIT_LOG_EVERY_MS,
  );
  try {
    await client.query('SELECT pg_advisory_lock($1)', [ENGINE_MIGRATION_LOCK]);
  } finally {
    clearInterval(timer);
  }
  log('got the migration lock', { waitedSeconds: Math.round((Date.now() - started) / 100) / 10 });
}

async function applyMigrationsOnce(pool: pg.Pool): Promise<string[]> {
  const migrations = await listMigrations();
  return withEngine(pool, async (engine) => {
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
