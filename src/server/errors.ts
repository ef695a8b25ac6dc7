import { TRPCError } from '@trpc/server';
import { getHTTPStatusCodeFromError } from '@trpc/server/http';
import type { TRPC_ERROR_CODE_KEY } from '@trpc/server/unstable-core-do-not-import';
import type { AppError, AppErrorCode } from '../lib/errors';

/** Each application error code's one tRPC code (and so HTTP status). */
const CODE_TO_TRPC = {
  BAD_REQUEST: 'BAD_REQUEST',
  UNAUTHORIZED: 'UNAUTHORIZED',
  FORBIDDEN: 'FORBIDDEN',
  NOT_FOUND: 'NOT_FOUND',
  CONFLICT: 'CONFLICT',
  IDEMPOTENCY_CONFLICT: 'CONFLICT',
  LICENSE_INACTIVE: 'UNPROCESSABLE_CONTENT',
  INVALID_EVENT: 'BAD_REQUEST',
  PAYLOAD_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  TOO_MANY_REQUESTS: 'TOO_MANY_REQUESTS',
  UNAVAILABLE: 'SERVICE_UNAVAILABLE',
} as const satisfies Record<AppErrorCode, TRPC_ERROR_CODE_KEY>;

export function toTRPCError(error: AppError): TRPCError {
  return new TRPCError({ code: CODE_TO_TRPC[error.code], message: error.message, cause: error });
}

/** The HTTP status of an application error, for doors outside tRPC (exports, the queue dashboard). */
export function httpStatusOf(error: AppError): number {
  return getHTTPStatusCodeFromError(toTRPCError(error));
}
