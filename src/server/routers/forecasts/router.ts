import { router } from '../../trpc';
import { forecastAccuracyProcedure } from './accuracy';
import { getForecastProcedure } from './get';
import { listForecastsProcedure } from './list';

export const forecastsRouter = router({ get: getForecastProcedure, list: listForecastsProcedure, accuracy: forecastAccuracyProcedure });
