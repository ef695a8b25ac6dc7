import { sendForecastBreachAlerts } from '../../src/domain/forecasts/breach-alerts';
import { forecastCutOff } from '../catalog';
import type { JobHandler } from './types';
import { reactionDeps } from './reaction-deps';

export const forecastAlerts: JobHandler<'usage.forecast.alerts'> = (deps, { window }) =>
  sendForecastBreachAlerts({ pool: deps.pool, prisma: deps.prisma, webhooks: reactionDeps(deps).webhooks }, forecastCutOff(window));
