import { aggregateHourlyWindow } from '../../src/domain/rollups/aggregate';
import { parseHourWindow } from '../../src/domain/jobs/catalog';
import type { JobHandler } from './types';

export const aggregateHourly: JobHandler<'usage.aggregate.hourly'> = (deps, { window }) => aggregateHourlyWindow(deps.rollups, parseHourWindow(window));
