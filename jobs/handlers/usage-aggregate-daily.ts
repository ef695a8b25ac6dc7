import { aggregateDailyWindow } from '../../src/domain/rollups/aggregate';
import { parseDateWindow } from '../../src/domain/jobs/catalog';
import type { JobHandler } from './types';

export const aggregateDaily: JobHandler<'usage.aggregate.daily'> = (deps, { window }) =>
  aggregateDailyWindow(deps.pool, parseDateWindow(window));
