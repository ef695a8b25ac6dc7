/**
 * The SDK's buffer: events held as the bytes of the `usage.trackEvents` bodies they will be sent
 * in, not as JavaScript objects and strings.
 *
 * Why bytes: at a few thousand tracked requests a second, a 1,000-event batch is held for about
 * half a second before it is sent, long enough for its events (an object and a JSON string each)
 * to survive the app's young-generation collections and be promoted; the old generation then fills
 * at the tracking rate and the app gets a full mark-sweep every second or two, a pause that every
 * request in flight waits out (the middleware's p99). Bytes in a typed array live outside the
 * JavaScript heap: the collector neither copies nor marks them, and a batch's array is reused once
 * Tally has read it.
 *
 * Each batch is written as its request body as events are tracked: e1 `,` e2 … after room for the
 * opening, and when it is taken for sending the opening (`{"includeResults":false,"events":[` or
 * `{"events":[`) just before its first event and `]}` after its last; the body is a view of those
 * bytes, no copy. An event that was
 * tracked as an app's object keeps that object (for `onError` reports); one tracked as JSON only
 * (the middleware, whose request events are written into the bytes in place, `pushWritten`) is
 * read back from its bytes when a report needs it.
 */
import { EventQueue } from './event-queue.js';

const encoder = new TextEncoder();
const decoder = new TextDecoder();
/** Opens a body whose answer leaves out the per-event `results` (Tally counts; `rejected` stays). */
export const LEAN_OPEN = encoder.encode('{"includeResults":false,"events":[');
/** Opens a body as a Tally that does not know `includeResults` takes it. */
export const PLAIN_OPEN = encoder.encode('{"events":[');
/** Room kept before the first event for either opening. */
const ROOM = Math.max(LEAN_OPEN.length, PLAIN_OPEN.length);
const CLOSE = encoder.encode(']}');
const COMMA = 0x2c;

/** One request body's worth of events. */
export class WireBatch<E> {
  private bytes: Uint8Array<ArrayBuffer>;
  /** Where event i's JSON starts; it ends at the comma before the next one's start, or at `end`. */
  private readonly starts: Int32Array;
  private readonly flags: Uint8Array;
  /** The app's event objects, when it gave some (index as `starts`). */
  private objects: (E | undefined)[] | undefined;
  /** The first event still held (events before it were dropped). */
  private first = 0;
  private count = 0;
  private end = ROOM;

  constructor(
    readonly capacity: number,
    bytes: number,
  ) {
    this.bytes = new Uint8Array(Math.max(bytes, 64));
    this.starts = new Int32Array(capacity);
    this.flags = new Uint8Array(capacity);
  }

  /** Events held. */
  get length(): number {
    return this.count - this.first;
  }

  get full(): boolean {
    return this.count >= this.capacity;
  }

  /** Bytes its array holds. */
  get byteCapacity(): number {
    return this.bytes.length;
  }

  /** Bytes written so far (for sizing the next batch). */
  get size(): number {
    return this.end + CLOSE.length;
  }

  /** Appends one event's JSON (well-formed UTF-16: JSON.stringify escapes lone surrogates). */
  append(json: string, flag: boolean, event: E | undefined): void {
    let at = this.reserve(0);
    for (;;) {
      // room for the JSON and the closing `]}` that the body adds
      const { read, written } = encoder.encodeInto(json, this.bytes.subarray(at, this.bytes.length - CLOSE.length));
      if (read === json.length) {
        if (event !== undefined) (this.objects ??= [])[this.count] = event;
        this.commit(at, at + written, flag);
        return;
      }
      // Too small: room for the most it can take (UTF-8 takes at most 3 bytes per UTF-16 unit).
      at = this.reserve(json.length * 3);
    }
  }

  /**
   * Where an event of at most `max` bytes written in place goes (room made for it and the
   * closing `]}`): write it into `array` from there, then `commit`.
   */
  reserve(max: number): number {
    const at = this.end + (this.count > 0 ? 1 : 0);
    if (at + max + CLOSE.length > this.bytes.length) {
      const grown = new Uint8Array(Math.max(this.bytes.length * 2, at + max + CLOSE.length));
      grown.set(this.bytes.subarray(0, this.end), 0);
      this.bytes = grown;
    }
    return at;
  }

  /** The bytes to write a reserved event into (valid until the next `reserve` or `append`). */
  get array(): Uint8Array<ArrayBuffer> {
    return this.bytes;
  }

  /** Takes the event written in place at [at, end) of `array`, after `reserve`. */
  commit(at: number, end: number, flag: boolean): void {
    if (this.count > 0) this.bytes[this.end] = COMMA;
    this.starts[this.count] = at;
    this.flags[this.count] = flag ? 1 : 0;
    this.count += 1;
    this.end = end;
  }

  /** The i-th event held: the app's object if it gave one, else its JSON read back. */
  event(i: number): E {
    const k = this.first + i;
    const object = this.objects?.[k];
    if (object !== undefined) return object;
    const stop = k + 1 < this.count ? this.starts[k + 1]! - 1 : this.end;
    return JSON.parse(decoder.decode(this.bytes.subarray(this.starts[k]!, stop))) as E;
  }

  flag(i: number): boolean {
    return this.flags[this.first + i] === 1;
  }

  /** Every event held, in order. */
  events(): E[] {
    return Array.from({ length: this.length }, (_, i) => this.event(i));
  }

  /** Drops the first event held and returns it (when `read`; reading back costs a parse). */
  shift(read: boolean): E | undefined {
    const event = read ? this.event(0) : undefined;
    if (this.objects) this.objects[this.first] = undefined;
    this.first += 1;
    return event;
  }

  /**
   * The request body of the events held: a view of this batch's bytes, valid until `reset`. The
   * batch takes no more events after it.
   */
  body(open: Uint8Array = LEAN_OPEN): Uint8Array<ArrayBuffer> {
    // Just before the first event held: in the room kept for it, or over the bytes of events
    // dropped from the front.
    const from = this.starts[this.first]! - open.length;
    this.bytes.set(open, from);
    this.bytes.set(CLOSE, this.end);
    return this.bytes.subarray(from, this.end + CLOSE.length);
  }

  /** Empty again, for reuse (its byte array kept). */
  reset(): void {
    this.objects = undefined;
    this.first = 0;
    this.count = 0;
    this.end = ROOM;
  }
}

/** A FIFO of events in batches of `batchSize`: full batches wait in order, the last one fills. */
export class WireBuffer<E> {
  private readonly waiting = new EventQueue<WireBatch<E>>();
  private filling: WireBatch<E> | undefined;
  /** Batches whose bytes Tally has read, for reuse. */
  private readonly spare: WireBatch<E>[] = [];
  /** Bytes of the last full batch: a new batch starts at that size. */
  private sizeHint: number;
  private held = 0;

  constructor(
    private readonly batchSize: number,
    private readonly maxSpare: number,
  ) {
    this.sizeHint = Math.min(16 * 1024, batchSize * 256);
  }

  /** Events held. */
  get length(): number {
    return this.held;
  }

  /** Whether a full batch is waiting. */
  get hasFullBatch(): boolean {
    return this.waiting.length > 0;
  }

  push(json: string, flag: boolean, event?: E): void {
    const batch = this.open();
    batch.append(json, flag, event);
    this.added(batch);
  }

  /**
   * Writes one event's JSON in place, with `write(bytes, at, item)` → where it ended, or -1 when
   * it could not (then nothing is kept and false is returned). `max`: the most bytes it writes.
   * No string is made: the middleware writes its request events this way, field by field.
   */
  pushWritten<T>(max: number, flag: boolean, write: (bytes: Uint8Array, at: number, item: T) => number, item: T): boolean {
    const batch = this.open();
    const at = batch.reserve(max);
    const end = write(batch.array, at, item);
    if (end < 0) return false;
    batch.commit(at, end, flag);
    this.added(batch);
    return true;
  }

  private open(): WireBatch<E> {
    // Room past the last full batch's size: sized to it exactly, a batch of the same events grew
    // at its last one (the middleware reserves its most bytes, more than it writes), doubling
    // its array and copying every byte before it, for every batch.
    return (this.filling ??= this.spare.pop() ?? new WireBatch<E>(this.batchSize, this.sizeHint + (this.sizeHint >> 3) + 1024));
  }

  private added(batch: WireBatch<E>): void {
    this.held += 1;
    if (batch.full) {
      // the last full batch, not the largest ever: one outsized event must not size every batch after it
      this.sizeHint = batch.size;
      this.waiting.push(batch);
      this.filling = undefined;
    }
  }

  /** The oldest batch: a full one if any, else the one filling (when it holds events). */
  take(): WireBatch<E> | undefined {
    let batch = this.waiting.shift();
    if (!batch && this.filling && this.filling.length > 0) {
      batch = this.filling;
      this.filling = undefined;
    }
    if (batch) this.held -= batch.length;
    return batch;
  }

  /**
   * Drops the oldest event held; returns it when `read` (else undefined: nobody is told, so its
   * bytes are not parsed back). False when nothing was held.
   */
  dropOldest(read: boolean): { event: E | undefined } | false {
    const batch = this.waiting.peek() ?? this.filling;
    if (!batch || batch.length === 0) return false;
    const event = batch.shift(read);
    this.held -= 1;
    if (batch.length === 0 && batch !== this.filling) this.release(this.waiting.shift()!);
    return { event };
  }

  /** Takes every event held, in order (shutdown); returns them when `read`. */
  drain(read: boolean): E[] {
    const out: E[] = [];
    for (let batch = this.take(); batch; batch = this.take()) {
      if (read) out.push(...batch.events());
      this.release(batch);
    }
    return out;
  }

  /** A batch whose body Tally has read in full: its bytes may be written again. */
  release(batch: WireBatch<E>): void {
    batch.reset();
    // An array grown far past the usual batch (an outsized event) is let go, not kept for reuse.
    if (this.spare.length < this.maxSpare && batch.byteCapacity <= 2 * this.sizeHint) this.spare.push(batch);
  }
}
