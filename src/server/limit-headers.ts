import type { LimitState } from '../domain/api-keys/throttles';

/**
 * The headers of a 429 from the authentication throttle or a key's rateLimitPerHour, named as
 * the quota 429s name them: IETF RateLimit-* (reset in seconds from now), the X-RateLimit-* of
 * the seeds (reset as a unix timestamp) and Retry-After.
 */
export function limitHeaders(state: LimitState): Record<string, string> {
  return {
    'retry-after': String(state.resetSeconds),
    'ratelimit-limit': String(state.limit),
    'ratelimit-remaining': String(state.remaining),
    'ratelimit-reset': String(state.resetSeconds),
    'x-ratelimit-limit': String(state.limit),
    'x-ratelimit-remaining': String(state.remaining),
    'x-ratelimit-reset': String(Math.ceil(Date.now() / 1000) + state.resetSeconds),
  };
}

/** The message of a refused authentication, for every door (tRPC, exports, queue dashboard). */
export function refusalMessage(reason: 'missing' | 'malformed' | 'unknown' | 'revoked' | 'throttled' | 'rate_limited', state?: LimitState): string {
  switch (reason) {
    case 'missing':
      return 'missing API key: send Authorization: Bearer <key>';
    case 'malformed':
      return 'malformed API key';
    case 'revoked':
      return 'API key has been revoked';
    case 'unknown':
      return 'unknown API key';
    case 'throttled':
      return `too many failed authentication attempts; retry in ${state?.resetSeconds ?? 60} s`;
    case 'rate_limited':
      return `API key rate limit of ${state?.limit} calls per hour reached; retry in ${state?.resetSeconds} s`;
    default: {
      const unexpected: never = reason;
      return unexpected;
    }
  }
}
