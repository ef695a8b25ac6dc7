import { checkAllThresholds } from '../../src/domain/quotas/threshold-check';
import { requeueStrandedDeliveries } from '../../src/domain/webhooks/dispatch';
import { parseHourWindow } from '../catalog';
import type { JobHandler } from './types';
import { reactionDeps } from './reaction-deps';

/**
 * The window names the hour the check runs in; it looks at the periods current at that time.
 * It also queues again the webhook deliveries whose jobs Redis lost, so an alert whose row is
 * claimed is still delivered.
 */
export const thresholdsCheck: JobHandler<'usage.thresholds.check'> = async (deps, { window }) => {
  const result = await checkAllThresholds({ ...reactionDeps(deps), prisma: deps.prisma }, new Date(parseHourWindow(window).getTime() + 30 * 60_000));
  const deliveriesRequeued = await requeueStrandedDeliveries(reactionDeps(deps).webhooks);
  return { ...result, rowsTouched: result.rowsTouched + deliveriesRequeued, deliveriesRequeued };
};
