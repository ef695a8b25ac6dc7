import { PrismaPg } from '@prisma/adapter-pg';
import pg from 'pg';
import { PrismaClient } from '../generated/prisma/client';

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
   * so a slow client can exhaust these, never the pool every other request needs.
   */
  exportPool: pg.Pool;
  close(): Promise<void>;
}

function createPool(connectionString: string, max: number): pg.Pool {
  const pool = new pg.Pool({ connectionString, max, connectionTimeoutMillis: 5000 });
  pool.on('error', () => undefined); // an idle client dropped; the pool replaces it
  // A checked-out client whose server goes away (restart, pg_terminate_backend) emits 'error'
  // while no query of its own is running; with no listener that is an uncaught exception and
  // the process exits. Listened to, the client is marked unusable and the pool drops it on release.
  pool.on('connect', (client) => client.on('error', () => undefined));
  return pool;
}

export function createDatabase(connectionString: string, poolSize: number, exportPoolSize = 1): Database {
  const pool = createPool(connectionString, poolSize);
  // Lazy: a process that never exports (a worker) never opens one of these.
  const exportPool = createPool(connectionString, exportPoolSize);
  const prisma = new PrismaClient({ adapter: new PrismaPg(pool) });
  return {
    prisma,
    pool,
    exportPool,
    async close() {
      await prisma.$disconnect();
      await pool.end().catch(() => undefined);
      await exportPool.end().catch(() => undefined);
    },
  };
}
