import { aggregateHourlyWindow } from '../../src/domain/rollups/aggregate';
import { parseHourWindow } from '../catalog';
import type { JobHandler } from './types';

export const aggregateHourly: JobHandler<'usage.aggregate.hourly'> = (deps, { window }) =>
  aggregateHourlyWindow(deps.pool, parseHourWindow(window));
