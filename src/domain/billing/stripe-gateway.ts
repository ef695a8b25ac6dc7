import Stripe from 'stripe';

/**
 * Tally's one door to Stripe: the few calls billing makes, each with the tenant's own secret
 * key. stripe-node does the HTTP (form encoding, Idempotency-Key header, error types); its own
 * retries are off because the outbox retries, with backoff and a per-account rate limit.
 */

export interface StripeGatewayOptions {
  /** Another server instead of api.stripe.com (tests, benchmarks). */
  apiBase?: string;
  timeoutMs: number;
}

export interface MeterEventCall {
  kind: 'meter_event';
  eventName: string;
  customer: string;
  value: bigint;
  /** Unix seconds. */
  timestamp: number;
  identifier: string;
}

export interface MeterEventCancelCall {
  kind: 'meter_event_cancel';
  eventName: string;
  identifier: string;
}

export interface InvoiceItemCall {
  kind: 'invoice_item';
  customer: string;
  amountCents: bigint;
  currency: string;
  description: string;
  metadata: Record<string, string>;
}

export type StripeCall = MeterEventCall | MeterEventCancelCall | InvoiceItemCall;

/** How a failed call is to be treated: retried (after at least retryAfterMs) or given up. */
export interface StripeFailure {
  retryable: boolean;
  status: number | null;
  retryAfterMs: number | null;
  code: string | null;
  message: string;
}

export class StripeGateway {
  private readonly clients = new Map<string, Stripe>();
  private readonly host: { host?: string; port?: number; protocol?: 'http' | 'https' } = {};

  constructor(private readonly options: StripeGatewayOptions) {
    if (options.apiBase) {
      const url = new URL(options.apiBase);
      this.host = {
        host: url.hostname,
        port: url.port ? Number(url.port) : url.protocol === 'http:' ? 80 : 443,
        protocol: url.protocol === 'http:' ? 'http' : 'https',
      };
    }
  }

  /** One client per secret key (stripe-node keeps its key per instance); bounded so rotated keys fall out. */
  client(secretKey: string): Stripe {
    let client = this.clients.get(secretKey);
    if (!client) {
      if (this.clients.size >= 1000) this.clients.delete(this.clients.keys().next().value!);
      client = new Stripe(secretKey, { maxNetworkRetries: 0, timeout: this.options.timeoutMs, telemetry: false, ...this.host });
      this.clients.set(secretKey, client);
    }
    return client;
  }

  /** Sends one outbox call; the id of what Stripe made (meter events have none: their identifier). */
  async send(secretKey: string, call: StripeCall, idempotencyKey: string): Promise<{ objectId: string | null }> {
    const stripe = this.client(secretKey);
    switch (call.kind) {
      case 'meter_event': {
        await stripe.billing.meterEvents.create(
          {
            event_name: call.eventName,
            payload: { stripe_customer_id: call.customer, value: call.value.toString() },
            identifier: call.identifier,
            timestamp: call.timestamp,
          },
          { idempotencyKey },
        );
        return { objectId: call.identifier };
      }
      case 'meter_event_cancel': {
        await stripe.billing.meterEventAdjustments.create(
          { event_name: call.eventName, type: 'cancel', cancel: { identifier: call.identifier } },
          { idempotencyKey },
        );
        return { objectId: null };
      }
      case 'invoice_item': {
        const item = await stripe.invoiceItems.create(
          {
            customer: call.customer,
            amount: Number(call.amountCents),
            currency: call.currency,
            description: call.description,
            metadata: call.metadata,
          },
          { idempotencyKey },
        );
        return { objectId: item.id };
      }
      default: {
        const never: never = call;
        throw new Error(`unknown Stripe call ${(never as StripeCall).kind}`);
      }
    }
  }

  async createCustomer(secretKey: string, args: { name: string; email?: string; metadata: Record<string, string> }, idempotencyKey: string): Promise<string> {
    const customer = await this.client(secretKey).customers.create({ name: args.name, email: args.email, metadata: args.metadata }, { idempotencyKey });
    return customer.id;
  }

  async createMeter(secretKey: string, args: { displayName: string; eventName: string }, idempotencyKey: string): Promise<string> {
    const meter = await this.client(secretKey).billing.meters.create(
      {
        display_name: args.displayName,
        event_name: args.eventName,
        default_aggregation: { formula: 'sum' },
        customer_mapping: { type: 'by_id', event_payload_key: 'stripe_customer_id' },
        value_settings: { event_payload_key: 'value' },
      },
      { idempotencyKey },
    );
    return meter.id;
  }

  /** Cents per unit, as Stripe's decimal string; null for a price without a per-unit amount. */
  async unitAmountOf(secretKey: string, priceId: string): Promise<string | null> {
    const price = await this.client(secretKey).prices.retrieve(priceId);
    if (price.unit_amount_decimal !== null && price.unit_amount_decimal !== undefined) return String(price.unit_amount_decimal);
    return price.unit_amount === null ? null : String(price.unit_amount);
  }

  /** Stripe's total of a meter for one customer over [start, end) (whole, aligned days or hours). */
  async meterTotal(secretKey: string, meterId: string, customer: string, start: Date, end: Date): Promise<number> {
    const page = await this.client(secretKey).billing.meters.listEventSummaries(meterId, {
      customer,
      start_time: Math.floor(start.getTime() / 1000),
      end_time: Math.floor(end.getTime() / 1000),
    });
    return page.data.reduce((sum, s) => sum + s.aggregated_value, 0);
  }

  /** Stripe's per-hour totals of a meter for one customer over [start, end), keyed by hour start (ms). */
  async meterHourly(secretKey: string, meterId: string, customer: string, start: Date, end: Date): Promise<Map<number, number>> {
    const page = await this.client(secretKey).billing.meters.listEventSummaries(meterId, {
      customer,
      start_time: Math.floor(start.getTime() / 1000),
      end_time: Math.floor(end.getTime() / 1000),
      value_grouping_window: 'hour',
      limit: 100,
    });
    return new Map(page.data.map((s) => [s.start_time * 1000, s.aggregated_value]));
  }

  verifyWebhook(payload: Buffer, signature: string, secret: string, toleranceSeconds: number): Stripe.Event {
    return Stripe.webhooks.constructEvent(payload, signature, secret, toleranceSeconds);
  }
}

/**
 * 429s, 5xx, 409 (a concurrent request with the same key) and network failures (timeouts
 * included: the call may have committed, and its idempotency key makes the retry safe) are
 * retried; any other 4xx is permanent for that call.
 */
export function classifyStripeError(error: unknown): StripeFailure {
  if (error instanceof Stripe.errors.StripeError) {
    const status = error.statusCode ?? null;
    const retryAfter = Number(error.headers?.['retry-after']);
    const retryable = status === null || status === 429 || status === 409 || status >= 500 || error.type === 'StripeConnectionError';
    return {
      retryable,
      status,
      retryAfterMs: Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter * 1000 : null,
      code: error.code ?? null,
      message: `${status ?? 'network'}: ${error.message}`.slice(0, 500),
    };
  }
  return { retryable: true, status: null, retryAfterMs: null, code: null, message: `network: ${(error as Error)?.message ?? String(error)}`.slice(0, 500) };
}
