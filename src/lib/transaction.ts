import type pg from 'pg';

/**
 * Runs `work` in one transaction on one pooled connection: `begin` opens it (e.g.
 * `BEGIN READ ONLY`), each of `settings` applies to it alone (`SET LOCAL`), and it is
 * committed, or rolled back when `work` throws. A connection whose ROLLBACK failed is in an
 * unknown state (broken, or still inside the transaction): it is destroyed, never handed to
 * the next caller.
 */
export async function inTransaction<T>(
  pool: pg.Pool,
  options: { begin?: string; settings?: string[] },
  work: (client: pg.PoolClient) => Promise<T>,
): Promise<T> {
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    await client.query(options.begin ?? 'BEGIN');
    for (const setting of options.settings ?? []) await client.query(`SET LOCAL ${setting}`);
    const result = await work(client);
    await client.query('COMMIT');
    return result;
  } catch (error) {
    await client.query('ROLLBACK').catch((rollbackError: Error) => (broken = rollbackError));
    throw error;
  } finally {
    client.release(broken);
  }
}
