/**
 * `@tally/sdk/node`: a `fetch` for the client that makes its HTTP requests on a worker thread.
 *
 * `new Tally({ apiKey, baseUrl, fetch: workerFetch() })`. Why: a 1,000-event batch is a body of a
 * few hundred KB, and sending it from the app's thread costs that thread milliseconds at once (the
 * body copied by fetch, the socket writes, the answer), which every request the app is serving at
 * that moment waits out: the middleware's p99. On a worker thread those milliseconds land on
 * another core; the app's thread only hands over a copy of the body and gets the answer back.
 * Node only (`node:worker_threads`); the client's core stays fetch-only for other runtimes.
 *
 * Only requests with a body of at least `minBodyBytes` (default 32 KB: a batch of ~100 or more
 * events) go to the worker. A quota check or a procedure call is a few hundred bytes, cheap to send
 * from the app's thread, and waits for its answer: the hop to another thread and back only added
 * to its round trip (measured in the sdk bench: a `usage.check` 1.6 → 2.8 ms at p50 with every
 * request on the worker). Requests it cannot hand over as they are (a `Request` object, a streamed
 * or form body) are made by the app's own `fetch` too, so any call still works. One worker per
 * `workerFetch()`: make one and share it between clients. The worker does not keep the process
 * alive when nothing is in flight.
 */
import { Worker } from 'node:worker_threads';

/**
 * The worker's side: make each request, hand back the whole answer (its body transferred, not
 * copied). With `node:http`/`node:https` and a keep-alive agent, not the worker's own fetch: a
 * 300 KB batch costs fetch (undici) 1.4-2 ms of CPU to send, node:http 0.4 ms (measured here,
 * same server, 300 POSTs each), and that CPU is taken from the app's cores. What fetch does beyond
 * a plain request is kept: a string body without a content type is `text/plain;charset=UTF-8`,
 * a compressed answer is decompressed, a failure is `TypeError: fetch failed` with the socket's
 * error as cause; a redirect to follow, or a URL that is not http(s), is handed to fetch whole.
 * Evaluated as CommonJS or, under a parent started with --input-type=module, as a module: hence
 * import(), which both have. Messages sent before its listener is attached wait in the port.
 */
const WORKER_SOURCE = `
Promise.all([import('node:worker_threads'), import('node:http'), import('node:https'), import('node:zlib'), import('node:os')]).then(([{ parentPort, workerData }, http, https, zlib, os]) => {
// On Linux a thread has its own niceness, and pid 0 is the calling thread: this one only.
if (workerData && workerData.nice) { try { os.setPriority(0, workerData.nice); } catch {} }
const agents = { 'http:': new http.Agent({ keepAlive: true }), 'https:': new https.Agent({ keepAlive: true }) };
const running = new Map();
const describe = (e) => ({
  name: e && e.name ? String(e.name) : 'Error',
  message: e && e.message ? String(e.message) : String(e),
  cause: e && e.cause ? { name: String(e.cause.name || 'Error'), code: e.cause.code === undefined ? undefined : String(e.cause.code), message: String(e.cause.message || e.cause) } : undefined,
});
const failed = (cause) => describe(Object.assign(new TypeError('fetch failed'), { cause }));
const answer = (id, status, statusText, headers, body) => parentPort.postMessage({ id, status, statusText, headers, body }, [body]);
/** A fresh ArrayBuffer holding the chunks (a Buffer may be a slice of a shared pool: never transferred). */
const joined = (chunks, size) => {
  const out = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) { out.set(c, at); at += c.length; }
  return out.buffer;
};
const byFetch = (m) => {
  const controller = new AbortController();
  running.set(m.id, { abort: () => controller.abort() });
  fetch(m.url, { method: m.method, headers: m.headers, body: m.body, redirect: m.redirect, signal: controller.signal })
    .then(async (res) => answer(m.id, res.status, res.statusText, [...res.headers], await res.arrayBuffer()))
    .catch((e) => parentPort.postMessage({ id: m.id, error: describe(e) }))
    .finally(() => running.delete(m.id));
};
const DECODERS = { gzip: 'createGunzip', 'x-gzip': 'createGunzip', deflate: 'createInflate', br: 'createBrotliDecompress' };
parentPort.on('message', (m) => {
  if (m.abort !== undefined) {
    const r = running.get(m.abort);
    if (r) { running.delete(m.abort); r.abort(); }
    return;
  }
  let url;
  try { url = new URL(m.url); } catch { url = undefined; }
  if (!url || !agents[url.protocol] || url.username || url.password) return byFetch(m);
  const body = m.body === undefined || m.body === null ? undefined : typeof m.body === 'string' ? Buffer.from(m.body, 'utf8') : Buffer.from(m.body);
  const headers = {};
  for (const [k, v] of m.headers) headers[k] = v;
  if (typeof m.body === 'string' && headers['content-type'] === undefined) headers['content-type'] = 'text/plain;charset=UTF-8';
  if (body !== undefined) headers['content-length'] = String(body.length);
  else if (m.method === 'POST' || m.method === 'PUT') headers['content-length'] = '0';
  let req;
  try {
    req = (url.protocol === 'https:' ? https : http).request(url, { method: m.method, headers, agent: agents[url.protocol] });
  } catch (e) {
    // what fetch refuses before sending (a header value that is not text): its refusal, as fetch gives it
    return byFetch(m);
  }
  let settled = false;
  running.set(m.id, { abort: () => { settled = true; req.destroy(); } });
  const fail = (e) => {
    if (settled) return;
    settled = true;
    running.delete(m.id);
    parentPort.postMessage({ id: m.id, error: failed(e) });
  };
  req.on('error', fail);
  req.on('response', (res) => {
    const status = res.statusCode;
    if (status >= 300 && status < 400 && res.headers.location !== undefined && m.redirect !== 'manual') {
      // fetch's redirect rules (method changes, the body resent, 'error'): fetch's own work
      res.resume();
      settled = true;
      running.delete(m.id);
      return byFetch(m);
    }
    const pairs = [];
    for (let i = 0; i < res.rawHeaders.length; i += 2) pairs.push([res.rawHeaders[i], res.rawHeaders[i + 1]]);
    const coding = String(res.headers['content-encoding'] || '').trim().toLowerCase();
    const stream = DECODERS[coding] && m.method !== 'HEAD' && status !== 204 && status !== 304 ? res.pipe(zlib[DECODERS[coding]]()) : res;
    const chunks = [];
    let size = 0;
    stream.on('data', (c) => { chunks.push(c); size += c.length; });
    stream.on('error', fail);
    res.on('error', fail);
    stream.on('end', () => {
      if (settled) return;
      settled = true;
      running.delete(m.id);
      answer(m.id, status, res.statusMessage || '', pairs, joined(chunks, size));
    });
  });
  req.end(body);
});
});
`;

interface Answer {
  id: number;
  status?: number;
  statusText?: string;
  headers?: [string, string][];
  body?: ArrayBuffer;
  error?: { name: string; message: string; cause?: { name: string; code?: string; message: string } };
}

interface Waiting {
  /** The worker the request went to: only its loss fails the request. */
  worker: Worker;
  resolve(response: Response): void;
  reject(error: unknown): void;
  done(): void;
}

export interface WorkerFetchOptions {
  /**
   * Requests whose body is smaller (in bytes; a string counted by its length) are made by the
   * runtime's fetch on the calling thread. Default 32 KB; 0 sends every request it can carry to
   * the worker.
   */
  minBodyBytes?: number;
  /**
   * Linux: the niceness of the worker thread (0-19; default 10), the app's threads left as they
   * are. A batch's send then waits for the app's work instead of taking its core when both are
   * ready: a worker woken by a batch is otherwise put on the core of the app's thread that woke it
   * and runs before it. With idle cores it runs at once all the same, and a contended core still
   * gives it ~10% at nice 10, against the ~1% of a core its sends take at 10,000 events/s. Other
   * systems: ignored (there a niceness applies to the whole process).
   */
  nice?: number;
}

export interface WorkerFetch {
  (input: string | URL | Request, init?: RequestInit): Promise<Response>;
  /** Stops the worker; requests still in flight fail as network errors. */
  close(): Promise<void>;
}

/** Statuses whose Response may not have a body. */
const NULL_BODY = new Set([101, 103, 204, 205, 304]);

/** A failure as fetch reports one (`TypeError: fetch failed`, the reason in `cause`). */
function networkError(message: string, cause?: unknown): TypeError {
  return new TypeError(message, cause === undefined ? undefined : { cause });
}

export const DEFAULT_MIN_BODY_BYTES = 32 * 1024;
export const DEFAULT_WORKER_NICE = 10;

export function workerFetch(options: WorkerFetchOptions = {}): WorkerFetch {
  const minBodyBytes = options.minBodyBytes ?? DEFAULT_MIN_BODY_BYTES;
  if (!(minBodyBytes >= 0)) throw new RangeError('workerFetch: minBodyBytes must be a number ≥ 0');
  const nice = options.nice ?? DEFAULT_WORKER_NICE;
  if (!Number.isInteger(nice) || nice < 0 || nice > 19) throw new RangeError('workerFetch: nice must be an integer 0..19');
  const workerData = { nice: process.platform === 'linux' ? nice : 0 };
  let worker: Worker | undefined;
  let nextId = 0;
  const waiting = new Map<number, Waiting>();

  /** Fails what is in flight on worker `lost` (a crash's `error` and `exit` may come after a new worker started). */
  const failAll = (lost: Worker, error: unknown) => {
    for (const [id, entry] of waiting) {
      if (entry.worker !== lost) continue;
      waiting.delete(id);
      entry.done();
      entry.reject(networkError('fetch failed', error));
    }
  };
  const settled = (id: number, w: Worker) => {
    waiting.delete(id);
    for (const entry of waiting.values()) if (entry.worker === w) return;
    w.unref();
  };

  const start = (): Worker => {
    const w = new Worker(WORKER_SOURCE, { eval: true, workerData });
    w.unref();
    w.on('message', (answer: Answer) => {
      const entry = waiting.get(answer.id);
      if (!entry) return; // aborted meanwhile
      settled(answer.id, w);
      entry.done();
      if (answer.error) {
        const c = answer.error.cause;
        const cause = c ? Object.assign(new Error(c.message), { name: c.name }, c.code === undefined ? {} : { code: c.code }) : undefined;
        entry.reject(networkError(answer.error.message, cause));
        return;
      }
      const status = answer.status!;
      const response = new Response(NULL_BODY.has(status) ? null : answer.body!, { status, statusText: answer.statusText, headers: answer.headers });
      entry.resolve(response);
    });
    const lost = (error: unknown) => {
      if (worker === w) worker = undefined;
      failAll(w, error);
    };
    w.on('error', lost);
    w.on('exit', (code) => lost(new Error(`the fetch worker exited (${code})`)));
    return w;
  };

  const call = (input: string | URL | Request, init: RequestInit = {}): Promise<Response> => {
    const body = init.body;
    const plainBody = body === undefined || body === null || typeof body === 'string' || body instanceof ArrayBuffer || ArrayBuffer.isView(body);
    if (input instanceof Request || !plainBody) return globalThis.fetch(input, init);
    const size = body === undefined || body === null ? 0 : typeof body === 'string' ? body.length : (body as ArrayBuffer | ArrayBufferView).byteLength;
    if (size < minBodyBytes) return globalThis.fetch(input, init);
    const signal = init.signal ?? undefined;
    if (signal?.aborted) return Promise.reject(signal.reason);

    // A copy of the bytes, its buffer moved to the worker: the caller may reuse its own array
    // as soon as this resolves, and a view's whole underlying buffer is not sent along.
    let sent: string | ArrayBuffer | undefined;
    const transfer: ArrayBuffer[] = [];
    if (typeof body === 'string') sent = body;
    else if (body instanceof ArrayBuffer) sent = body.slice(0);
    else if (body) {
      const view = body as ArrayBufferView;
      const copy = new Uint8Array(view.byteLength);
      copy.set(new Uint8Array(view.buffer, view.byteOffset, view.byteLength));
      sent = copy.buffer;
    }
    if (sent instanceof ArrayBuffer) transfer.push(sent);

    const w = (worker ??= start());
    const id = nextId++;
    return new Promise<Response>((resolve, reject) => {
      const onAbort = () => {
        if (!waiting.has(id)) return;
        settled(id, w);
        w.postMessage({ abort: id });
        reject(signal!.reason);
      };
      const done = () => signal?.removeEventListener('abort', onAbort);
      waiting.set(id, { worker: w, resolve, reject, done });
      signal?.addEventListener('abort', onAbort, { once: true });
      w.ref();
      try {
        w.postMessage(
          { id, url: String(input), method: init.method ?? 'GET', headers: [...new Headers(init.headers)], body: sent, redirect: init.redirect },
          transfer,
        );
      } catch (error) {
        // headers that are not text, a detached buffer: refused here, as fetch would refuse them
        settled(id, w);
        done();
        reject(error);
      }
    });
  };

  return Object.assign(call, {
    close: async () => {
      const w = worker;
      worker = undefined;
      if (!w) return;
      await w.terminate();
      failAll(w, new Error('workerFetch closed'));
    },
  });
}
