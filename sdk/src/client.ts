/**
 * The Tally client. Only `fetch`, timers and Web Crypto: no `node:` import, so the same code
 * runs in Node ≥ 20, Bun, Deno and edge runtimes. The Node-only shutdown hooks are reached
 * through `globalThis.process` and only when asked for (`handleSignals`).
 */
import { createTRPCClient, httpLink, type TRPCClient } from '@trpc/client';
import type { inferRouterInputs, inferRouterOutputs } from '@trpc/server';
import type { AppRouter } from '../../src/server/router';
import { LEAN_OPEN, PLAIN_OPEN, type WireBatch, WireBuffer } from './wire-buffer.js';
import { SDK_VERSION } from './version.js';
import { uuidV4 } from './uuid.js';

export type { AppRouter };
export type RouterInputs = inferRouterInputs<AppRouter>;
export type RouterOutputs = inferRouterOutputs<AppRouter>;

/**
 * One usage event as `usage.trackEvent` takes it, who caused it included: `userId`,
 * `userEmail` and `organization` are fields of the event that Tally stores in columns of their
 * own (the email is never shown in analytics answers; `privacy.eraseUser` removes it).
 */
export type TrackEvent = RouterInputs['usage']['trackEvent'];

export type CheckInput = RouterInputs['usage']['check'];
export type CheckResult = RouterOutputs['usage']['check'];

/** What went wrong, with the events it concerns. Never thrown from `track`: handed to `onError`. */
export type TallyErrorReport =
  /** Tally refused this event (bad field, inactive license, quota, idempotency conflict). Not retried. */
  | { kind: 'rejected'; event: TrackEvent; code: string; message: string }
  /** The whole batch was refused for good (401, 403, 400, 413): these events are dropped. */
  | { kind: 'batch_refused'; events: TrackEvent[]; status: number; message: string }
  /** A send failed and will be retried (network error, timeout, 5xx, 429). */
  | { kind: 'retrying'; events: number; attempt: number; delayMs: number; status?: number; message: string }
  /** The buffer was full under `drop-oldest`: this event was dropped to make room. */
  | { kind: 'dropped'; event: TrackEvent }
  /** The buffer was full under `block`: `track` waits for room (reported once per episode). */
  | { kind: 'buffer_full'; buffered: number }
  /** Events still unsent when `shutdown` gave up waiting, or tracked after it. */
  | { kind: 'shutdown'; events: TrackEvent[] };

export interface RetryOptions {
  /** First backoff delay (doubles each attempt, full jitter). Default 200 ms. */
  initialDelayMs?: number;
  /** Backoff ceiling, also for Retry-After. Default 30 s. */
  maxDelayMs?: number;
}

export interface TallyOptions {
  apiKey: string;
  /** Where Tally listens, e.g. `http://localhost:3000` (the client adds `/api/trpc`). */
  baseUrl: string;
  /** Sent as `X-Tally-Environment` (e.g. `production`, `staging`). */
  environment?: string;
  /** Send what is buffered at least this often. Default 1,000 ms. */
  flushIntervalMs?: number;
  /** Events per `usage.trackEvents` call (Tally takes up to 1,000). Default 1,000. */
  maxBatchSize?: number;
  /** Events held while waiting to be sent. Default 100,000. */
  maxBufferedEvents?: number;
  /** What `track` does when the buffer is full. Default `drop-oldest` (never holds up the caller). */
  bufferPolicy?: 'block' | 'drop-oldest';
  /** Batches sent at the same time. Default 4. */
  maxConcurrentBatches?: number;
  /** Per-request timeout of batch sends and checks. Default 10,000 ms. */
  requestTimeoutMs?: number;
  retry?: RetryOptions;
  /** Reports rejected and dropped events and retried sends. Default: nothing. */
  onError?: (report: TallyErrorReport) => void;
  /** Remember `check` answers this long (0 = off, the default). */
  checkCacheMs?: number;
  /** Flush on `beforeExit` and SIGTERM/SIGINT (Node, Bun); off by default. */
  handleSignals?: boolean;
  /**
   * Another fetch (tests, proxies, edge runtimes). Default `globalThis.fetch`. A batch's body comes
   * as a `Uint8Array` view of a buffer the client reuses once the returned promise has settled
   * with Tally's answer: read or copy it before then (its `byteOffset` and `byteLength`, not the
   * whole `buffer`).
   */
  fetch?: typeof fetch;
}

export interface TallyStats {
  /** `track` calls so far. */
  tracked: number;
  /** Events waiting in the buffer. */
  buffered: number;
  /** Events in batches being sent or retried. */
  inFlight: number;
  accepted: number;
  duplicates: number;
  rejected: number;
  /** Events dropped: buffer full (drop-oldest), batch refused for good, or unsent at shutdown. */
  dropped: number;
  /** `track` calls that had to wait for room (block). */
  blocked: number;
  /** Batch sends retried. */
  retries: number;
}

/** An event waiting for room in a full buffer (`block`); the app's object when it gave one. */
type Pending = { event: TrackEvent | undefined; json: string; conflictIsDuplicate: boolean };

const eventOf = (pending: Pending): TrackEvent => pending.event ?? (JSON.parse(pending.json) as TrackEvent);

export interface TrackOptions {
  /**
   * Count an idempotency conflict (the key already stored for a different payload) as a duplicate
   * instead of reporting it. The middleware sets it: a client's retry of a request id differs
   * from the first attempt in duration and maybe status, and must simply not be billed again.
   */
  conflictIsDuplicate?: boolean;
}

class SendError extends Error {
  constructor(
    message: string,
    readonly retryable: boolean,
    readonly status?: number,
    readonly retryAfterMs?: number,
  ) {
    super(message);
  }
}

/** A Tally from before `includeResults` refused the lean body: send the plain one instead. */
class LeanRefused extends Error {}

/** Resolves after `ms`, or at once when `signal` aborts; never holds the process open by itself. */
function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    (timer as { unref?: () => void }).unref?.();
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** Retry-After as seconds or an HTTP date, in ms; undefined when absent or unreadable. */
export function retryAfterMs(value: string | null, now = Date.now()): number | undefined {
  if (!value) return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** Full-jitter exponential backoff: a random delay in [0, min(max, initial × 2^attempt)]. */
export function backoffDelay(attempt: number, initialMs: number, maxMs: number, random = Math.random): number {
  const ceiling = Math.min(maxMs, initialMs * 2 ** Math.min(attempt, 30));
  return Math.round(random() * ceiling);
}

const SDK_AGENT = `tally-sdk-node/${SDK_VERSION}`;
let isoAtMs = Number.NaN;
let isoAt = '';
let isoSecond = Number.NaN;
let isoPrefix = '';
/**
 * `new Date(ms).toISOString()`, remembered: the same string for calls in the same millisecond,
 * and within one second only the milliseconds are written (a Date and its ISO text per call cost
 * more than the rest of a tracked request's event).
 */
export function isoOf(ms: number): string {
  if (ms === isoAtMs) return isoAt;
  const second = Math.floor(ms / 1000);
  if (second !== isoSecond) {
    const full = new Date(second * 1000).toISOString(); // …THH:MM:SS.000Z
    if (full.length !== 24) return new Date(ms).toISOString(); // a year past 9999 or before 0
    isoSecond = second;
    isoPrefix = full.slice(0, 20);
  }
  const milli = ms - second * 1000;
  isoAtMs = ms;
  isoAt = `${isoPrefix}${milli < 10 ? '00' : milli < 100 ? '0' : ''}${milli}Z`;
  return isoAt;
}

const nowIso = () => isoOf(Date.now());

const SDK_AGENT_JSON = JSON.stringify(SDK_AGENT);

/** Printable ASCII without `"` and a backslash: the JSON of such a string is the string in quotes. */
const PLAIN = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;
const quoted = (s: string) => (PLAIN.test(s) ? `"${s}"` : JSON.stringify(s));

/** What the billing middleware records of one request (all set by it, nothing of the app's objects). */
export interface RequestEvent {
  licenseId: string;
  usageType: string;
  quantity: number | string;
  idempotencyKey: string;
  route: string;
  method: string;
  statusCode?: number;
  durationMs: number;
  userId?: string;
  userEmail?: string;
  organization?: string;
}

const isText = (v: unknown) => typeof v === 'string';
const isOptionalText = (v: unknown) => v === undefined || typeof v === 'string';

/** Whether every field is of its type (an app's function may have returned anything). */
function fieldsOfTheirTypes(e: RequestEvent): boolean {
  return (
    isText(e.licenseId) && isText(e.usageType) && isText(e.idempotencyKey) && isText(e.route) && isText(e.method) &&
    (typeof e.quantity === 'number' || typeof e.quantity === 'string') &&
    (e.statusCode === undefined || typeof e.statusCode === 'number') && typeof e.durationMs === 'number' &&
    isOptionalText(e.userId) && isOptionalText(e.userEmail) && isOptionalText(e.organization)
  );
}

/**
 * The wire JSON of a request event, written field by field: the same JSON as `toWire` gives
 * (JSON.parse of both is equal), at a fraction of JSON.stringify's cost for an object of fixed
 * shape. Null when a field is not of its type (an app's function returned something else): that
 * event goes through `track`, which reports what it cannot send.
 */
export function requestEventWire(e: RequestEvent): string | null {
  if (!fieldsOfTheirTypes(e)) return null;
  const quantity = typeof e.quantity === 'number' ? (Number.isFinite(e.quantity) ? String(e.quantity) : 'null') : quoted(e.quantity);
  let json = `{"licenseId":${quoted(e.licenseId)},"usageType":${quoted(e.usageType)},"quantity":${quantity},"idempotencyKey":${quoted(e.idempotencyKey)},"route":${quoted(e.route)},"method":${quoted(e.method)}`;
  if (e.statusCode !== undefined) json += `,"statusCode":${Number.isFinite(e.statusCode) ? e.statusCode : 'null'}`;
  json += `,"durationMs":${Number.isFinite(e.durationMs) ? e.durationMs : 'null'}`;
  if (e.userId !== undefined) json += `,"userId":${quoted(e.userId)}`;
  if (e.userEmail !== undefined) json += `,"userEmail":${quoted(e.userEmail)}`;
  if (e.organization !== undefined) json += `,"organization":${quoted(e.organization)}`;
  return `${json},"occurredAt":"${nowIso()}","sdkVersion":${SDK_AGENT_JSON}}`;
}

const ascii = (text: string) => Uint8Array.from(text, (c) => c.charCodeAt(0));
const W_LICENSE = ascii('{"licenseId":');
const W_USAGE_TYPE = ascii(',"usageType":');
const W_QUANTITY = ascii(',"quantity":');
const W_KEY = ascii(',"idempotencyKey":');
const W_ROUTE = ascii(',"route":');
const W_METHOD = ascii(',"method":');
const W_STATUS = ascii(',"statusCode":');
const W_DURATION = ascii(',"durationMs":');
const W_USER_ID = ascii(',"userId":');
const W_USER_EMAIL = ascii(',"userEmail":');
const W_ORGANIZATION = ascii(',"organization":');
const W_OCCURRED_AT = ascii(',"occurredAt":"');
const W_END = ascii(`","sdkVersion":${SDK_AGENT_JSON}}`);
/** The literal bytes of a request event with every field, and room for its time and 3 numbers. */
const W_FIXED = [W_LICENSE, W_USAGE_TYPE, W_QUANTITY, W_KEY, W_ROUTE, W_METHOD, W_STATUS, W_DURATION, W_USER_ID, W_USER_EMAIL, W_ORGANIZATION, W_OCCURRED_AT, W_END]
  .reduce((n, b) => n + b.length, 4 * 32);

function putBytes(bytes: Uint8Array, at: number, literal: Uint8Array): number {
  for (let i = 0; i < literal.length; i++) bytes[at++] = literal[i]!;
  return at;
}

/** Characters known to be printable ASCII (numbers, the time). */
function putAscii(bytes: Uint8Array, at: number, text: string): number {
  for (let i = 0; i < text.length; i++) bytes[at++] = text.charCodeAt(i);
  return at;
}

/** `"text"`, or -1 when the text is not printable ASCII without `"` and `\` (it needs JSON.stringify). */
function putQuoted(bytes: Uint8Array, at: number, text: string): number {
  bytes[at++] = 0x22;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x20 || c > 0x7e || c === 0x22 || c === 0x5c) return -1;
    bytes[at++] = c;
  }
  bytes[at++] = 0x22;
  return at;
}

const numberText = (n: number) => (Number.isFinite(n) ? String(n) : 'null');

const quotedLength = (v: unknown) => (typeof v === 'string' ? v.length + 2 : 0);

/**
 * The most bytes `writeRequestEvent` writes for `e` (its texts counted as one byte a character,
 * which is all it writes: anything else it leaves to `requestEventWire`).
 */
export function requestEventBytes(e: RequestEvent): number {
  return W_FIXED + quotedLength(e.licenseId) + quotedLength(e.usageType) + quotedLength(e.quantity) + quotedLength(e.idempotencyKey) + quotedLength(e.route) +
    quotedLength(e.method) + quotedLength(e.userId) + quotedLength(e.userEmail) + quotedLength(e.organization);
}


/**
 * `requestEventWire(e)`'s JSON written straight into `bytes` from `at`, without making it a
 * string first (no pieces, no concatenation, no encoding pass): where it ends, or -1 when the
 * event needs more than this writes (a text to escape or not ASCII, a field not of its type); the
 * caller then takes `requestEventWire`. Room for `requestEventBytes(e)` bytes must be there.
 */
export function writeRequestEvent(bytes: Uint8Array, at: number, e: RequestEvent): number {
  if (!fieldsOfTheirTypes(e)) return -1;
  at = putQuoted(bytes, putBytes(bytes, at, W_LICENSE), e.licenseId);
  if (at < 0) return -1;
  at = putQuoted(bytes, putBytes(bytes, at, W_USAGE_TYPE), e.usageType);
  if (at < 0) return -1;
  at = putBytes(bytes, at, W_QUANTITY);
  at = typeof e.quantity === 'number' ? putAscii(bytes, at, numberText(e.quantity)) : putQuoted(bytes, at, e.quantity);
  if (at < 0) return -1;
  at = putQuoted(bytes, putBytes(bytes, at, W_KEY), e.idempotencyKey);
  if (at < 0) return -1;
  at = putQuoted(bytes, putBytes(bytes, at, W_ROUTE), e.route);
  if (at < 0) return -1;
  at = putQuoted(bytes, putBytes(bytes, at, W_METHOD), e.method);
  if (at < 0) return -1;
  if (e.statusCode !== undefined) at = putAscii(bytes, putBytes(bytes, at, W_STATUS), numberText(e.statusCode));
  at = putAscii(bytes, putBytes(bytes, at, W_DURATION), numberText(e.durationMs));
  if (e.userId !== undefined && (at = putQuoted(bytes, putBytes(bytes, at, W_USER_ID), e.userId)) < 0) return -1;
  if (e.userEmail !== undefined && (at = putQuoted(bytes, putBytes(bytes, at, W_USER_EMAIL), e.userEmail)) < 0) return -1;
  if (e.organization !== undefined && (at = putQuoted(bytes, putBytes(bytes, at, W_ORGANIZATION), e.organization)) < 0) return -1;
  at = putAscii(bytes, putBytes(bytes, at, W_OCCURRED_AT), nowIso());
  return putBytes(bytes, at, W_END);
}

/** Tracks an event whose wire JSON the caller wrote (the middleware): internal to the package. */
export const TRACK_WIRE = Symbol('tally.trackWire');
/** Tracks a request event of the middleware (`RequestEvent`): internal to the package. */
export const TRACK_REQUEST = Symbol('tally.trackRequest');
const AS_REQUEST: TrackOptions = { conflictIsDuplicate: true };

/**
 * The event as Tally's schema takes it, with a key and a time set, as JSON. A key and a time
 * fixed when the event is tracked make every resend the same payload, so Tally answers
 * `duplicate` instead of storing it twice. Serialized here, once per event, rather than a whole
 * batch at send time: a 1,000-event batch serialized at once holds the app's event loop for a
 * millisecond or more, which the requests in flight then wait out (their p99). What is missing
 * is appended to the event's own JSON (a copy of the object first costs three times as much).
 */
function toWire(event: TrackEvent): string {
  const e = event as { idempotencyKey?: unknown; occurredAt?: unknown; sdkVersion?: unknown; toJSON?: unknown };
  if (appendable(e)) {
    const json = JSON.stringify(event);
    if (json.length >= 3 && json[0] === '{') {
      let extra = '';
      if (e.idempotencyKey === undefined) extra += `,"idempotencyKey":"${uuidV4()}"`;
      if (e.occurredAt === undefined) extra += `,"occurredAt":"${nowIso()}"`;
      if (e.sdkVersion === undefined) extra += `,"sdkVersion":${SDK_AGENT_JSON}`;
      return extra ? `${json.slice(0, -1)}${extra}}` : json;
    }
  }
  // Anything else (a class instance, a toJSON, fields set to null): a plain copy with the fields
  // set, read as the app's code reads them (getters included), so the key is never lost.
  const base = (typeof e.toJSON === 'function' ? (e.toJSON as () => unknown).call(event) : event) as typeof e;
  const copy = { ...base } as typeof e;
  delete copy.toJSON;
  return JSON.stringify({
    ...copy,
    idempotencyKey: base.idempotencyKey ?? e.idempotencyKey ?? uuidV4(),
    occurredAt: base.occurredAt ?? e.occurredAt ?? nowIso(),
    sdkVersion: base.sdkVersion ?? e.sdkVersion ?? SDK_AGENT,
  });
}

const WIRE_FIELDS = ['idempotencyKey', 'occurredAt', 'sdkVersion'] as const;

/**
 * Whether the event's own JSON holds exactly what reading its fields gives, so what is missing can
 * be appended to it: a plain object without toJSON, whose key, time and version are each either
 * absent (or undefined: JSON leaves both out) or an own enumerable value that is not null.
 */
function appendable(e: Record<string, unknown>): boolean {
  const proto = Object.getPrototypeOf(e) as unknown;
  if ((proto !== Object.prototype && proto !== null) || Object.hasOwn(e, 'toJSON')) return false;
  for (const field of WIRE_FIELDS) {
    const value = e[field];
    if (value === null) return false;
    if (value !== undefined && !Object.prototype.propertyIsEnumerable.call(e, field)) return false;
  }
  return true;
}

// The tRPC client's routers (tally.licenses.get.query(...)) live on the instance through a Proxy.
// eslint-disable-next-line @typescript-eslint/no-empty-object-type, @typescript-eslint/no-unsafe-declaration-merging
export interface Tally extends TRPCClient<AppRouter> {}

// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging
export class Tally {
  readonly options: Readonly<Required<Omit<TallyOptions, 'environment' | 'onError' | 'fetch' | 'retry'>>> & {
    environment?: string;
    retry: Required<RetryOptions>;
  };
  /** The headers of every request: key, User-Agent, environment. */
  readonly headers: Record<string, string>;
  private readonly trpc: TRPCClient<AppRouter>;
  private readonly fetchImpl: typeof fetch;
  private readonly onError: (report: TallyErrorReport) => void;
  /** Whether anyone hears reports: without `onError`, events are not read back from bytes for them. */
  private readonly reporting: boolean;
  private readonly buffer: WireBuffer<TrackEvent>;
  /**
   * Batches ask Tally to leave out the per-event `results` (counted, not read: a 1,000-event
   * answer parsed for nothing held the app's event loop about a millisecond). Off for good once a
   * Tally that does not know the field refuses it.
   */
  private lean = true;
  private readonly inFlight = new Set<Promise<void>>();
  private inFlightEvents = 0;
  private readonly waiters: { pending: Pending; resolve: () => void }[] = [];
  private bufferFullReported = false;
  private timer: ReturnType<typeof setInterval> | undefined;
  private closed = false;
  private shutdownPromise: Promise<void> | undefined;
  /** Aborted when shutdown stops waiting: retries end and their events are reported. */
  private readonly abandon = new AbortController();
  private readonly checkCache = new Map<string, { at: number; answer: Promise<CheckResult> }>();
  private readonly counters = { tracked: 0, accepted: 0, duplicates: 0, rejected: 0, dropped: 0, blocked: 0, retries: 0 };
  private signalHandlers: { event: string; handler: () => void }[] = [];

  constructor(options: TallyOptions) {
    if (!options.apiKey) throw new TypeError('Tally: apiKey is required');
    if (!options.baseUrl) throw new TypeError('Tally: baseUrl is required');
    const maxBatchSize = options.maxBatchSize ?? 1000;
    if (!Number.isInteger(maxBatchSize) || maxBatchSize < 1 || maxBatchSize > 1000) throw new RangeError('Tally: maxBatchSize must be 1..1000');
    this.options = {
      apiKey: options.apiKey,
      baseUrl: options.baseUrl.replace(/\/+$/, ''),
      environment: options.environment,
      flushIntervalMs: options.flushIntervalMs ?? 1000,
      maxBatchSize,
      maxBufferedEvents: Math.max(options.maxBufferedEvents ?? 100_000, 1),
      bufferPolicy: options.bufferPolicy ?? 'drop-oldest',
      maxConcurrentBatches: Math.max(options.maxConcurrentBatches ?? 4, 1),
      requestTimeoutMs: options.requestTimeoutMs ?? 10_000,
      retry: { initialDelayMs: options.retry?.initialDelayMs ?? 200, maxDelayMs: options.retry?.maxDelayMs ?? 30_000 },
      checkCacheMs: options.checkCacheMs ?? 0,
      handleSignals: options.handleSignals ?? false,
    };
    this.buffer = new WireBuffer<TrackEvent>(maxBatchSize, this.options.maxConcurrentBatches + 1);
    this.fetchImpl = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
    this.onError = options.onError ?? (() => undefined);
    this.reporting = options.onError !== undefined;
    this.headers = {
      authorization: `Bearer ${options.apiKey}`,
      'user-agent': `tally-sdk-node/${SDK_VERSION}`,
      ...(options.environment ? { 'x-tally-environment': options.environment } : {}),
    };
    this.trpc = createTRPCClient<AppRouter>({
      links: [httpLink({ url: `${this.options.baseUrl}/api/trpc`, headers: () => this.headers, fetch: this.fetchImpl })],
    });
    this.timer = setInterval(() => this.pump(true), this.options.flushIntervalMs);
    (this.timer as { unref?: () => void }).unref?.();
    if (this.options.handleSignals) this.installSignalHandlers();
    // Called through the proxy below, `this` would be the proxy, and every field read inside
    // (a dozen per track) would go through its trap: bound to the instance itself instead.
    this.track = this.track.bind(this);
    this[TRACK_WIRE] = this[TRACK_WIRE].bind(this);
    this[TRACK_REQUEST] = this[TRACK_REQUEST].bind(this);
    this.check = this.check.bind(this);
    this.flush = this.flush.bind(this);
    this.stats = this.stats.bind(this);

    return new Proxy(this, {
      // `then` is never forwarded: the tRPC proxy answers every name, and a thenable client
      // would be awaited away by `await`/`return` from an async function.
      get: (target, key, receiver) =>
        key in target || typeof key !== 'string' || key === 'then' ? Reflect.get(target, key, receiver) : Reflect.get(target.trpc, key),
    });
  }

  /** Counters since the client was made. */
  stats(): TallyStats {
    return { buffered: this.buffer.length + this.waiters.length, inFlight: this.inFlightEvents, ...this.counters };
  }

  /**
   * Buffers one event; it is sent within `flushIntervalMs` or as soon as a batch is full. Resolves
   * at once, except under `block` with a full buffer, where it resolves when there is room.
   */
  track(event: TrackEvent, options: TrackOptions = {}): Promise<void> {
    if (!this.counted(event)) return Promise.resolve();
    let json: string;
    try {
      json = toWire(event);
    } catch (error) {
      // Not JSON (a BigInt, a cycle): Tally could never take it. Reported, never thrown.
      this.counters.rejected += 1;
      this.report({ kind: 'rejected', event, code: 'UNSERIALIZABLE', message: error instanceof Error ? error.message : String(error) });
      return Promise.resolve();
    }
    return this.enqueue(event, json, options);
  }

  /**
   * `track` of an event given only as its wire JSON, written by the caller (the middleware,
   * `requestEventWire`): nothing of it is kept but its bytes; a report reads it back from them.
   */
  [TRACK_WIRE](json: string, options: TrackOptions = {}): Promise<void> {
    if (!this.counted(undefined, json)) return Promise.resolve();
    return this.enqueue(undefined, json, options);
  }

  /**
   * A request the middleware bills (recorded after its response). Its JSON is written straight
   * into the buffer's bytes when there is room and nothing to wait for; otherwise, and for an
   * event that needs escaping, it takes the way of `[TRACK_WIRE]` (or `track`, for a field not
   * of its type, which reports what it cannot send). A retried request's event is a duplicate,
   * not a conflict: the app's client may send it with another quantity or status.
   */
  [TRACK_REQUEST](event: RequestEvent): void {
    if (!this.closed && this.buffer.length < this.options.maxBufferedEvents && this.waiters.length === 0) {
      if (this.buffer.pushWritten(requestEventBytes(event), true, writeRequestEvent, event)) {
        this.counters.tracked += 1;
        if (this.buffer.hasFullBatch) this.pump(false);
        return;
      }
    }
    const json = requestEventWire(event);
    if (json === null) void this.track(event as TrackEvent, AS_REQUEST);
    else void this[TRACK_WIRE](json, AS_REQUEST);
  }

  /** Counts a tracked event; false (it is reported and dropped) once the client has shut down. */
  private counted(event: TrackEvent | undefined, json?: string): boolean {
    this.counters.tracked += 1;
    if (!this.closed) return true;
    this.counters.dropped += 1;
    if (this.reporting) this.report({ kind: 'shutdown', events: [event ?? (JSON.parse(json!) as TrackEvent)] });
    return false;
  }

  private enqueue(event: TrackEvent | undefined, json: string, options: TrackOptions): Promise<void> {
    const conflictIsDuplicate = options.conflictIsDuplicate ?? false;
    if (this.buffer.length < this.options.maxBufferedEvents && this.waiters.length === 0) {
      this.buffer.push(json, conflictIsDuplicate, event);
      if (this.buffer.hasFullBatch) this.pump(false);
      return Promise.resolve();
    }
    if (this.options.bufferPolicy === 'drop-oldest') {
      const dropped = this.buffer.dropOldest(this.reporting);
      this.buffer.push(json, conflictIsDuplicate, event);
      if (dropped) {
        this.counters.dropped += 1;
        if (dropped.event !== undefined) this.report({ kind: 'dropped', event: dropped.event });
      }
      this.pump(false);
      return Promise.resolve();
    }
    this.counters.blocked += 1;
    if (!this.bufferFullReported) {
      this.bufferFullReported = true;
      this.report({ kind: 'buffer_full', buffered: this.buffer.length });
    }
    const pending: Pending = { event, json, conflictIsDuplicate };
    const wait = new Promise<void>((resolve) => this.waiters.push({ pending, resolve }));
    this.pump(false);
    return wait;
  }

  /** Sends everything tracked so far and resolves when Tally has answered for all of it. */
  async flush(): Promise<void> {
    for (;;) {
      this.pump(true);
      if (this.inFlight.size === 0 && this.buffer.length === 0 && this.waiters.length === 0) return;
      await Promise.race(this.inFlight);
    }
  }

  /**
   * Flushes and stops: later `track` calls are reported and dropped. Waits at most `timeoutMs`
   * (default 30 s) for Tally; what is still unsent then is reported as `shutdown` and dropped.
   */
  shutdown(options: { timeoutMs?: number } = {}): Promise<void> {
    this.shutdownPromise ??= (async () => {
      this.closed = true;
      clearInterval(this.timer);
      this.removeSignalHandlers();
      const timeoutMs = options.timeoutMs ?? 30_000;
      let timedOut = false;
      const giveUp = new AbortController();
      await Promise.race([this.flush(), sleep(timeoutMs, giveUp.signal).then(() => (timedOut = !giveUp.signal.aborted))]);
      giveUp.abort();
      if (timedOut) {
        this.abandon.abort();
        const count = this.buffer.length + this.waiters.length;
        const left = this.buffer.drain(this.reporting);
        for (const { pending, resolve } of this.waiters.splice(0)) {
          resolve();
          if (this.reporting) left.push(eventOf(pending));
        }
        this.counters.dropped += count;
        if (count && this.reporting) this.report({ kind: 'shutdown', events: left });
      }
    })();
    return this.shutdownPromise;
  }

  /**
   * Would `quantity` more of `usageType` be admitted now? `usage.check`, answered from a local
   * cache for `checkCacheMs` when that is set (a hot path then costs one round trip per key and
   * interval; the answer may be that much out of date).
   */
  check(input: CheckInput, options: { signal?: AbortSignal } = {}): Promise<CheckResult> {
    const ttl = this.options.checkCacheMs;
    if (ttl <= 0) return this.trpc.usage.check.query(input, { signal: options.signal ?? AbortSignal.timeout(this.options.requestTimeoutMs) });
    const key = `${input.licenseId}\u0000${input.usageType}\u0000${String(input.quantity ?? 1)}`;
    const now = Date.now();
    const cached = this.checkCache.get(key);
    if (cached && now - cached.at < ttl) return cached.answer;
    if (this.checkCache.size >= 10_000) this.checkCache.clear();
    const answer = this.trpc.usage.check.query(input, { signal: AbortSignal.timeout(this.options.requestTimeoutMs) });
    this.checkCache.set(key, { at: now, answer });
    answer.catch(() => this.checkCache.delete(key));
    return answer;
  }

  private report(report: TallyErrorReport): void {
    try {
      this.onError(report);
    } catch {
      // an onError that throws must not break tracking
    }
  }

  /** Starts batch sends while there is room: full batches always, a partial one when `drainAll`. */
  private pump(drainAll: boolean): void {
    while (this.inFlight.size < this.options.maxConcurrentBatches) {
      this.admitWaiters();
      if (!this.buffer.hasFullBatch && !(drainAll && this.buffer.length > 0)) break;
      const batch = this.buffer.take()!;
      const events = batch.length;
      this.admitWaiters();
      const sending = this.sendWithRetries(batch).finally(() => {
        this.inFlight.delete(sending);
        this.inFlightEvents -= events;
        this.pump(false);
      });
      this.inFlightEvents += events;
      this.inFlight.add(sending);
    }
    this.admitWaiters();
  }

  private admitWaiters(): void {
    while (this.waiters.length > 0 && this.buffer.length < this.options.maxBufferedEvents) {
      const { pending, resolve } = this.waiters.shift()!;
      this.buffer.push(pending.json, pending.conflictIsDuplicate, pending.event);
      resolve();
    }
    if (this.waiters.length === 0) this.bufferFullReported = false;
  }

  private async sendWithRetries(batch: WireBatch<TrackEvent>): Promise<void> {
    let lean = this.lean;
    let body = batch.body(lean ? LEAN_OPEN : PLAIN_OPEN);
    for (let attempt = 0; ; attempt++) {
      if (this.abandon.signal.aborted) {
        this.counters.dropped += batch.length;
        if (this.reporting) this.report({ kind: 'shutdown', events: batch.events() });
        return;
      }
      try {
        await this.send(batch, body, lean);
        // Tally answered for every event, so it read the whole body: the bytes may be reused.
        // (Not after a failure: a timed-out send may still be writing them.)
        this.buffer.release(batch);
        return;
      } catch (error) {
        if (error instanceof LeanRefused) {
          // Tally read the whole body to refuse it: the same bytes again, with the other opening.
          this.lean = lean = false;
          body = batch.body(PLAIN_OPEN);
          attempt -= 1;
          continue;
        }
        const e = error instanceof SendError ? error : new SendError(String(error), true);
        if (!e.retryable) {
          this.counters.dropped += batch.length;
          if (this.reporting) this.report({ kind: 'batch_refused', events: batch.events(), status: e.status ?? 0, message: e.message });
          return;
        }
        const { initialDelayMs, maxDelayMs } = this.options.retry;
        const delayMs = Math.min(maxDelayMs, Math.max(e.retryAfterMs ?? 0, backoffDelay(attempt, initialDelayMs, maxDelayMs)));
        this.counters.retries += 1;
        this.report({ kind: 'retrying', events: batch.length, attempt: attempt + 1, delayMs, status: e.status, message: e.message });
        await sleep(delayMs, this.abandon.signal);
      }
    }
  }

  private async send(batch: WireBatch<TrackEvent>, body: Uint8Array<ArrayBuffer>, lean: boolean): Promise<void> {
    let response: Response;
    try {
      response = await this.fetchImpl(`${this.options.baseUrl}/api/trpc/usage.trackEvents`, {
        method: 'POST',
        headers: { ...this.headers, 'content-type': 'application/json' },
        body,
        signal: AbortSignal.timeout(this.options.requestTimeoutMs),
      });
    } catch (error) {
      throw new SendError(`network: ${error instanceof Error ? error.message : String(error)}`, true);
    }
    const text = await response.text().catch(() => '');
    if (response.status === 429 || response.status >= 500) {
      throw new SendError(`HTTP ${response.status}: ${text.slice(0, 200)}`, true, response.status, retryAfterMs(response.headers.get('retry-after')));
    }
    let answer: { result?: { data?: { accepted?: unknown; duplicates?: unknown; rejected?: { index: number; code: string; message: string }[] } } } | undefined;
    try {
      answer = JSON.parse(text) as typeof answer;
    } catch {
      answer = undefined;
    }
    const data = answer?.result?.data;
    if (lean && response.status === 400 && text.includes('includeResults')) throw new LeanRefused();
    if (response.status !== 200 || typeof data?.accepted !== 'number' || typeof data.duplicates !== 'number') {
      throw new SendError(`HTTP ${response.status}: ${text.slice(0, 300)}`, false, response.status);
    }
    this.counters.accepted += data.accepted;
    this.counters.duplicates += data.duplicates;
    for (const r of data.rejected ?? []) {
      const known = Number.isInteger(r.index) && r.index >= 0 && r.index < batch.length;
      if (known && r.code === 'IDEMPOTENCY_CONFLICT' && batch.flag(r.index)) {
        this.counters.duplicates += 1;
        continue;
      }
      this.counters.rejected += 1;
      if (known && this.reporting) this.report({ kind: 'rejected', event: batch.event(r.index), code: r.code, message: r.message });
    }
  }

  private installSignalHandlers(): void {
    const proc = (globalThis as { process?: { once?: (e: string, h: () => void) => void; removeListener?: (e: string, h: () => void) => void; listenerCount?: (e: string) => number; kill?: (pid: number, s: string) => void; pid?: number } }).process;
    if (!proc?.once) return;
    const onBeforeExit = () => void this.shutdown();
    const onSignal = (signal: string) => () => {
      void this.shutdown().finally(() => {
        // We replaced the default action of the signal; give it back and raise it again, unless
        // the app listens for it too (then the app decides when to exit).
        if ((proc.listenerCount?.(signal) ?? 0) === 0) proc.kill?.(proc.pid ?? 0, signal);
      });
    };
    const handlers = [
      { event: 'beforeExit', handler: onBeforeExit },
      { event: 'SIGTERM', handler: onSignal('SIGTERM') },
      { event: 'SIGINT', handler: onSignal('SIGINT') },
    ];
    for (const h of handlers) proc.once(h.event, h.handler);
    this.signalHandlers = handlers;
  }

  private removeSignalHandlers(): void {
    const proc = (globalThis as { process?: { removeListener?: (e: string, h: () => void) => void } }).process;
    for (const h of this.signalHandlers) proc?.removeListener?.(h.event, h.handler);
    this.signalHandlers = [];
  }
}
