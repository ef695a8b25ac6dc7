import { sendForecastBreachAlerts } from '../../src/domain/forecasts/breach-alerts';
import { forecastCutOff } from '../../src/domain/jobs/catalog';
import type { JobHandler } from './types';

export const forecastAlerts: JobHandler<'usage.forecast.alerts'> = (deps, { window }) =>
  sendForecastBreachAlerts({ pool: deps.pool, prisma: deps.prisma, webhooks: deps.reactions.webhooks }, forecastCutOff(window));
