import type { z } from 'zod';
import { AppError } from '../../lib/errors';
import type { Metrics } from '../../lib/metrics';
import type { QuotaEnforcer, QuotaState, Reservation, ReserveOutcome } from '../quotas/enforcer';
import { type ReactionDeps, reactToCrossings } from '../quotas/reactions';
import { type NormalizedEvent, type UsageEventInput, fastParseEvent, usageEventInputSchema } from './event-schema';
import type { EventOutcome, EventWriter, IngestLimits } from './ingest';
import { normalizeEvent } from './ingest';
import type { GroupCommitter } from './group-commit';
import type { Environment } from '../environments/environment';

export interface TrackDeps {
  limits: IngestLimits;
  writer: EventWriter;
  committer: GroupCommitter;
  metrics?: Metrics;
  /** Without it nothing is enforced (scripts, backfills). */
  quota?: { enforcer: QuotaEnforcer; reactions: ReactionDeps };
}

/** Every final outcome is counted once, here: accepted, duplicate, or rejected by reason. */
function countOutcomes(metrics: Metrics | undefined, outcomes: EventOutcome[]): void {
  if (!metrics) return;
  for (const o of outcomes) {
    if (o.status === 'accepted') metrics.eventsAccepted.inc();
    else if (o.status === 'duplicate') metrics.eventsDuplicate.inc();
    else metrics.eventsRejected.inc({ reason: o.code });
  }
}

const OUTCOME_ERRORS = {
  INVALID_EVENT: 'INVALID_EVENT',
  OUT_OF_RANGE: 'BAD_REQUEST',
  LICENSE_NOT_FOUND: 'NOT_FOUND',
  LICENSE_INACTIVE: 'LICENSE_INACTIVE',
  IDEMPOTENCY_CONFLICT: 'IDEMPOTENCY_CONFLICT',
  QUOTA_EXCEEDED: 'TOO_MANY_REQUESTS',
} as const;

function fieldOf(message: string): string {
  return /^(\w+):/.exec(message)?.[1] ?? '';
}

function quotaMessage(state: QuotaState): string {
  return `quota exceeded: ${state.usageType} ${state.periodType} limit ${state.limit} reached (used ${state.used}); resets at ${state.resetAt.toISOString()}`;
}

/** The numbers of a refusal, as sent in error.data.details (and as rate-limit headers). */
export function quotaDetails(state: QuotaState, now = new Date()) {
  return {
    usageType: state.usageType,
    periodType: state.periodType,
    limit: state.limit,
    used: state.used,
    remaining: state.remaining,
    resetAt: state.resetAt.toISOString(),
    retryAfterSeconds: Math.max(1, Math.ceil((state.resetAt.getTime() - now.getTime()) / 1000)),
  };
}

type Admission = ReserveOutcome;
const UNLIMITED: Admission = { admitted: true, reservation: null, state: null };

/**
 * Writes the admitted events (settling their reservations, or giving them back for
 * duplicates and failures) and answers the refused ones: a refused event whose key is
 * already stored is still a duplicate, otherwise QUOTA_EXCEEDED.
 */
async function writeAdmitted(
  deps: TrackDeps,
  events: NormalizedEvent[],
  admissions: Admission[],
  write: (events: NormalizedEvent[]) => Promise<EventOutcome[]>,
): Promise<EventOutcome[]> {
  const outcomes: EventOutcome[] = new Array(events.length);
  const admitted = events.map((_, i) => i).filter((i) => admissions[i]!.admitted);
  const refused = events.map((_, i) => i).filter((i) => !admissions[i]!.admitted);
  const reservations = admitted.map((i) => (admissions[i] as { reservation: Reservation | null }).reservation);
  let written: EventOutcome[];
  try {
    written = await write(admitted.map((i) => events[i]!));
  } catch (error) {
    await deps.quota?.enforcer.release(reservations);
    throw error;
  }
  admitted.forEach((i, j) => (outcomes[i] = written[j]!));
  if (deps.quota) {
    const stored = written.map((o) => o.status === 'accepted');
    await deps.quota.enforcer.release(reservations.filter((_, j) => !stored[j]));
    await reactToCrossings(deps.quota.reactions, deps.quota.enforcer.settle(reservations.filter((_, j) => stored[j])));
  }
  if (refused.length) {
    const earlier = await deps.writer.storedOutcomes(refused.map((i) => events[i]!));
    refused.forEach((i, j) => {
      const state = (admissions[i] as { state: QuotaState }).state;
      outcomes[i] = earlier[j] ?? { status: 'rejected', code: 'QUOTA_EXCEEDED', message: quotaMessage(state) };
    });
  }
  return outcomes;
}

/** One event, written through the group committer; refusals become the matching error. */
export async function trackEvent(
  deps: TrackDeps,
  tenantId: string,
  environment: Environment,
  event: z.output<typeof usageEventInputSchema>,
  requestIp: string | undefined,
): Promise<{ eventId: string; duplicate: boolean; quota: QuotaState | null }> {
  const normalized = normalizeEvent(tenantId, environment, event, deps.limits, new Date(), requestIp);
  let outcome: EventOutcome;
  let admission = UNLIMITED;
  if ('status' in normalized) outcome = normalized;
  else {
    const deciding = deps.quota ? deps.quota.enforcer.reserve(tenantId, environment, [normalized]).then(([a]) => a!) : undefined;
    // A quota that could not be decided keeps the event out of its group (the gate says no)
    // and fails this call through `await deciding` below: the gate itself never rejects.
    const written = deps.committer.submit(
      normalized,
      deciding?.then(
        (a) => a.admitted,
        () => false,
      ),
    );
    written.catch(() => undefined); // awaited below unless the quota refused (or failed to decide)
    if (deciding) admission = await deciding;
    [outcome] = (await writeAdmitted(deps, [normalized], [admission], async (events) =>
      events.length ? [await written] : [],
    )) as [EventOutcome];
  }
  countOutcomes(deps.metrics, [outcome]);
  if (outcome.status === 'rejected') {
    if (outcome.code === 'QUOTA_EXCEEDED' && admission.state) {
      throw new AppError('TOO_MANY_REQUESTS', outcome.message, quotaDetails(admission.state));
    }
    const field = fieldOf(outcome.message);
    throw new AppError(OUTCOME_ERRORS[outcome.code], outcome.message, undefined, {
      issues: field ? [{ path: [field], message: outcome.message.slice(field.length + 2), code: outcome.code }] : undefined,
    });
  }
  return { eventId: outcome.eventId, duplicate: outcome.status === 'duplicate', quota: admission.state };
}

export interface BatchResult {
  accepted: number;
  duplicates: number;
  rejected: { index: number; code: string; message: string }[];
  results: { index: number; eventId: string | null; status: 'accepted' | 'duplicate' | 'rejected' }[];
}

function describeIssues(error: z.ZodError): string {
  return error.issues.map((i) => `${i.path.join('.') || 'event'}: ${i.message}`).join('; ');
}

/** Up to 1,000 events, each judged on its own: a bad one is reported, the others go on. */
export async function trackEvents(
  deps: TrackDeps,
  tenantId: string,
  environment: Environment,
  events: UsageEventInput[],
  requestIp: string | undefined,
  /** `results: false`: no entry per event in `results` (the counts and `rejected` are kept). */
  options: { results?: boolean } = {},
): Promise<BatchResult & { quota: QuotaState | null }> {
  const now = new Date();
  const outcomes: EventOutcome[] = new Array(events.length);
  const toWrite: { index: number; event: NormalizedEvent }[] = [];
  events.forEach((raw, index) => {
    let event = fastParseEvent(raw);
    if (event === null) {
      const parsed = usageEventInputSchema.safeParse(raw);
      if (!parsed.success) {
        outcomes[index] = { status: 'rejected', code: 'INVALID_EVENT', message: describeIssues(parsed.error) };
        return;
      }
      event = parsed.data;
    }
    const normalized = normalizeEvent(tenantId, environment, event, deps.limits, now, requestIp);
    if ('status' in normalized) outcomes[index] = normalized;
    else toWrite.push({ index, event: normalized });
  });
  const normalized = toWrite.map((w) => w.event);
  const admissions = deps.quota ? await deps.quota.enforcer.reserve(tenantId, environment, normalized) : normalized.map(() => UNLIMITED);
  const written = await writeAdmitted(deps, normalized, admissions, (batch) => deps.writer.write(batch));
  toWrite.forEach((w, i) => (outcomes[w.index] = written[i]!));
  countOutcomes(deps.metrics, outcomes);

  const result: BatchResult & { quota: QuotaState | null } = {
    accepted: 0,
    duplicates: 0,
    rejected: [],
    results: [],
    quota: admissions.findLast((a) => a.state !== null)?.state ?? null,
  };
  const itemized = options.results !== false;
  outcomes.forEach((o, index) => {
    if (o.status === 'rejected') {
      result.rejected.push({ index, code: o.code, message: o.message });
      if (itemized) result.results.push({ index, eventId: null, status: 'rejected' });
    } else {
      if (o.status === 'accepted') result.accepted += 1;
      else result.duplicates += 1;
      if (itemized) result.results.push({ index, eventId: o.eventId, status: o.status });
    }
  });
  return result;
}
