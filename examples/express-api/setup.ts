/**
 * Makes a license for the walkthrough with the SDK's typed procedures: an enterprise-plan license
 * (no plan limits) with a hard limit of 5 `api_call`s a day, and prints its id.
 *   TALLY_API_KEY=<owner key> npm run -s example:express:setup
 */
import { Tally } from '@tally/sdk';

async function main() {
  const tally = new Tally({ apiKey: process.env.TALLY_API_KEY ?? '', baseUrl: process.env.TALLY_URL ?? 'http://localhost:3000' });
  const license = await tally.licenses.create.mutate({ name: 'Example customer', plan: 'enterprise' });
  await tally.thresholds.create.mutate({ licenseId: license.id, usageType: 'api_call', periodType: 'daily', limitQuantity: '5' });
  console.log(license.id);
  await tally.shutdown();
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
