import { TRPCError } from '@trpc/server';
import type { TRPC_ERROR_CODE_KEY } from '@trpc/server/unstable-core-do-not-import';

/** The closed set of application error codes, each mapped once to a tRPC/HTTP code. */
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
} as const satisfies Record<string, TRPC_ERROR_CODE_KEY>;

export type AppErrorCode = keyof typeof CODE_TO_TRPC;

/** Shaped like a zod issue, so clients read every 400 the same way. */
export interface FieldIssue {
  path: (string | number)[];
  message: string;
  code: string;
}

export class AppError extends Error {
  constructor(
    readonly code: AppErrorCode,
    message: string,
    readonly details?: Record<string, unknown>,
    options?: { cause?: unknown; issues?: FieldIssue[] },
  ) {
    super(message, options);
    this.name = 'AppError';
    this.issues = options?.issues;
  }

  readonly issues?: FieldIssue[];
}

export function toTRPCError(error: AppError): TRPCError {
  return new TRPCError({ code: CODE_TO_TRPC[error.code], message: error.message, cause: error });
}

/** PostgreSQL errors that mean "the database is unreachable or overloaded", not a bug. */
export function isUnavailableError(error: unknown): boolean {
  const code = (error as { code?: string } | null)?.code;
  return (
    code === 'ECONNREFUSED' ||
    code === 'ECONNRESET' ||
    code === 'ETIMEDOUT' ||
    code === '57P01' ||
    code === '57P03' ||
    code === '53300' ||
    (error instanceof Error && /timeout exceeded when trying to connect|Connection terminated/i.test(error.message))
  );
}
