import type { ServerResponse } from 'node:http';
import { AppError } from '../../../lib/errors';
import type { QuotaState } from '../../../domain/quotas/enforcer';
import { quotaDetails } from '../../../domain/usage/track';

type Details = ReturnType<typeof quotaDetails>;

/**
 * IETF RateLimit-* (reset in seconds from now) and the X-RateLimit-* names the seeds use
 * (reset as a unix timestamp), describing the hard limit with the least room left.
 */
function setHeaders(res: ServerResponse, d: Details, refused: boolean): void {
  if (res.headersSent) return;
  res.setHeader('RateLimit-Limit', d.limit);
  res.setHeader('RateLimit-Remaining', d.remaining);
  res.setHeader('RateLimit-Reset', String(d.retryAfterSeconds));
  res.setHeader('X-RateLimit-Limit', d.limit);
  res.setHeader('X-RateLimit-Remaining', d.remaining);
  res.setHeader('X-RateLimit-Reset', String(Math.ceil(new Date(d.resetAt).getTime() / 1000)));
  if (refused) res.setHeader('Retry-After', String(d.retryAfterSeconds));
}

/** Runs an ingestion call and puts its quota state on the response, for answers and 429s alike. */
export async function withQuotaHeaders<T extends { quota: QuotaState | null }>(
  res: ServerResponse,
  run: () => Promise<T>,
): Promise<Omit<T, 'quota'>> {
  try {
    const { quota, ...rest } = await run();
    if (quota) setHeaders(res, quotaDetails(quota), false);
    return rest;
  } catch (error) {
    if (error instanceof AppError && error.code === 'TOO_MANY_REQUESTS' && error.details) {
      setHeaders(res, error.details as Details, true);
    }
    throw error;
  }
}
