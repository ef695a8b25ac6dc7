import type { ServerResponse } from 'node:http';
import { AppError, isUnavailableError } from '../lib/errors';
import type { ReadTarget, ReplicaReads } from '../lib/read-replica';

/** Response headers of an answer read from the replica (README "Read replica"). */
export const DATA_LAG_HEADER = 'X-Tally-Data-Lag-Ms';
export const DATA_SOURCE_HEADER = 'X-Tally-Data-Source';

/** The headers that tell a client how far behind the data of its answer may be. */
export function readHeaders(target: ReadTarget): Record<string, string> {
  return target.source === 'replica' ? { [DATA_SOURCE_HEADER]: 'replica', [DATA_LAG_HEADER]: String(target.lagMs) } : {};
}

/**
 * A failure of a read on the replica that the primary may not share: the server is gone, a
 * query was cancelled by a recovery conflict (40001 on a standby), or a row the replica has
 * not replayed yet (a license created a moment ago).
 */
export function isReplicaOnlyFailure(error: unknown): boolean {
  if (error instanceof AppError) return error.code === 'NOT_FOUND';
  return isUnavailableError(error) || (error as { code?: string } | null)?.code === '40001';
}

/**
 * Runs a read-only view where reads go now (the replica while it is fresh enough, else the
 * primary) and says on the response when it came from the replica and how far behind that may
 * be. A replica-only failure is read again on the primary, so a replica going away, or a
 * license it has not seen yet, costs a retry, never a wrong answer or an error.
 */
export async function readView<T>(
  reads: ReplicaReads,
  res: ServerResponse | undefined,
  run: (target: ReadTarget) => Promise<T>,
): Promise<T> {
  const target = reads.pick();
  let answered = target;
  let value: T;
  try {
    value = await run(target);
  } catch (error) {
    if (target.source !== 'replica' || !isReplicaOnlyFailure(error)) throw error;
    reads.markDown(error);
    answered = reads.primaryTarget();
    value = await run(answered);
  }
  if (res && !res.headersSent) for (const [name, v] of Object.entries(readHeaders(answered))) res.setHeader(name, v);
  return value;
}

/**
 * For views cached under a generation (AnalyticsCache): the generation to compute under, or
 * null (and the answer kept out of the cache) when it is read from a replica that may not hold
 * the writes behind that generation yet.
 */
export function generationFor(reads: ReplicaReads, target: ReadTarget, tenantId: string, generation: string | null, keepUncached: () => void): string | null {
  if (target.source === 'primary' || generation === null) return generation;
  if (reads.freshSince(`${tenantId}|${generation}`)) return generation;
  keepUncached();
  return null;
}
