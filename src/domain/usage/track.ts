import type { z } from 'zod';
import { AppError } from '../../lib/errors';
import type { Metrics } from '../../lib/metrics';
import { type NormalizedEvent, type UsageEventInput, usageEventInputSchema } from './event-schema';
import type { EventOutcome, EventWriter, IngestLimits } from './ingest';
import { normalizeEvent } from './ingest';
import type { GroupCommitter } from './group-commit';

export interface TrackDeps {
  limits: IngestLimits;
  writer: EventWriter;
  committer: GroupCommitter;
  metrics?: Metrics;
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
} as const;

function fieldOf(message: string): string {
  return /^(\w+):/.exec(message)?.[1] ?? '';
}

/** One event, written through the group committer; refusals become the matching error. */
export async function trackEvent(
  deps: TrackDeps,
  tenantId: string,
  event: z.output<typeof usageEventInputSchema>,
  requestIp: string | undefined,
): Promise<{ eventId: string; duplicate: boolean }> {
  const normalized = normalizeEvent(tenantId, event, deps.limits, new Date(), requestIp);
  const outcome: EventOutcome = 'status' in normalized ? normalized : await deps.committer.submit(normalized);
  countOutcomes(deps.metrics, [outcome]);
  if (outcome.status === 'rejected') {
    const field = fieldOf(outcome.message);
    throw new AppError(OUTCOME_ERRORS[outcome.code], outcome.message, undefined, {
      issues: field ? [{ path: [field], message: outcome.message.slice(field.length + 2), code: outcome.code }] : undefined,
    });
  }
  return { eventId: outcome.eventId, duplicate: outcome.status === 'duplicate' };
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
  events: UsageEventInput[],
  requestIp: string | undefined,
): Promise<BatchResult> {
  const now = new Date();
  const outcomes: EventOutcome[] = new Array(events.length);
  const toWrite: { index: number; event: NormalizedEvent }[] = [];
  events.forEach((raw, index) => {
    const parsed = usageEventInputSchema.safeParse(raw);
    if (!parsed.success) {
      outcomes[index] = { status: 'rejected', code: 'INVALID_EVENT', message: describeIssues(parsed.error) };
      return;
    }
    const normalized = normalizeEvent(tenantId, parsed.data, deps.limits, now, requestIp);
    if ('status' in normalized) outcomes[index] = normalized;
    else toWrite.push({ index, event: normalized });
  });
  const written = await deps.writer.write(toWrite.map((w) => w.event));
  toWrite.forEach((w, i) => (outcomes[w.index] = written[i]!));
  countOutcomes(deps.metrics, outcomes);

  const result: BatchResult = { accepted: 0, duplicates: 0, rejected: [], results: [] };
  outcomes.forEach((o, index) => {
    if (o.status === 'rejected') {
      result.rejected.push({ index, code: o.code, message: o.message });
      result.results.push({ index, eventId: null, status: 'rejected' });
    } else {
      if (o.status === 'accepted') result.accepted += 1;
      else result.duplicates += 1;
      result.results.push({ index, eventId: o.eventId, status: o.status });
    }
  });
  return result;
}
