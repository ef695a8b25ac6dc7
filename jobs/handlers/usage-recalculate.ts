import { recalculateRange } from '../../src/domain/rollups/aggregate';
import type { JobHandler } from './types';

export const recalculate: JobHandler<'usage.recalculate'> = ({ rollups, env }, payload, ctx) =>
  recalculateRange(rollups, payload, { retentionDays: env.USAGE_EVENT_RETENTION_DAYS, onProgress: ctx.reportProgress });
