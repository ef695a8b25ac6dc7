import pg from 'pg';

export default async function globalTeardown(): Promise<void> {
  const name = process.env.TALLY_TEST_DATABASE;
  if (!name) return;
  const base = process.env.TEST_DATABASE_BASE_URL ?? 'postgresql://postgres@127.0.0.1:5432';
  const client = new pg.Client({ connectionString: `${base}/postgres` });
  await client.connect();
  await client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
  await client.end();
}
