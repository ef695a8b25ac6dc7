import { forecastAllLicenses } from '../../src/domain/forecasts/daily-forecasts';
import { forecastCutOff } from '../../src/domain/jobs/catalog';
import type { JobHandler } from './types';

export const forecastDaily: JobHandler<'usage.forecast.daily'> = (deps, { window }, ctx) =>
  forecastAllLicenses({ pool: deps.pool, prisma: deps.prisma }, forecastCutOff(window), ctx.reportProgress);
