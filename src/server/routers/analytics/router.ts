import { router } from '../../trpc';
import { breakdownProcedure } from './breakdown';
import { exportProcedure } from './export';
import { platformProcedure } from './platform';
import { topLicensesProcedure } from './top-licenses';
import { usageProcedure } from './usage';
import { forecastAccuracyProcedure } from '../forecasts/accuracy';

export const analyticsRouter = router({
  usage: usageProcedure,
  breakdown: breakdownProcedure,
  topLicenses: topLicensesProcedure,
  platform: platformProcedure,
  export: exportProcedure,
  // the same view as forecasts.accuracy, where readers of the numbers look for it
  forecastAccuracy: forecastAccuracyProcedure,
});
