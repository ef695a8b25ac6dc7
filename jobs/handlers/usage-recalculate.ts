import { recalculateRange } from '../../src/domain/rollups/aggregate';
import type { JobHandler } from './types';

export const recalculate: JobHandler<'usage.recalculate'> = async ({ pool, env, analyticsCache }, payload, ctx) => {
  const outcome = await recalculateRange(pool, payload, { retentionDays: env.USAGE_EVENT_RETENTION_DAYS, onProgress: ctx.reportProgress });
  await analyticsCache.invalidate(payload.tenantId ? [payload.tenantId] : null);
  return outcome;
};
