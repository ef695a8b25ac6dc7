import { checkAllThresholds } from '../../src/domain/quotas/threshold-check';
import { requeueStrandedDeliveries } from '../../src/domain/webhooks/dispatch';
import { parseHourWindow } from '../../src/domain/jobs/catalog';
import type { JobHandler } from './types';

/**
 * The window names the hour the check runs in; it looks at the periods current at that time.
 * It also queues again the webhook deliveries whose jobs Redis lost, so an alert whose row is
 * claimed is still delivered.
 */
export const thresholdsCheck: JobHandler<'usage.thresholds.check'> = async (deps, { window }) => {
  const result = await checkAllThresholds({ ...deps.reactions, prisma: deps.prisma }, new Date(parseHourWindow(window).getTime() + 30 * 60_000));
  const deliveriesRequeued = await requeueStrandedDeliveries({ ...deps.reactions.webhooks, jobs: deps.jobs });
  return { ...result, rowsTouched: result.rowsTouched + deliveriesRequeued, deliveriesRequeued };
};
