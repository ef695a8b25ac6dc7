import type { ServerResponse } from 'node:http';
import { AppError } from '../../../lib/errors';
import type { QuotaState } from '../../../domain/quotas/enforcer';
import { quotaDetails } from '../../../domain/usage/track';

type Details = ReturnType<typeof quotaDetails>;

/**
 * IETF RateLimit-* (reset in seconds from now) and the X-RateLimit-* names the seeds use
 * (reset as a unix timestamp), describing the hard limit with the least room left.
 */
function setHeaders(res: ServerResponse, limit: string, remaining: string, resetAtMs: number, retryAfterSeconds: number, refused: boolean): void {
  if (res.headersSent) return;
  const retryAfter = String(retryAfterSeconds);
  res.setHeader('RateLimit-Limit', limit);
  res.setHeader('RateLimit-Remaining', remaining);
  res.setHeader('RateLimit-Reset', retryAfter);
  res.setHeader('X-RateLimit-Limit', limit);
  res.setHeader('X-RateLimit-Remaining', remaining);
  res.setHeader('X-RateLimit-Reset', String(Math.ceil(resetAtMs / 1000)));
  if (refused) res.setHeader('Retry-After', retryAfter);
}

/** Runs an ingestion call and puts its quota state on the response, for answers and 429s alike. */
export async function withQuotaHeaders<T extends { quota: QuotaState | null }>(
  res: ServerResponse,
  run: () => Promise<T>,
): Promise<Omit<T, 'quota'>> {
  try {
    const { quota, ...rest } = await run();
    // Straight from the state (every admitted event of a limited license passes here).
    if (quota) {
      const resetAtMs = quota.resetAt.getTime();
      setHeaders(res, quota.limit, quota.remaining, resetAtMs, Math.max(1, Math.ceil((resetAtMs - Date.now()) / 1000)), false);
    }
    return rest;
  } catch (error) {
    if (error instanceof AppError && error.code === 'TOO_MANY_REQUESTS' && error.details) {
      const details = error.details as Details;
      // the seconds the 429's body states, so header and body never differ at a second's edge
      setHeaders(res, details.limit, details.remaining, Date.parse(details.resetAt), details.retryAfterSeconds, true);
    }
    throw error;
  }
}
