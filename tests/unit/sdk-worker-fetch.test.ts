import { type ChildProcess, execFile, spawn } from 'node:child_process';
import net, { type AddressInfo } from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { readFileSync, readdirSync } from 'node:fs';
import { DEFAULT_MIN_BODY_BYTES, DEFAULT_WORKER_NICE, type WorkerFetch, workerFetch } from '../../sdk/src/node';

/**
 * `workerFetch` (`@tally/sdk/node`) as a fetch: the request really leaves from another thread,
 * answers, bodies, headers, aborts and network errors come back as fetch gives them, and the
 * worker neither holds the process open when idle nor lets it exit with a request in flight. The
 * server is a separate process, so it can answer while this test's thread is busy.
 */
const run = promisify(execFile);
const root = path.resolve(__dirname, '..', '..');

/** An HTTP server in a child process: echoes what it got, with when it got it; `/slow` waits 800 ms. */
const SERVER = `
const http = require('node:http');
const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    const answer = () => {
      if (req.url === '/gzip') {
        const packed = require('node:zlib').gzipSync(JSON.stringify({ packed: true, text: body.toString('utf8') }));
        res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip' });
        res.end(packed);
        return;
      }
      if (req.url === '/cut') { res.writeHead(200, { 'content-length': '100' }); res.write('only ten b'); setTimeout(() => res.socket.destroy(), 20); return; }
      if (req.url === '/moved') { res.writeHead(307, { location: '/landed' }); res.end(); return; }
      if (req.url === '/see-other') { res.writeHead(303, { location: '/landed' }); res.end(); return; }
      if (req.url === '/cookies') { res.setHeader('set-cookie', ['a=1', 'b=2']); res.setHeader('x-many', ['one', 'two']); res.end('ok'); return; }
      if (req.url === '/empty') { res.writeHead(204, { 'x-seen': 'yes' }); res.end(); return; }
      res.writeHead(req.url.startsWith('/missing') ? 404 : 200, { 'content-type': 'application/json', 'x-echo': req.headers['x-echo'] || '' });
      res.end(JSON.stringify({ at: Date.now(), method: req.method, url: req.url, bytes: body.length, text: body.toString('utf8'), contentType: req.headers['content-type'] || null }));
    };
    if (req.url === '/slow') setTimeout(answer, 800); else answer();
  });
  req.on('close', () => { if (!res.writableEnded) process.stderr.write('aborted ' + req.url + '\\n'); });
});
server.listen(0, '127.0.0.1', () => process.stdout.write(String(server.address().port) + '\\n'));
`;

let server: ChildProcess;
let base: string;
let serverLog = '';
let transport: WorkerFetch;

beforeAll(async () => {
  server = spawn(process.execPath, ['-e', SERVER], { stdio: ['ignore', 'pipe', 'pipe'] });
  server.stderr!.on('data', (d: Buffer) => (serverLog += d.toString()));
  const port = await new Promise<string>((resolve) => server.stdout!.once('data', (d: Buffer) => resolve(d.toString().trim())));
  base = `http://127.0.0.1:${port}`;
  // every request it can carry goes to the worker (by default only bodies of 32 KB and more do)
  transport = workerFetch({ minBodyBytes: 0 });
});
afterAll(async () => {
  await transport.close();
  server.kill();
});

interface Echo {
  at: number;
  method: string;
  url: string;
  bytes: number;
  text: string;
  contentType: string | null;
}

it('makes the request on another thread: it reaches the server while this thread is busy', async () => {
  const onThisThread = jest.spyOn(globalThis, 'fetch');
  const answer = transport(`${base}/busy`, { method: 'POST', body: 'x' });
  // Hold this thread for 600 ms right after the call: a fetch on this thread could not send the
  // request before the loop is free again.
  const from = Date.now();
  while (Date.now() - from < 600);
  const until = Date.now();
  const echo = (await (await answer).json()) as Echo;
  expect(echo.at).toBeGreaterThanOrEqual(from - 5);
  expect(echo.at).toBeLessThan(until);
  expect(onThisThread).not.toHaveBeenCalled();
  onThisThread.mockRestore();
});

it('by default sends from the worker only bodies of 32 KB and more; smaller requests from this thread', async () => {
  const own = workerFetch();
  const onThisThread = jest.spyOn(globalThis, 'fetch');
  try {
    /** Where a request was made: by this thread's fetch, or not (then by the worker's). */
    const madeFrom = async (body: string | Uint8Array | undefined) => {
      onThisThread.mockClear();
      const echo = (await (await own(`${base}/where`, body === undefined ? {} : { method: 'POST', body })).json()) as Echo;
      return { at: onThisThread.mock.calls.length === 1 ? 'this thread' : 'worker', bytes: echo.bytes };
    };
    expect(await madeFrom(new Uint8Array(DEFAULT_MIN_BODY_BYTES))).toEqual({ at: 'worker', bytes: 32 * 1024 });
    expect(await madeFrom(new Uint8Array(DEFAULT_MIN_BODY_BYTES - 1))).toEqual({ at: 'this thread', bytes: 32 * 1024 - 1 });
    expect(await madeFrom('x'.repeat(DEFAULT_MIN_BODY_BYTES))).toEqual({ at: 'worker', bytes: 32 * 1024 });
    expect(await madeFrom(undefined)).toEqual({ at: 'this thread', bytes: 0 });
  } finally {
    onThisThread.mockRestore();
    await own.close();
  }
  expect(() => workerFetch({ minBodyBytes: -1 })).toThrow(RangeError);
});

/** Every thread of this process with its niceness (Linux: field 19 of /proc/<pid>/task/<tid>/stat). */
const threadsNow = () =>
  readdirSync('/proc/self/task').map((tid) => {
    const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
    return { tid: Number(tid), nice: Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]) };
  });

(process.platform === 'linux' ? it : it.skip)('runs its thread at the niceness asked for (Linux), this thread left as it was', async () => {
  const mine = () => threadsNow().find((t) => t.tid === process.pid)!.nice;
  const ownNice = mine();
  for (const [options, expected] of [[{ nice: 7 }, 7], [{}, DEFAULT_WORKER_NICE], [{ nice: 19 }, 19], [{ nice: 0 }, ownNice]] as const) {
    const before = new Set(threadsNow().map((t) => t.tid));
    const own = workerFetch({ minBodyBytes: 0, ...options });
    try {
      expect(((await (await own(`${base}/nice`, { method: 'POST', body: 'x' })).json()) as Echo).url).toBe('/nice');
      const started = threadsNow().filter((t) => !before.has(t.tid));
      expect(started.map((t) => t.nice)).toContain(expected);
      expect(started.filter((t) => t.nice !== ownNice)).toHaveLength(expected === ownNice ? 0 : 1);
      expect(mine()).toBe(ownNice);
    } finally {
      await own.close();
    }
  }
  for (const nice of [-1, 20, 1.5]) expect(() => workerFetch({ nice })).toThrow(RangeError);
});

it('answers as fetch does: status, headers, JSON and text bodies, a 204 without one', async () => {
  const response = await transport(`${base}/missing?q=1`, { method: 'PUT', headers: { 'x-echo': 'hello', 'content-type': 'text/plain' }, body: 'héllo' });
  expect(response).toBeInstanceOf(Response);
  expect([response.status, response.ok, response.headers.get('x-echo')]).toEqual([404, false, 'hello']);
  expect(await response.json()).toMatchObject({ method: 'PUT', url: '/missing?q=1', text: 'héllo', contentType: 'text/plain' });

  const headers = new Headers([['x-echo', 'from a Headers']]);
  const got = (await (await transport(new URL(`${base}/get`), { headers })).json()) as Echo;
  expect(got).toMatchObject({ method: 'GET', bytes: 0 });

  const empty = await transport(`${base}/empty`, { method: 'DELETE' });
  expect([empty.status, empty.headers.get('x-seen'), await empty.text()]).toEqual([204, 'yes', '']);
});

it('answers as this thread\'s fetch answers: compressed bodies, redirects followed or not, repeated headers, a text body\'s type', async () => {
  /** What a caller sees of an answer: compared field by field between the worker and fetch. */
  const seen = async (response: Response) => {
    const text = await response.text();
    return {
      status: response.status,
      headers: ['content-type', 'set-cookie', 'x-many', 'location'].map((h) => response.headers.get(h)),
      cookies: response.headers.getSetCookie(),
      body: response.status === 200 && text.startsWith('{') ? (JSON.parse(text) as Partial<Echo> & { packed?: boolean }) : text,
    };
  };
  const cases: [string, RequestInit][] = [
    ['/gzip', { method: 'POST', body: 'zipped' }],
    ['/moved', { method: 'POST', body: 'follow me' }],
    ['/see-other', { method: 'POST', body: 'then GET' }],
    ['/moved', { method: 'POST', body: 'stay', redirect: 'manual' }],
    ['/cookies', {}],
    ['/typed', { method: 'POST', body: 'a string, no type given' }],
    ['/bytes-untyped', { method: 'POST', body: new TextEncoder().encode('bytes, no type given') }],
  ];
  for (const [where, init] of cases) {
    const fromWorker = await seen(await transport(`${base}${where}`, init));
    const fromFetch = await seen(await fetch(`${base}${where}`, init));
    // the echo's arrival time differs; everything else is the same
    for (const s of [fromWorker, fromFetch]) if (typeof s.body === 'object') delete s.body.at;
    expect({ where, ...fromWorker }).toEqual({ where, ...fromFetch });
  }
  const followed = await seen(await transport(`${base}/moved`, { method: 'POST', body: 'follow me' }));
  expect(followed.body).toMatchObject({ url: '/landed', method: 'POST', text: 'follow me' });
  const unpacked = await seen(await transport(`${base}/gzip`, { method: 'POST', body: 'zipped' }));
  expect(unpacked.body).toEqual({ packed: true, text: 'zipped' });
  expect((await seen(await transport(`${base}/cookies`))).cookies).toEqual(['a=1', 'b=2']);
  await expect(transport(`${base}/moved`, { method: 'POST', body: 'x', redirect: 'error' })).rejects.toBeInstanceOf(TypeError);
  // an answer cut off mid-body fails (fetch fails it when its body is read), it does not hang
  await expect(fetch(`${base}/cut`).then((r) => r.text())).rejects.toMatchObject({ name: 'TypeError' });
  await expect(transport(`${base}/cut`).then((r) => r.text())).rejects.toMatchObject({ name: 'TypeError' });
});

it('sends exactly the bytes of a view, and leaves the caller its array whole', async () => {
  const whole = new TextEncoder().encode('0123456789');
  const view = whole.subarray(3, 7);
  const echo = (await (await transport(`${base}/bytes`, { method: 'POST', body: view })).json()) as Echo;
  expect(echo).toMatchObject({ bytes: 4, text: '3456' });
  // not moved to the worker: still readable, unchanged
  expect([whole.byteLength, new TextDecoder().decode(whole)]).toEqual([10, '0123456789']);

  const buffer = new TextEncoder().encode('abc').buffer;
  expect(await (await transport(`${base}/buffer`, { method: 'POST', body: buffer })).json()).toMatchObject({ bytes: 3, text: 'abc' });
  expect(buffer.byteLength).toBe(3);
});

it('hands to the app\'s own fetch what it cannot carry (a Request, a streamed body)', async () => {
  const viaRequest = (await (await transport(new Request(`${base}/request`, { method: 'POST', body: 'r' }))).json()) as Echo;
  expect(viaRequest).toMatchObject({ url: '/request', text: 'r' });
  const stream = new Blob(['streamed']).stream();
  const viaStream = (await (await transport(`${base}/stream`, { method: 'POST', body: stream, duplex: 'half' } as RequestInit)).json()) as Echo;
  expect(viaStream).toMatchObject({ text: 'streamed' });
});

it('rejects with the signal\'s reason when aborted, and the worker drops the request', async () => {
  const timedOut = transport(`${base}/slow`, { signal: AbortSignal.timeout(100) });
  await expect(timedOut).rejects.toMatchObject({ name: 'TimeoutError' });
  await new Promise((resolve) => setTimeout(resolve, 300));
  expect(serverLog).toContain('aborted /slow');

  const controller = new AbortController();
  controller.abort(new Error('already gone'));
  await expect(transport(`${base}/never`, { signal: controller.signal })).rejects.toThrow('already gone');
  // the answer of an aborted request is not delivered later to anyone: the next call works
  expect(((await (await transport(`${base}/after`)).json()) as Echo).url).toBe('/after');
});

it('fails as fetch fails when nothing listens: a TypeError with the cause', async () => {
  const closed = net.createServer();
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
  const { port } = closed.address() as AddressInfo;
  await new Promise((resolve) => closed.close(resolve));
  const refused = await transport(`http://127.0.0.1:${port}/`, { method: 'POST', body: 'x' }).catch((e: unknown) => e);
  expect(refused).toBeInstanceOf(TypeError);
  expect((refused as TypeError & { cause?: { code?: string } }).cause?.code).toBe('ECONNREFUSED');
});

it('close() fails what is in flight; the next call starts a new worker', async () => {
  const own = workerFetch({ minBodyBytes: 0 });
  const pending = own(`${base}/slow`).catch((e: unknown) => e);
  await new Promise((resolve) => setTimeout(resolve, 100));
  await own.close();
  expect(await pending).toBeInstanceOf(TypeError);
  expect(((await (await own(`${base}/again`)).json()) as Echo).url).toBe('/again');
  await own.close();
});

it('keeps the process alive while a request is in flight, and not a moment longer', async () => {
  const script = `
    const { workerFetch } = require(${JSON.stringify(path.join(root, 'sdk', 'src', 'node.ts'))});
    const f = workerFetch({ minBodyBytes: 0 });
    const t0 = Date.now();
    let answered = 0;
    f(${JSON.stringify(`${base}/slow`)}).then((r) => r.json()).then((b) => { answered = Date.now(); process.stdout.write(JSON.stringify({ url: b.url, ms: answered - t0 }) + '\\n'); });
    process.on('exit', () => process.stdout.write(JSON.stringify({ exitedAfterAnswer: Date.now() - answered })));`;
  const { stdout } = await run(process.execPath, ['--import', 'tsx', '-e', script], { cwd: root, timeout: 30_000 });
  const [answer, exit] = stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  expect(answer).toMatchObject({ url: '/slow', ms: expect.any(Number) });
  expect(answer!.ms as number).toBeGreaterThanOrEqual(800);
  // the process ended by itself right after the answer: the idle worker held nothing open
  expect(exit!.exitedAfterAnswer as number).toBeLessThan(1000);
}, 60_000);
