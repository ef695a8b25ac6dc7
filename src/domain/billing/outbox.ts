import { setTimeout as sleep } from 'node:timers/promises';
import { publishWebhookEvent } from '../webhooks/dispatch';
import { deterministicEventId } from '../webhooks/events';
import { nowOf, type BillingDeps } from './deps';
import { openConnection, type OpenConnection } from './connections';
import { classifyStripeError, type StripeCall } from './stripe-gateway';
import { LocalRateGate, type AccountRateGate } from './rate-gate';

/**
 * The outbox sender. Calls are claimed with a lease (a sender that dies leaves them to be
 * claimed again once it runs out), sent with their Idempotency-Key at no more than the
 * account's requests per second, and their outcome recorded in batches. 429s, 5xx and
 * network failures retry with exponential backoff, Retry-After honoured (and the whole
 * account pauses for it); other 4xx fail the call, which health shows and billing.sync.failed
 * announces. A call waits for the call it depends on (a resend for its cancels); if that
 * failed, so does it.
 */

interface Claimed {
  id: string;
  kind: StripeCall['kind'];
  reason: string;
  identifier: string;
  request: Record<string, unknown>;
  attempts: number;
  overage_id: string | null;
  license_id: string | null;
  window_id: string | null;
  dependency_status: string | null;
}

interface Outcome {
  id: string;
  status: 'SENT' | 'FAILED' | 'PENDING';
  error: string | null;
  objectId: string | null;
  retryInMs: number;
}

function callOf(row: Claimed): StripeCall {
  const r = row.request;
  switch (row.kind) {
    case 'meter_event':
      return { kind: 'meter_event', eventName: String(r.eventName), customer: String(r.customer), value: BigInt(String(r.value)), timestamp: Number(r.timestamp), identifier: row.identifier };
    case 'meter_event_cancel':
      return { kind: 'meter_event_cancel', eventName: String(r.eventName), identifier: String(r.identifier) };
    case 'invoice_item':
      return {
        kind: 'invoice_item',
        customer: String(r.customer),
        amountCents: BigInt(String(r.amountCents ?? 0)),
        currency: String(r.currency),
        description: String(r.description),
        metadata: (r.metadata ?? {}) as Record<string, string>,
      };
  }
}

export interface SendOutcome {
  sent: number;
  failed: number;
  retried: number;
  pending: number;
}

/** Claims due calls of one connection (their dependencies settled), leasing them. */
async function claim(deps: Pick<BillingDeps, 'pool'>, connectionId: string, limit: number, leaseMs: number): Promise<Claimed[]> {
  const { rows } = await deps.pool.query<Claimed>(
    `UPDATE stripe_usage_reports r SET next_attempt_at = now() + make_interval(secs => $3::double precision / 1000)
     FROM (
       SELECT c.id, d.status::text AS dependency_status FROM stripe_usage_reports c
       LEFT JOIN stripe_usage_reports d ON d.id = c.depends_on_id
       WHERE c.status = 'PENDING' AND c.connection_id = $1 AND c.next_attempt_at <= now()
         AND (c.depends_on_id IS NULL OR d.status IS DISTINCT FROM 'PENDING')
       ORDER BY c.next_attempt_at LIMIT $2 FOR UPDATE OF c SKIP LOCKED
     ) picked
     WHERE r.id = picked.id
     RETURNING r.id, r.kind, r.reason, r.identifier, r.request, r.attempts, r.overage_id, r.license_id, r.window_id, r.amount_cents, picked.dependency_status`,
    [connectionId, limit, leaseMs],
  );
  return rows.map((r) => ({ ...r, request: { ...r.request, amountCents: (r as unknown as { amount_cents: string | null }).amount_cents } }));
}

async function record(deps: Pick<BillingDeps, 'pool'>, outcomes: Outcome[]): Promise<void> {
  if (outcomes.length === 0) return;
  await deps.pool.query(
    `UPDATE stripe_usage_reports r SET
       status = x.status::stripe_report_status,
       attempts = r.attempts + 1,
       last_error = x.error,
       stripe_object_id = coalesce(x.object_id, r.stripe_object_id),
       sent_at = CASE WHEN x.status = 'SENT' THEN now() ELSE r.sent_at END,
       next_attempt_at = now() + make_interval(secs => x.retry_ms::double precision / 1000)
     FROM json_to_recordset($1::json) AS x(id uuid, status text, error text, object_id text, retry_ms bigint)
     WHERE r.id = x.id`,
    [JSON.stringify(outcomes.map((o) => ({ id: o.id, status: o.status, error: o.error, object_id: o.objectId, retry_ms: o.retryInMs })))],
  );
  // A fee sent is billed: the overage says so, with the invoice item's id.
  const billed = outcomes.filter((o) => o.status === 'SENT' && o.objectId?.startsWith('ii_'));
  if (billed.length > 0) {
    await deps.pool.query(
      `UPDATE usage_overages o SET status = 'BILLED', stripe_invoice_item_id = x.object_id, updated_at = now()
       FROM json_to_recordset($1::json) AS x(id uuid, object_id text)
       JOIN stripe_usage_reports r ON r.id = x.id
       WHERE o.id = r.overage_id AND o.tenant_id = r.tenant_id AND o.status = 'APPROVED'`,
      [JSON.stringify(billed.map((o) => ({ id: o.id, object_id: o.objectId })))],
    );
  }
}

function backoffMs(deps: Pick<BillingDeps, 'send'>, attempts: number, retryAfterMs: number | null): number {
  const exponential = Math.min(60_000, deps.send.retryBaseMs * 2 ** Math.min(attempts, 16));
  const jittered = exponential / 2 + Math.random() * (exponential / 2);
  return Math.max(retryAfterMs ?? 0, Math.round(jittered));
}

/** Sends the due calls of one connection until none is left or the budget is spent. */
export async function sendOutbox(deps: BillingDeps, connection: OpenConnection, options: { budgetMs?: number } = {}): Promise<SendOutcome> {
  const deadline = performance.now() + (options.budgetMs ?? deps.send.budgetMs);
  // Shared by every sender of the account (Redis) when the app provides it, else this process's own.
  const gate = deps.rateGateFor?.(connection.id, deps.send.rps) ?? new LocalRateGate(deps.send.rps);
  const total: SendOutcome = { sent: 0, failed: 0, retried: 0, pending: 0 };
  const batchSize = Math.max(deps.send.concurrency * 8, 64);
  let recording: Promise<void> = Promise.resolve();
  const failures: Claimed[] = [];

  // Senders pull from a buffer that is refilled (claimed) while they send, and outcomes are
  // recorded in batches while they keep sending: the database never stalls the requests.
  const buffer: Claimed[] = [];
  let outcomes: Outcome[] = [];
  const flush = async () => {
    const done = outcomes;
    outcomes = [];
    const previous = recording;
    recording = previous.then(() => record(deps, done));
    await previous;
    for (const o of done) {
      if (o.status === 'SENT') total.sent += 1;
      else if (o.status === 'FAILED') total.failed += 1;
      else total.retried += 1;
    }
  };
  while (performance.now() < deadline) {
    let exhausted = false;
    let refilling: Promise<void> | null = null;
    const refill = () => {
      refilling ??= claim(deps, connection.id, batchSize, deps.send.leaseMs)
        .then((rows) => {
          if (rows.length === 0) exhausted = true;
          buffer.push(...rows);
        })
        .finally(() => (refilling = null));
      return refilling;
    };
    await Promise.all(
      Array.from({ length: deps.send.concurrency }, async () => {
        for (;;) {
          if (buffer.length < deps.send.concurrency * 2 && !exhausted && performance.now() < deadline) void refill();
          const row = buffer.shift();
          if (!row) {
            if (refilling) {
              await refilling;
              continue;
            }
            return;
          }
          // Not `outcomes.push(await …)`: that would push into the array a flush took meanwhile.
          const outcome = await sendOne(deps, connection, gate, row, failures);
          outcomes.push(outcome);
          if (outcomes.length >= 200) await flush();
        }
      }),
    );
    await flush();
    await recording;
    // Nothing due: stop when nothing is pending at all, else wait for the earliest retry.
    const { rows } = await deps.pool.query<{ pending: string; wait_ms: number | null }>(
      `SELECT count(*) AS pending, greatest(0, extract(epoch FROM min(next_attempt_at) - now()) * 1000)::float8 AS wait_ms
       FROM stripe_usage_reports WHERE connection_id = $1 AND status = 'PENDING'`,
      [connection.id],
    );
    if (Number(rows[0]?.pending ?? 0) === 0) break;
    const left = deadline - performance.now();
    if (left <= 0) break;
    await sleep(Math.min(Math.max(10, rows[0]?.wait_ms ?? 1000), left));
  }
  await recording;
  for (const row of failures) await announceFailure(deps, connection, row).catch((err: unknown) => deps.logger.error({ err }, 'billing.sync.failed not published'));
  const { rows } = await deps.pool.query<{ pending: string }>(`SELECT count(*) AS pending FROM stripe_usage_reports WHERE connection_id = $1 AND status = 'PENDING'`, [connection.id]);
  total.pending = Number(rows[0]?.pending ?? 0);
  return total;
}

async function sendOne(deps: BillingDeps, connection: OpenConnection, gate: AccountRateGate, row: Claimed, failures: Claimed[]): Promise<Outcome> {
  if (row.dependency_status === 'FAILED') {
    failures.push(row);
    return { id: row.id, status: 'FAILED', error: 'the call it waits for failed', objectId: null, retryInMs: 0 };
  }
  if (row.kind === 'invoice_item' && row.request.amountCents === null) {
    failures.push(row);
    return { id: row.id, status: 'FAILED', error: 'the meter has no unit price: set stripePriceId or unitAmountDecimal with billing.meters.upsert', objectId: null, retryInMs: 0 };
  }
  if (row.overage_id) {
    const { rows } = await deps.pool.query<{ status: string }>(`SELECT status FROM usage_overages WHERE id = $1`, [row.overage_id]);
    if (rows[0]?.status !== 'APPROVED' && rows[0]?.status !== 'BILLED') {
      return { id: row.id, status: 'FAILED', error: `overage is ${rows[0]?.status ?? 'gone'}, not approved: not billed`, objectId: null, retryInMs: 0 };
    }
  }
  await gate.take();
  try {
    const { objectId } = await deps.gateway.send(connection.secretKey, callOf(row), `tally_${row.identifier}`);
    return { id: row.id, status: 'SENT', error: null, objectId, retryInMs: 0 };
  } catch (error) {
    const failure = classifyStripeError(error);
    if (failure.retryable && row.attempts + 1 < deps.send.maxAttempts) {
      if (failure.status === 429) gate.pause(failure.retryAfterMs ?? 1000);
      return { id: row.id, status: 'PENDING', error: failure.message, objectId: null, retryInMs: backoffMs(deps, row.attempts, failure.retryAfterMs) };
    }
    failures.push({ ...row, request: { ...row.request, error: failure.message } });
    return { id: row.id, status: 'FAILED', error: failure.message, objectId: null, retryInMs: 0 };
  }
}

async function announceFailure(deps: BillingDeps, connection: OpenConnection, row: Claimed): Promise<void> {
  deps.logger.warn({ tenantId: connection.tenantId, outboxId: row.id, kind: row.kind }, 'Stripe call failed for good');
  await publishWebhookEvent(deps.webhooks, { tenantId: connection.tenantId, environment: connection.mode }, {
    id: deterministicEventId('billing.sync.failed', row.id),
    type: 'billing.sync.failed',
    createdAt: nowOf(deps).toISOString(),
    data: { outboxId: row.id, kind: row.kind, reason: row.reason, licenseId: row.license_id, overageId: row.overage_id, identifier: row.identifier, error: row.request.error ?? null },
  });
}

/** Every connection with calls due, sent in turn (the job's sweep). */
export async function sendAllOutboxes(deps: BillingDeps): Promise<SendOutcome> {
  const { rows } = await deps.pool.query<{ connection_id: string }>(`SELECT DISTINCT connection_id FROM stripe_usage_reports WHERE status = 'PENDING'`);
  const total: SendOutcome = { sent: 0, failed: 0, retried: 0, pending: 0 };
  for (const { connection_id } of rows) {
    const connection = await openConnection(deps, { id: connection_id });
    if (!connection) continue;
    const outcome = await sendOutbox(deps, connection);
    total.sent += outcome.sent;
    total.failed += outcome.failed;
    total.retried += outcome.retried;
    total.pending += outcome.pending;
  }
  return total;
}
