/**
 * The closed set of application error codes. Each is mapped once to its HTTP answer, by the
 * server (src/server/errors.ts); workers and scripts never load the HTTP layer for it.
 */
export const APP_ERROR_CODES = [
  'BAD_REQUEST',
  'UNAUTHORIZED',
  'FORBIDDEN',
  'NOT_FOUND',
  'CONFLICT',
  'IDEMPOTENCY_CONFLICT',
  'LICENSE_INACTIVE',
  'INVALID_EVENT',
  'PAYLOAD_TOO_LARGE',
  'TOO_MANY_REQUESTS',
  'UNAVAILABLE',
] as const;

export type AppErrorCode = (typeof APP_ERROR_CODES)[number];

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
