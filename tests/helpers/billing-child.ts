// A worker process for the crash test: runs one billing.usage.report of a tenant, until killed.
import { loadEnv } from '../../src/env';
import { createLogger } from '../../src/lib/logger';
import { closeServices, createServices } from '../../src/app';
import { runUsageReport } from '../../src/domain/billing/run';

async function main() {
  const env = loadEnv({ ...process.env, LOG_LEVEL: 'silent' });
  const services = await createServices(env, createLogger('silent'));
  process.stdout.write('ready\n');
  const outcome = await runUsageReport(services.billing, { tenantId: process.argv[2] });
  process.stdout.write(`${JSON.stringify(outcome)}\n`);
  await closeServices(services);
}

main().catch((err: unknown) => {
  process.stderr.write(`${String(err)}\n`);
  process.exit(1);
});
