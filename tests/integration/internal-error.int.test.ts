import { useTestApp } from '../helpers/harness';

/**
 * A 500 carried the thrown error's message to the client: for a database error, Prisma's names
 * the source file, the lines around the call and the database's own words (found by the fuzz
 * suite). The client gets a fixed message; the log keeps the details.
 */
const app = useTestApp({}, { isolatedDatabase: 'internal_error' });

it('answers an unexpected error with a 500 that names nothing of the code or the database', async () => {
  await app.services.db.pool.query('ALTER TABLE job_runs RENAME TO job_runs_hidden');
  try {
    const res = await app.call('jobs.get', { id: 'usage.aggregate.hourly@x' }, app.adminKey, { method: 'GET' });
    expect(res.status).toBe(500);
    expect(res.body.error?.message).toBe('internal error: the server logged it');
    expect(JSON.stringify(res.body)).not.toMatch(/prisma|job_runs|\.ts|invocation/i);
  } finally {
    await app.services.db.pool.query('ALTER TABLE job_runs_hidden RENAME TO job_runs');
  }
});
