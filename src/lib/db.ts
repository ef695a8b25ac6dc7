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
  close(): Promise<void>;
}

export function createDatabase(connectionString: string, poolSize: number): Database {
  const pool = new pg.Pool({ connectionString, max: poolSize, connectionTimeoutMillis: 5000 });
  pool.on('error', () => undefined); // an idle client dropped; the pool replaces it
  const prisma = new PrismaClient({ adapter: new PrismaPg(pool) });
  return {
    prisma,
    pool,
    async close() {
      await prisma.$disconnect();
      await pool.end().catch(() => undefined);
    },
  };
}
