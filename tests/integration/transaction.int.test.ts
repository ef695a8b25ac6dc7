import pg from 'pg';
import { createDatabase, type Database } from '../../src/lib/db';
import { inTransaction } from '../../src/lib/transaction';

let db: Database;
let other: pg.Client;

beforeAll(async () => {
  db = createDatabase(process.env.DATABASE_URL!, 1);
  other = new pg.Client({ connectionString: process.env.DATABASE_URL });
  await other.connect();
});
afterAll(async () => {
  await other.end();
  await db.close();
});

describe('inTransaction', () => {
  it('commits the work, and rolls it back when the work throws, on a connection the pool reuses', async () => {
    await db.pool.query('CREATE TEMP TABLE IF NOT EXISTS tx_probe (n int)');
    const pid = async (client: pg.PoolClient) => (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    const first = await inTransaction(db.pool, {}, async (client) => {
      await client.query('INSERT INTO tx_probe VALUES (1)');
      return pid(client);
    });
    const failed = await inTransaction(db.pool, {}, async (client) => {
      await client.query('INSERT INTO tx_probe VALUES (2)');
      throw new Error(`work failed on ${await pid(client)}`);
    }).catch((err: Error) => err.message);
    expect(failed).toBe(`work failed on ${first}`); // the same connection, healthy, came back
    expect((await db.pool.query<{ n: number }>('SELECT n FROM tx_probe')).rows).toEqual([{ n: 1 }]);
  });

  it('destroys a connection whose ROLLBACK failed instead of handing it to the next caller', async () => {
    // The backend is killed while the transaction is open and the work then throws: the
    // ROLLBACK fails on the dead connection. Released normally, that client would be the
    // pool's only idle one and the next query would fail on it. Several rounds, because
    // whether the client notices the death before or during the ROLLBACK is a race.
    for (let round = 0; round < 5; round++) {
      const failure = await inTransaction(db.pool, {}, async (client) => {
        const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
        await other.query('SELECT pg_terminate_backend($1)', [rows[0]!.pid]);
        throw new Error('work failed after its connection broke');
      }).catch((err: Error) => err.message);
      expect(failure).toBe('work failed after its connection broke');
      expect(db.pool.idleCount).toBe(0); // the broken client is gone, not parked for reuse
      await expect(db.pool.query<{ ok: number }>('SELECT 1 AS ok')).resolves.toMatchObject({ rows: [{ ok: 1 }] });
    }
  });
});

describe('createDatabase', () => {
  it('survives the server ending a checked-out connection while it runs no query, and drops that connection', async () => {
    // pg emits 'error' on such a client; with no listener that is an uncaught exception that
    // ends the process (an export waiting for its client, a transaction between statements).
    for (const pool of [db.pool, db.exportPool]) {
      const client = await pool.connect();
      const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      const ended = new Promise((resolve) => client.once('end', resolve));
      await other.query('SELECT pg_terminate_backend($1)', [rows[0]!.pid]);
      await ended;
      await expect(client.query('SELECT 1')).rejects.toThrow(/not queryable|terminated/i);
      client.release();
      expect(pool.totalCount).toBe(0);
      await expect(pool.query<{ ok: number }>('SELECT 1 AS ok')).resolves.toMatchObject({ rows: [{ ok: 1 }] });
    }
  });
});
