import { router } from '../../trpc';
import { connectProcedure, disconnectProcedure } from './connect';
import { createCustomerProcedure } from './create-customer';
import { listMetersProcedure, setPlanPriceProcedure, upsertMeterProcedure } from './meters';
import { reportNowProcedure } from './report-now';
import { healthProcedure, reconciliationProcedure, usageReportProcedure, usageSummaryProcedure } from './read';

export const billingRouter = router({
  connect: connectProcedure,
  disconnect: disconnectProcedure,
  createCustomer: createCustomerProcedure,
  meters: router({ upsert: upsertMeterProcedure, list: listMetersProcedure }),
  planPrices: router({ set: setPlanPriceProcedure }),
  reportNow: reportNowProcedure,
  health: healthProcedure,
  usageSummary: usageSummaryProcedure,
  usageReport: usageReportProcedure,
  reconciliation: reconciliationProcedure,
});
