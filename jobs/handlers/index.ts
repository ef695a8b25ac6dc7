import type { JobName } from '../../src/domain/jobs/catalog';
import type { JobHandler } from './types';
import { aggregateHourly } from './usage-aggregate-hourly';
import { aggregateDaily } from './usage-aggregate-daily';
import { cleanupWeekly } from './usage-cleanup-weekly';
import { maintainPartitions } from './usage-partitions-maintain';
import { recalculate } from './usage-recalculate';
import { thresholdsCheck } from './usage-thresholds-check';
import { forecastDaily } from './usage-forecast-daily';
import { forecastAlerts } from './usage-forecast-alerts';
import { deliverWebhook } from './webhooks-deliver';
import { billingReconcile, billingUsageReport } from './billing';

/** One handler per catalog entry; the type makes a missing one a compile error. */
export const jobHandlers: { [N in JobName]: JobHandler<N> } = {
  'usage.aggregate.hourly': aggregateHourly,
  'usage.aggregate.daily': aggregateDaily,
  'usage.cleanup.weekly': cleanupWeekly,
  'usage.partitions.maintain': maintainPartitions,
  'usage.recalculate': recalculate,
  'usage.thresholds.check': thresholdsCheck,
  'usage.forecast.daily': forecastDaily,
  'usage.forecast.alerts': forecastAlerts,
  'webhooks.deliver': deliverWebhook,
  'billing.usage.report': billingUsageReport,
  'billing.reconcile': billingReconcile,
};
