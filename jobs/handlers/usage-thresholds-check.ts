import { checkAllThresholds } from '../../src/domain/quotas/threshold-check';
import { parseHourWindow } from '../../src/domain/jobs/catalog';
import type { JobHandler } from './types';

/** The window names the hour the check runs in; it looks at the periods current at that time. */
export const thresholdsCheck: JobHandler<'usage.thresholds.check'> = (deps, { window }) =>
  checkAllThresholds({ ...deps.reactions, prisma: deps.prisma }, new Date(parseHourWindow(window).getTime() + 30 * 60_000));
