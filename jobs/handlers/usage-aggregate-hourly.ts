import { aggregateHourlyWindow } from '../../src/domain/rollups/aggregate';
import { parseHourWindow } from '../../src/domain/jobs/catalog';
import type { JobHandler } from './types';

export const aggregateHourly: JobHandler<'usage.aggregate.hourly'> = async (deps, { window }) => {
  const outcome = await aggregateHourlyWindow(deps.pool, parseHourWindow(window));
  // Late events changed the rollups of their hours (and local days): cached answers over them are stale.
  await deps.analyticsCache.invalidate(outcome.lateTenantIds);
  return outcome;
};
