import { PrismaPg } from '@prisma/adapter-pg';
import pg from 'pg';
import { PrismaClient } from '../generated/prisma/client';
import { ReplicaReads } from './read-replica';

// NUMERIC comes back as a string so decimals are never rounded through a JS number.
pg.types.setTypeParser(pg.types.builtins.NUMERIC, (v) => v);
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => v);

export type Db = PrismaClient;

export interface Database {
  /** Prisma for ordinary queries. */
  prisma: PrismaClient;
  /** The same pool, for hot paths written as single SQL statements. */
  pool: pg.Pool;
  /**
   * Connections of their own for exports: an export holds one for as long as its client reads,
   * so a slow client can exhaust these, never the pool every other request needs. On the
   * direct connection (DATABASE_DIRECT_URL) when there is one: an export is one long
   * transaction, and a transaction pooler would lend it a server connection for all of it.
   */
  exportPool: pg.Pool;
  /**
   * Connections that keep session state across transactions (session advisory locks):
   * DATABASE_DIRECT_URL when set, since a transaction pooler may run each statement of a
   * session on another server connection; otherwise the ordinary pool.
   */
  sessionPool: pg.Pool;
  /** Where read-only views read: the replica (DATABASE_READ_URL) while it is fresh enough, else the primary. */
  reads: ReplicaReads;
  close(): Promise<void>;
}

export interface DatabaseOptions {
  /** A connection that bypasses a transaction pooler (DATABASE_DIRECT_URL); DATABASE_URL is then taken to be one. */
  directUrl?: string;
  /** A streaming replica for read-only views (DATABASE_READ_URL). */
  readUrl?: string;
  /** Past this replication lag reads go to the primary (DATABASE_READ_MAX_LAG_MS). */
  readMaxLagMs?: number;
  /** Replica connections (defaults to the primary pool's size). */
  readPoolSize?: number;
  /** Told when the replica stops answering (once per outage). */
  onReplicaError?: (error: unknown) => void;
}

/**
 * A pg client that never names its statements. pg prepares a named query once per connection
 * and afterwards sends only the name; behind a pooler in transaction mode (PgBouncer before
 * 1.21 keeps no prepared statements across server connections) the next transaction may run
 * on a server connection that never saw it ("prepared statement … does not exist"). Unnamed,
 * every query is parsed where it runs. Prisma's adapter already sends unnamed statements.
 */
class UnnamedStatementClient extends pg.Client {}
const namedQuery = pg.Client.prototype.query;
UnnamedStatementClient.prototype.query = function (this: pg.Client, config: unknown, ...rest: unknown[]) {
  let unnamed = config;
  if (config !== null && typeof config === 'object' && 'name' in config && !('submit' in config)) {
    const { name: _name, ...withoutName } = config as { name?: string };
    unnamed = withoutName;
  }
  return (namedQuery as (this: pg.Client, ...args: unknown[]) => unknown).call(this, unnamed, ...rest);
} as typeof namedQuery;

function createPool(connectionString: string, max: number, options: { pooled?: boolean } = {}): pg.Pool {
  const pool = new pg.Pool({
    connectionString,
    max,
    connectionTimeoutMillis: 5000,
    ...(options.pooled ? { Client: UnnamedStatementClient } : {}),
  });
  pool.on('error', () => undefined); // an idle client dropped; the pool replaces it
  // A checked-out client whose server goes away (restart, pg_terminate_backend) emits 'error'
  // while no query of its own is running; with no listener that is an uncaught exception and
  // the process exits. Listened to, the client is marked unusable and the pool drops it on release.
  pool.on('connect', (client) => client.on('error', () => undefined));
  return pool;
}

export function createDatabase(connectionString: string, poolSize: number, exportPoolSize = 1, options: DatabaseOptions = {}): Database {
  // With a direct connection beside it, DATABASE_URL is a transaction pooler: no named statements on it.
  const pooled = options.directUrl !== undefined;
  const pool = createPool(connectionString, poolSize, { pooled });
  const direct = options.directUrl ?? connectionString;
  // Lazy: a process that never exports (a worker) never opens one of these.
  const exportPool = createPool(direct, exportPoolSize);
  const sessionPool = options.directUrl ? createPool(options.directUrl, 2) : pool;
  const prisma = new PrismaClient({ adapter: new PrismaPg(pool) });
  const primary = { pool, prisma, exportPool };
  let replica: typeof primary | null = null;
  if (options.readUrl) {
    const readPool = createPool(options.readUrl, options.readPoolSize ?? poolSize, { pooled });
    replica = { pool: readPool, prisma: new PrismaClient({ adapter: new PrismaPg(readPool) }), exportPool: createPool(options.readUrl, exportPoolSize) };
  }
  const reads = new ReplicaReads(primary, replica, { maxLagMs: options.readMaxLagMs ?? 5000, onError: options.onReplicaError });
  return {
    prisma,
    pool,
    exportPool,
    sessionPool,
    reads,
    async close() {
      await reads.stop();
      await prisma.$disconnect();
      await pool.end().catch(() => undefined);
      await exportPool.end().catch(() => undefined);
      if (sessionPool !== pool) await sessionPool.end().catch(() => undefined);
      if (replica) {
        await replica.prisma.$disconnect();
        await replica.pool.end().catch(() => undefined);
        await replica.exportPool.end().catch(() => undefined);
      }
    },
  };
}
