import { runUsageReport } from '../../src/domain/billing/run';
import { reconcileDay } from '../../src/domain/billing/reconcile';
import { parseDateWindow } from '../../src/domain/jobs/catalog';
import type { JobHandler } from './types';

export const billingUsageReport: JobHandler<'billing.usage.report'> = (deps, { tenantId }) => runUsageReport(deps.billing, { tenantId });

export const billingReconcile: JobHandler<'billing.reconcile'> = (deps, { window }) => reconcileDay(deps.billing, parseDateWindow(window));
