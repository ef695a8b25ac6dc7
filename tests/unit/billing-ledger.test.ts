import Decimal from 'decimal.js';
import { decideWindow, centsFor, CANCEL_WINDOW_MS, METER_TIMESTAMP_LIMIT_MS, type WindowState } from '../../src/domain/billing/ledger-math';
import { SecretBox, parseEncryptionKey } from '../../src/lib/secret-box';

const ids = { tenantId: 't', licenseId: 'l', meterId: 'm' };
const now = new Date('2026-11-30T12:00:00Z');
const hour = new Date('2026-11-30T09:00:00Z');
const fresh: WindowState = { hour, meteredQuantity: new Decimal(0), liveUnits: 0n, creditedUnits: 0n, invoicedUnits: 0n, revision: 0, liveEvents: [] };
const d = (v: string | number) => new Decimal(v);

describe('decideWindow', () => {
  it('sends a new window as revision 1, an increase as the next revision', () => {
    const first = decideWindow(ids, fresh, d(7), d(1), d(0), null, now);
    expect(first.calls.map((c) => [c.kind, c.reason, c.revision, c.units])).toEqual([['meter_event', 'initial', 1, 7n]]);
    const more = decideWindow(ids, { ...fresh, meteredQuantity: d(7), liveUnits: 7n, revision: 1 }, d(9), d(1), d(0), null, now);
    expect(more.calls.map((c) => [c.reason, c.revision, c.units])).toEqual([['increase', 2, 2n]]);
    expect(more.calls[0]!.eventIdentifier).not.toBe(first.calls[0]!.eventIdentifier);
  });

  it('carries fractions: the units sent sum to the floor of the units metered', () => {
    let carry = d(0);
    let sent = 0n;
    for (const q of ['0.6', '0.7', '0.8', '1.95']) {
      const r = decideWindow(ids, fresh, d(q), d(1), carry, null, now);
      carry = r.carry;
      sent += r.calls.reduce((s, c) => s + c.units, 0n);
    }
    expect([sent, carry.toFixed()]).toEqual([4n, '0.05']);
  });

  it('cancels and resends a decrease inside the cancel window, credits it after', () => {
    const reported = { ...fresh, meteredQuantity: d(9), liveUnits: 9n, revision: 1, liveEvents: [{ identifier: 'e1', sentAt: new Date(now.getTime() - CANCEL_WINDOW_MS + 60_000) }] };
    const inside = decideWindow(ids, reported, d(6), d(1), d(0), d('2.5'), now);
    expect(inside.calls.map((c) => [c.kind, c.reason, c.units, c.after])).toEqual([['meter_event_cancel', 'decrease_cancel', 0n, null], ['meter_event', 'decrease_resend', 6n, 0]]);
    expect(inside.next.liveUnits).toBe(6n);
    const old = { ...reported, liveEvents: [{ identifier: 'e1', sentAt: new Date(now.getTime() - CANCEL_WINDOW_MS - 60_000) }] };
    const after = decideWindow(ids, old, d(6), d(1), d(0), d('2.5'), now);
    expect(after.calls.map((c) => [c.kind, c.reason, c.units, c.amountCents])).toEqual([['invoice_item', 'decrease_credit', -3n, -8n]]);
    expect([after.next.liveUnits, after.next.creditedUnits]).toEqual([9n, 3n]);
  });

  it('bills an hour past Stripe timestamp limit as an invoice item', () => {
    const ancient = { ...fresh, hour: new Date(now.getTime() - METER_TIMESTAMP_LIMIT_MS - 3_600_000) };
    const r = decideWindow(ids, ancient, d(4), d(1), d(0), d(10), now);
    expect(r.calls.map((c) => [c.kind, c.reason, c.amountCents])).toEqual([['invoice_item', 'late_window_charge', 40n]]);
    const justInside = { ...fresh, hour: new Date(now.getTime() - METER_TIMESTAMP_LIMIT_MS) };
    expect(decideWindow(ids, justInside, d(4), d(1), d(0), d(10), now).calls[0]!.kind).toBe('meter_event');
  });

  it('changes an hour that is already on an invoice by invoice items only: a charge for more, a credit for less', () => {
    const invoiced = { ...fresh, meteredQuantity: d(9), liveUnits: 9n, revision: 1, invoiced: true, liveEvents: [{ identifier: 'e1', sentAt: new Date(now.getTime() - 60_000) }] };
    const more = decideWindow(ids, invoiced, d(11), d(1), d(0), d(10), now);
    expect(more.calls.map((c) => [c.kind, c.reason, c.units, c.amountCents])).toEqual([['invoice_item', 'late_window_charge', 2n, 20n]]);
    // inside the 24 h cancel window, but cancelling would take back usage Stripe has already invoiced
    const less = decideWindow(ids, invoiced, d(6), d(1), d(0), d(10), now);
    expect(less.calls.map((c) => [c.kind, c.reason, c.units, c.amountCents])).toEqual([['invoice_item', 'decrease_credit', -3n, -30n]]);
    // the same hour not yet invoiced: a meter event, and a cancel with a resend
    const open = { ...invoiced, invoiced: false };
    expect(decideWindow(ids, open, d(11), d(1), d(0), d(10), now).calls[0]!.kind).toBe('meter_event');
    expect(decideWindow(ids, open, d(6), d(1), d(0), d(10), now).calls.map((c) => c.kind)).toEqual(['meter_event_cancel', 'meter_event']);
  });

  it('prices units half away from zero, and not at all without a price', () => {
    expect([centsFor(1n, d('2.5')), centsFor(3n, d('0.1')), centsFor(1n, null)]).toEqual([3n, 0n, null]);
  });
});

describe('SecretBox', () => {
  it('opens what it sealed, refuses a tampered value or another key, and takes only 32-byte keys', () => {
    const box = new SecretBox(parseEncryptionKey('ab'.repeat(32))!);
    const sealed = box.seal('sk_live_secret');
    expect(sealed).not.toContain('sk_live');
    expect(box.open(sealed)).toBe('sk_live_secret');
    expect(box.seal('sk_live_secret')).not.toBe(sealed);
    const [v, iv, tag, body] = sealed.split('.');
    expect(() => box.open([v, iv, tag, `${body!.slice(0, -2)}AA`].join('.'))).toThrow();
    expect(() => new SecretBox(parseEncryptionKey('cd'.repeat(32))!).open(sealed)).toThrow();
    expect(parseEncryptionKey('ab'.repeat(31))).toBeNull();
    expect(parseEncryptionKey('ab'.repeat(33))).toBeNull();
    expect(parseEncryptionKey(Buffer.alloc(32, 1).toString('base64'))).toHaveLength(32);
    expect(parseEncryptionKey(Buffer.alloc(31, 1).toString('base64'))).toBeNull();
  });
});
