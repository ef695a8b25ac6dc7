import { applyRetention } from '../../src/domain/retention/retention';
import type { JobHandler } from './types';

export const cleanupWeekly: JobHandler<'usage.cleanup.weekly'> = ({ pool, env }) =>
  applyRetention(pool, {
    usageEventDays: env.USAGE_EVENT_RETENTION_DAYS,
    idempotencyKeyDays: env.IDEMPOTENCY_KEY_RETENTION_DAYS,
    auditLogDays: env.AUDIT_LOG_RETENTION_DAYS,
    jobRunDays: env.JOB_RUN_RETENTION_DAYS,
  });
