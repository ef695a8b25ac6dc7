import { aggregateHourlyWindow } from '../../src/domain/rollups/aggregate';
import { parseHourWindow } from '../../src/domain/jobs/catalog';
import { hasBillingConnections } from '../../src/domain/billing/run';
import type { JobHandler } from './types';

/** Rollups first; then, when any tenant bills through Stripe, the report of what changed. */
export const aggregateHourly: JobHandler<'usage.aggregate.hourly'> = async (deps, { window }) => {
  const outcome = await aggregateHourlyWindow(deps.rollups, parseHourWindow(window));
  if (await hasBillingConnections(deps.billing)) await deps.jobs.enqueue('billing.usage.report', { window });
  return outcome;
};
