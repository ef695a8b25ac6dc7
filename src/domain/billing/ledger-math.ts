import { hash } from 'node:crypto';
import Decimal from 'decimal.js';
import { DAY_MS, HOUR_MS } from '../../lib/time';

/**
 * The pure part of billing: what to tell Stripe about one window when its rolled-up quantity
 * is not the quantity the ledger accounted for. No I/O, so it is tested on its own.
 */

/** Stripe cancels a meter event within 24 h of receiving it; Tally keeps an hour of margin. */
export const CANCEL_WINDOW_MS = 23 * HOUR_MS;
/** Stripe takes meter event timestamps up to 35 days old; Tally keeps a day of margin for the outbox. */
export const METER_TIMESTAMP_LIMIT_MS = 34 * DAY_MS;

export interface LiveEvent {
  identifier: string;
  sentAt: Date;
}

export interface WindowState {
  hour: Date;
  meteredQuantity: Decimal;
  liveUnits: bigint;
  creditedUnits: bigint;
  invoicedUnits: bigint;
  revision: number;
  /** Meter events of this window Stripe holds (sent, not cancelled). */
  liveEvents: LiveEvent[];
  /**
   * The hour went into a Stripe invoice already (invoice.created or .finalized recorded it):
   * a meter event for it now would land in a period that has been billed and never be charged,
   * so a change is an invoice item (a charge or a credit) on the next invoice instead.
   */
  invoiced?: boolean;
}

export type CallReason =
  | 'initial'
  | 'increase'
  | 'decrease_cancel'
  | 'decrease_resend'
  | 'decrease_credit'
  | 'late_window_charge'
  | 'reconcile_heal'
  | 'reconcile_credit'
  | 'overage_fee';

export interface PlannedCall {
  kind: 'meter_event' | 'meter_event_cancel' | 'invoice_item';
  reason: CallReason;
  revision: number;
  /** meter_event: its identifier; cancel: the identifier of the event cancelled. */
  eventIdentifier: string | null;
  units: bigint;
  /** invoice items: signed cents; null when the meter has no unit price (the call fails visibly). */
  amountCents: bigint | null;
  /** Index into the same plan of the call that must succeed first. */
  after: number | null;
}

export interface WindowDecision {
  next: Omit<WindowState, 'liveEvents' | 'hour'>;
  carry: Decimal;
  calls: PlannedCall[];
}

/** A meter event identifier derived from what it stands for, so a resend is the same event. */
export function meterEventIdentifier(tenantId: string, licenseId: string, meterId: string, hour: Date, revision: number): string {
  return `tly_${windowKey(tenantId, licenseId, meterId, hour)}_r${revision}`;
}

export function windowKey(tenantId: string, licenseId: string, meterId: string, hour: Date): string {
  return hash('sha256', `${tenantId}|${licenseId}|${meterId}|${hour.toISOString()}`, 'hex').slice(0, 32);
}

/** Signed cents for units at a unit price in cents (half away from zero); null without a price. */
export function centsFor(units: bigint, unitAmountDecimal: Decimal | null): bigint | null {
  if (unitAmountDecimal === null) return null;
  return BigInt(new Decimal(units.toString()).times(unitAmountDecimal).toDecimalPlaces(0, Decimal.ROUND_HALF_UP).toFixed(0));
}

/**
 * The difference between the rollup and what the ledger accounted for, times the meter's
 * multiplier, plus the carried fraction, floored: that many whole units change hands, the rest
 * is carried. More units are a new meter event (a new revision), or an invoice item when the
 * hour is past Stripe's timestamp limit or already on an invoice. Fewer units cancel the window's meter events and
 * resend the corrected value while Stripe still allows cancelling all of them; what cannot be
 * taken back that way is a credit (a negative invoice item at the meter's unit price).
 */
export function decideWindow(
  ids: { tenantId: string; licenseId: string; meterId: string },
  window: WindowState,
  rollup: Decimal,
  multiplier: Decimal,
  carry: Decimal,
  unitAmountDecimal: Decimal | null,
  now: Date,
): WindowDecision {
  const exact = rollup.minus(window.meteredQuantity).times(multiplier).plus(carry);
  const units = exact.floor();
  const nextCarry = exact.minus(units);
  const delta = BigInt(units.toFixed(0));
  const next = {
    meteredQuantity: rollup,
    liveUnits: window.liveUnits,
    creditedUnits: window.creditedUnits,
    invoicedUnits: window.invoicedUnits,
    revision: window.revision,
  };
  const calls: PlannedCall[] = [];
  const sendable = !window.invoiced && window.hour.getTime() >= now.getTime() - METER_TIMESTAMP_LIMIT_MS;
  const identifier = (revision: number) => meterEventIdentifier(ids.tenantId, ids.licenseId, ids.meterId, window.hour, revision);

  if (delta > 0n) {
    next.revision += 1;
    if (sendable) {
      calls.push({ kind: 'meter_event', reason: window.revision === 0 ? 'initial' : 'increase', revision: next.revision, eventIdentifier: identifier(next.revision), units: delta, amountCents: null, after: null });
      next.liveUnits += delta;
    } else {
      calls.push({ kind: 'invoice_item', reason: 'late_window_charge', revision: next.revision, eventIdentifier: null, units: delta, amountCents: centsFor(delta, unitAmountDecimal), after: null });
      next.invoicedUnits += delta;
    }
  } else if (delta < 0n) {
    let remaining = -delta;
    const cancellable =
      sendable && window.liveEvents.length > 0 && window.liveEvents.every((e) => e.sentAt.getTime() > now.getTime() - CANCEL_WINDOW_MS);
    next.revision += 1;
    if (cancellable) {
      const taken = remaining < window.liveUnits ? remaining : window.liveUnits;
      const resend = window.liveUnits - taken;
      let previous: number | null = null;
      for (const event of window.liveEvents) {
        calls.push({ kind: 'meter_event_cancel', reason: 'decrease_cancel', revision: next.revision, eventIdentifier: event.identifier, units: 0n, amountCents: null, after: previous });
        previous = calls.length - 1;
      }
      if (resend > 0n) {
        calls.push({ kind: 'meter_event', reason: 'decrease_resend', revision: next.revision, eventIdentifier: identifier(next.revision), units: resend, amountCents: null, after: previous });
      }
      next.liveUnits = resend;
      remaining -= taken;
    }
    if (remaining > 0n) {
      const amount = centsFor(remaining, unitAmountDecimal);
      calls.push({ kind: 'invoice_item', reason: 'decrease_credit', revision: next.revision, eventIdentifier: null, units: -remaining, amountCents: amount === null ? null : -amount, after: null });
      next.creditedUnits += remaining;
    }
  }
  return { next, carry: nextCarry, calls };
}
