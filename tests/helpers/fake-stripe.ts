import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import Stripe from 'stripe';
import { rng } from './seeded-random';

/**
 * A local stand-in for the parts of Stripe's API Tally uses (Stripe is the one part tests
 * cannot reach), started on a random port. It behaves like Stripe where Tally relies on it:
 * form-encoded bodies, accounts told apart by secret key, Idempotency-Key replay of the first
 * response, meter event identifier dedupe, the 24 h cancel window and the 35-day / 5-minute
 * timestamp window against a clock tests control, event summaries, meters, customers,
 * prices, invoice items, and signed webhooks sent back. It injects faults on request: a share
 * of 500s (before anything is done), of timeouts after the request was committed, 429 bursts
 * with Retry-After, a per-account request rate limit, and a response delay.
 */

const DAY_S = 86_400;

export interface FaultConfig {
  /** Share of requests answered 500 before they are processed. */
  errorRate: number;
  /** Share of requests processed (committed) whose response never arrives: the socket is held then dropped. */
  timeoutRate: number;
  /** How long a timed-out request is held before the socket is destroyed. */
  timeoutHoldMs: number;
  /** Chance that a request starts a burst of `burstLength` 429s with Retry-After. */
  burstRate: number;
  burstLength: number;
  retryAfterSeconds: number;
  /** Requests per second one account may make (sliding second); past it, 429. 0 = no limit. */
  limitRps: number;
  /** Delay before every response, ms. */
  delayMs: number;
}

export interface MeterEventRecord {
  identifier: string;
  eventName: string;
  customer: string;
  value: number;
  timestamp: number;
  created: number;
  cancelled: boolean;
}

export interface InvoiceItemRecord {
  id: string;
  customer: string;
  amount: number;
  currency: string;
  description: string | null;
  metadata: Record<string, string>;
  idempotencyKey: string | null;
}

interface Account {
  key: string;
  customers: Map<string, { id: string; name?: string; email?: string; metadata: Record<string, string> }>;
  meters: Map<string, { id: string; event_name: string; display_name: string; status: 'active' }>;
  meterEvents: Map<string, MeterEventRecord>;
  invoiceItems: InvoiceItemRecord[];
  prices: Map<string, { id: string; unit_amount_decimal: string; currency: string }>;
  idempotency: Map<string, { fingerprint: string; status: number; body: string }>;
  recentRequests: number[];
}

export interface Counters {
  requests: number;
  byRoute: Record<string, number>;
  byStatus: Record<string, number>;
  faults: { errors: number; timeouts: number; rateLimited: number };
  idempotentReplays: number;
  duplicateIdentifiers: number;
}

type Params = Record<string, unknown>;

/** Stripe's form encoding: `a[b][c]=v` → { a: { b: { c: 'v' } } }. */
export function parseForm(text: string): Params {
  const out: Params = {};
  for (const [rawKey, value] of new URLSearchParams(text)) {
    const parts = rawKey.split(/\[|\]\[|\]/).filter((p) => p !== '');
    let node: Params = out;
    parts.forEach((part, i) => {
      if (i === parts.length - 1) node[part] = value;
      else node = (node[part] ??= {}) as Params;
    });
  }
  return out;
}


const id = (prefix: string) => `${prefix}_${randomBytes(12).toString('hex')}`;

export class FakeStripe {
  readonly accounts = new Map<string, Account>();
  readonly faults: FaultConfig = { errorRate: 0, timeoutRate: 0, timeoutHoldMs: 1000, burstRate: 0, burstLength: 3, retryAfterSeconds: 1, limitRps: 0, delayMs: 0 };
  counters: Counters = FakeStripe.emptyCounters();
  /** Added to the real clock: tests move Stripe's "now" (cancel windows, timestamp limits). */
  clockOffsetMs = 0;
  private random = rng(1);
  private burstLeft = 0;
  private server!: http.Server;
  private readonly held = new Set<http.ServerResponse>();
  baseUrl = '';

  static emptyCounters(): Counters {
    return { requests: 0, byRoute: {}, byStatus: {}, faults: { errors: 0, timeouts: 0, rateLimited: 0 }, idempotentReplays: 0, duplicateIdentifiers: 0 };
  }

  static async start(): Promise<FakeStripe> {
    const fake = new FakeStripe();
    fake.server = http.createServer((req, res) => fake.handle(req, res));
    fake.server.keepAliveTimeout = 60_000;
    await new Promise<void>((resolve) => fake.server.listen(0, '127.0.0.1', resolve));
    fake.baseUrl = `http://127.0.0.1:${(fake.server.address() as AddressInfo).port}`;
    return fake;
  }

  async close(): Promise<void> {
    for (const res of this.held) res.destroy();
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  setFaults(faults: Partial<FaultConfig>, seed = 1): void {
    Object.assign(this.faults, faults);
    this.random = rng(seed);
    this.burstLeft = 0;
  }

  clearFaults(): void {
    this.setFaults({ errorRate: 0, timeoutRate: 0, burstRate: 0, limitRps: 0, delayMs: 0 });
  }

  resetCounters(): void {
    this.counters = FakeStripe.emptyCounters();
  }

  nowSeconds(): number {
    return Math.floor((Date.now() + this.clockOffsetMs) / 1000);
  }

  account(key: string): Account {
    let account = this.accounts.get(key);
    if (!account) {
      account = {
        key,
        customers: new Map(),
        meters: new Map(),
        meterEvents: new Map(),
        invoiceItems: [],
        prices: new Map(),
        idempotency: new Map(),
        recentRequests: [],
      };
      this.accounts.set(key, account);
    }
    return account;
  }

  addPrice(key: string, price: { id: string; unitAmountDecimal: string; currency?: string }): void {
    this.account(key).prices.set(price.id, { id: price.id, unit_amount_decimal: price.unitAmountDecimal, currency: price.currency ?? 'usd' });
  }

  /** Sum of live (not cancelled) meter event values, like a meter event summary, over [from, to) seconds. */
  summary(key: string, filter: { customer?: string; eventName?: string; from?: number; to?: number }): number {
    let total = 0;
    for (const e of this.accounts.get(key)?.meterEvents.values() ?? []) {
      if (e.cancelled) continue;
      if (filter.customer !== undefined && e.customer !== filter.customer) continue;
      if (filter.eventName !== undefined && e.eventName !== filter.eventName) continue;
      if (filter.from !== undefined && e.timestamp < filter.from) continue;
      if (filter.to !== undefined && e.timestamp >= filter.to) continue;
      total += e.value;
    }
    return total;
  }

  /** Live totals keyed `customer|eventName|hourStartSeconds`. */
  hourlyTotals(key: string): Map<string, number> {
    const totals = new Map<string, number>();
    for (const e of this.accounts.get(key)?.meterEvents.values() ?? []) {
      if (e.cancelled) continue;
      const k = `${e.customer}|${e.eventName}|${e.timestamp - (e.timestamp % 3600)}`;
      totals.set(k, (totals.get(k) ?? 0) + e.value);
    }
    return totals;
  }

  invoiceItems(key: string): InvoiceItemRecord[] {
    return this.accounts.get(key)?.invoiceItems ?? [];
  }

  /** POSTs a Stripe-signed event to `url`, as Stripe's webhook delivery would. */
  async sendWebhook(url: string, secret: string, event: Record<string, unknown>, options: { timestamp?: number; signature?: string } = {}) {
    const payload = JSON.stringify({ object: 'event', api_version: '2025-01-01', created: this.nowSeconds(), livemode: false, ...event });
    const signature =
      options.signature ??
      Stripe.webhooks.generateTestHeaderString({ payload, secret, timestamp: options.timestamp ?? Math.floor(Date.now() / 1000) });
    const response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', 'stripe-signature': signature }, body: payload });
    return { status: response.status, body: await response.text() };
  }

  private count(route: string, status: number): void {
    this.counters.byRoute[route] = (this.counters.byRoute[route] ?? 0) + 1;
    this.counters.byStatus[String(status)] = (this.counters.byStatus[String(status)] ?? 0) + 1;
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const send = () => this.respond(req, res, body);
      if (this.faults.delayMs > 0) setTimeout(send, this.faults.delayMs);
      else send();
    });
  }

  private respond(req: http.IncomingMessage, res: http.ServerResponse, body: string): void {
    this.counters.requests += 1;
    const url = new URL(req.url ?? '/', 'http://fake');
    const route = `${req.method} ${url.pathname.replace(/\/(cus|mtr|price|ii|in)_[A-Za-z0-9]+/g, '/:id')}`;
    const reply = (status: number, payload: unknown, headers: Record<string, string> = {}) => this.answer(res, route, false, status, payload, headers);
    const auth = req.headers.authorization ?? '';
    const key = auth.startsWith('Bearer ') ? auth.slice(7) : '';
    if (!/^(sk|rk)_(test|live)_[A-Za-z0-9_]+$/.test(key)) {
      reply(401, { error: { type: 'invalid_request_error', message: 'Invalid API Key provided' } });
      return;
    }
    const account = this.account(key);

    // Rate limit and injected faults come before any processing, as Stripe's own would.
    if (this.faults.limitRps > 0) {
      const now = Date.now();
      account.recentRequests = account.recentRequests.filter((t) => t > now - 1000);
      if (account.recentRequests.length >= this.faults.limitRps) {
        this.counters.faults.rateLimited += 1;
        reply(429, { error: { type: 'invalid_request_error', code: 'rate_limit', message: 'Too many requests' } }, { 'retry-after': '1' });
        return;
      }
      account.recentRequests.push(now);
    }
    if (this.burstLeft === 0 && this.faults.burstRate > 0 && this.random() < this.faults.burstRate) this.burstLeft = this.faults.burstLength;
    if (this.burstLeft > 0) {
      this.burstLeft -= 1;
      this.counters.faults.rateLimited += 1;
      reply(429, { error: { type: 'invalid_request_error', code: 'rate_limit', message: 'Too many requests' } }, { 'retry-after': String(this.faults.retryAfterSeconds) });
      return;
    }
    if (this.faults.errorRate > 0 && this.random() < this.faults.errorRate) {
      this.counters.faults.errors += 1;
      reply(500, { error: { type: 'api_error', message: 'injected fault' } });
      return;
    }
    const timeOut = this.faults.timeoutRate > 0 && this.random() < this.faults.timeoutRate;

    const params = req.method === 'GET' ? Object.fromEntries(url.searchParams) : parseForm(body);
    const idempotencyKey = req.method === 'POST' ? ((req.headers['idempotency-key'] as string | undefined) ?? null) : null;
    const fingerprint = `${url.pathname}\n${body}`;
    const cached = idempotencyKey ? account.idempotency.get(idempotencyKey) : undefined;
    if (cached) {
      if (cached.fingerprint !== fingerprint) {
        this.answer(res, route, timeOut, 400, {
          error: { type: 'idempotency_error', message: 'Keys for idempotent requests can only be used with the same parameters they were first used with.' },
        });
        return;
      }
      this.counters.idempotentReplays += 1;
      this.answer(res, route, timeOut, cached.status, JSON.parse(cached.body) as unknown, { 'idempotent-replayed': 'true' });
      return;
    }
    const [status, payload] = this.process(account, req.method ?? 'GET', url.pathname, params, idempotencyKey);
    // Stripe keeps the first answer of a key unless it was a 5xx (those may be retried).
    if (idempotencyKey && status < 500) account.idempotency.set(idempotencyKey, { fingerprint, status, body: JSON.stringify(payload) });
    this.answer(res, route, timeOut, status, payload);
  }

  private answer(res: http.ServerResponse, route: string, timeOut: boolean, status: number, payload: unknown, headers: Record<string, string> = {}) {
    this.count(route, timeOut ? 0 : status);
    const text = JSON.stringify(payload);
    if (timeOut) {
      // Committed, but the answer never arrives.
      this.counters.faults.timeouts += 1;
      this.held.add(res);
      setTimeout(() => {
        this.held.delete(res);
        res.destroy();
      }, this.faults.timeoutHoldMs).unref();
      return { status, text };
    }
    res.writeHead(status, { 'content-type': 'application/json', 'request-id': id('req'), ...headers });
    res.end(text);
    return { status, text };
  }

  private process(account: Account, method: string, path: string, p: Params, idempotencyKey: string | null): [number, unknown] {
    const invalid = (message: string, code?: string, param?: string): [number, unknown] => [400, { error: { type: 'invalid_request_error', message, code, param } }];
    const missing = (what: string): [number, unknown] => [404, { error: { type: 'invalid_request_error', code: 'resource_missing', message: `No such ${what}` } }];
    const livemode = account.key.includes('_live_');
    const now = this.nowSeconds();
    let m: RegExpMatchArray | null;

    if (method === 'GET' && path === '/v1/account') return [200, { id: 'acct_fake', object: 'account', default_currency: 'usd' }];
    if (method === 'POST' && path === '/v1/customers') {
      const customer = { id: id('cus'), name: p.name as string | undefined, email: p.email as string | undefined, metadata: (p.metadata ?? {}) as Record<string, string> };
      account.customers.set(customer.id, customer);
      return [200, { object: 'customer', livemode, created: now, ...customer }];
    }
    if (method === 'GET' && (m = path.match(/^\/v1\/customers\/([^/]+)$/))) {
      const customer = account.customers.get(m[1]!);
      return customer ? [200, { object: 'customer', livemode, ...customer }] : missing('customer');
    }
    if (method === 'GET' && (m = path.match(/^\/v1\/prices\/([^/]+)$/))) {
      const price = account.prices.get(m[1]!);
      return price ? [200, { object: 'price', livemode, ...price }] : missing('price');
    }
    if (method === 'POST' && path === '/v1/billing/meters') {
      const eventName = p.event_name as string | undefined;
      if (!eventName || !p.display_name) return invalid('Missing required param: event_name or display_name', 'parameter_missing');
      if ([...account.meters.values()].some((x) => x.event_name === eventName)) return invalid(`A meter with event_name ${eventName} already exists`, 'resource_already_exists');
      const meter = { id: id('mtr'), event_name: eventName, display_name: String(p.display_name), status: 'active' as const };
      account.meters.set(meter.id, meter);
      return [200, { object: 'billing.meter', livemode, created: now, default_aggregation: { formula: 'sum' }, ...meter }];
    }
    if (method === 'GET' && (m = path.match(/^\/v1\/billing\/meters\/([^/]+)$/))) {
      const meter = account.meters.get(m[1]!);
      return meter ? [200, { object: 'billing.meter', livemode, ...meter }] : missing('billing.meter');
    }
    if (method === 'POST' && path === '/v1/billing/meter_events') {
      const payload = (p.payload ?? {}) as Record<string, string>;
      const eventName = p.event_name as string | undefined;
      const value = Number(payload.value);
      const timestamp = p.timestamp === undefined ? now : Number(p.timestamp);
      if (!eventName) return invalid('Missing required param: event_name.', 'parameter_missing', 'event_name');
      if (!payload.stripe_customer_id) return invalid('Missing payload[stripe_customer_id].', 'parameter_missing');
      if (!Number.isInteger(value) || value < 0) return invalid('payload[value] must be a non-negative whole number.', 'parameter_invalid_integer');
      if (timestamp < now - 35 * DAY_S) return invalid('Timestamp must be within the past 35 days.', 'timestamp_too_far_in_past', 'timestamp');
      if (timestamp > now + 300) return invalid('Timestamp must not be more than 5 minutes in the future.', 'timestamp_in_future', 'timestamp');
      const identifier = (p.identifier as string | undefined) ?? id('mev');
      const existing = account.meterEvents.get(identifier);
      if (existing) {
        // Stripe enforces identifier uniqueness for at least 24 h: the duplicate is not counted.
        this.counters.duplicateIdentifiers += 1;
      } else {
        account.meterEvents.set(identifier, { identifier, eventName, customer: payload.stripe_customer_id, value, timestamp, created: now, cancelled: false });
      }
      return [200, { object: 'billing.meter_event', created: now, event_name: eventName, identifier, livemode, payload, timestamp }];
    }
    if (method === 'POST' && path === '/v1/billing/meter_event_adjustments') {
      const cancel = (p.cancel ?? {}) as Record<string, string>;
      if (p.type !== 'cancel' || !cancel.identifier) return invalid('type must be cancel, with cancel[identifier].', 'parameter_invalid');
      const event = account.meterEvents.get(cancel.identifier);
      if (!event || event.eventName !== p.event_name) return invalid(`No meter event with identifier ${cancel.identifier}.`, 'resource_missing');
      if (now - event.created > DAY_S) return invalid('Meter events can only be cancelled within 24 hours of being received.', 'meter_event_adjustment_window_expired');
      event.cancelled = true;
      return [200, { object: 'billing.meter_event_adjustment', event_name: event.eventName, livemode, status: 'complete', type: 'cancel', cancel: { identifier: cancel.identifier } }];
    }
    if (method === 'GET' && (m = path.match(/^\/v1\/billing\/meters\/([^/]+)\/event_summaries$/))) {
      const meter = account.meters.get(m[1]!);
      if (!meter) return missing('billing.meter');
      const start = Number(p.start_time);
      const end = Number(p.end_time);
      if (!p.customer || !Number.isInteger(start) || !Number.isInteger(end) || end <= start) return invalid('customer, start_time and end_time are required.', 'parameter_missing');
      const grouping = p.value_grouping_window as string | undefined;
      const step = grouping === 'hour' ? 3600 : grouping === 'day' ? DAY_S : end - start;
      if (step !== end - start && (start % step !== 0 || end % step !== 0)) return invalid('start_time and end_time must align with value_grouping_window.', 'parameter_invalid');
      const data = [];
      for (let t = start; t < end; t += step) {
        const value = this.summary(account.key, { customer: String(p.customer), eventName: meter.event_name, from: t, to: Math.min(end, t + step) });
        data.push({ id: id('mtrusg'), object: 'billing.meter_event_summary', aggregated_value: value, start_time: t, end_time: Math.min(end, t + step), livemode, meter: meter.id });
      }
      return [200, { object: 'list', data: data.reverse(), has_more: false, url: path }];
    }
    if (method === 'POST' && path === '/v1/invoiceitems') {
      const amount = Number(p.amount);
      if (!p.customer || !Number.isInteger(amount) || !p.currency) return invalid('customer, amount (integer) and currency are required.', 'parameter_missing');
      if (!account.customers.has(String(p.customer)) && !String(p.customer).startsWith('cus_')) return missing('customer');
      const item: InvoiceItemRecord = {
        id: id('ii'),
        customer: String(p.customer),
        amount,
        currency: String(p.currency),
        description: (p.description as string | undefined) ?? null,
        metadata: (p.metadata ?? {}) as Record<string, string>,
        idempotencyKey,
      };
      account.invoiceItems.push(item);
      return [200, { object: 'invoiceitem', livemode, date: now, ...item }];
    }
    return [404, { error: { type: 'invalid_request_error', message: `Unrecognized request URL (${method}: ${path}).` } }];
  }
}
