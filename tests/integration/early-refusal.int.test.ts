import net from 'node:net';
import { randomUUID } from 'node:crypto';
import { LINGER_IDLE_MS, LINGER_MS } from '../../src/server/linger';
import { useTestApp } from '../helpers/harness';

/**
 * A body past its limit is refused (413) as soon as the limit is passed, while the client may
 * still be sending it. Closing the connection under a client still writing makes the kernel
 * reset it, and the client sees ECONNRESET instead of the 413: the rest is read and dropped.
 */
const app = useTestApp({ MAX_BODY_BYTES: '65536', BILLING_WEBHOOK_MAX_BYTES: '65536' });

let ownerKey: string;
beforeAll(async () => {
  ownerKey = (await app.createTenant()).ownerKey;
});

/**
 * POSTs `total` bytes of body to `path` in `chunk`-byte writes, each after the last was taken
 * (declared with Content-Length or sent chunked), going on after the server's half of the
 * connection ended as fetch does; then reads the answer.
 */
function slowPost(path: string, total: number, chunk: number, framing: 'length' | 'chunked'): Promise<{ status: number; body: string; error?: string }> {
  const { port } = new URL(app.baseUrl);
  return new Promise((resolve) => {
    const socket = net.connect({ port: Number(port), host: '127.0.0.1', allowHalfOpen: true });
    const chunks: Buffer[] = [];
    let error: string | undefined;
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', (err: NodeJS.ErrnoException) => (error ??= err.code ?? String(err)));
    socket.on('close', () => {
      const answer = Buffer.concat(chunks).toString('utf8');
      const [head = '', body = ''] = answer.split('\r\n\r\n', 2);
      resolve({ status: Number(head.split(' ')[1]), body, ...(error ? { error } : {}) });
    });
    const framingHeader = framing === 'length' ? `Content-Length: ${total}` : 'Transfer-Encoding: chunked';
    socket.write(`POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: Bearer ${ownerKey}\r\n${framingHeader}\r\n\r\n`);
    let sent = 0;
    const next = (): void => {
      if (socket.destroyed) return;
      if (sent >= total) {
        socket.end(framing === 'chunked' ? '0\r\n\r\n' : '');
        return;
      }
      const size = Math.min(chunk, total - sent);
      sent += size;
      const piece = ' '.repeat(size);
      socket.write(framing === 'chunked' ? `${size.toString(16)}\r\n${piece}\r\n` : piece, () => setTimeout(next, 2));
    };
    next();
  });
}

describe.each([
  ['tRPC', '/api/trpc/usage.trackEvents'],
  ['REST', '/api/v1/events/batch'],
  ['the Stripe webhook', `/api/stripe/webhook/${randomUUID()}`],
])('a body past the limit sent to %s', (_name, path) => {
  it.each(['length', 'chunked'] as const)('gets its 413, not a reset, while still being sent (%s)', async (framing) => {
    const answer = await slowPost(path, 4 * 1024 * 1024, 128 * 1024, framing);
    expect(answer.error).toBeUndefined();
    expect(answer.status).toBe(413);
    expect(answer.body).toMatch(/PAYLOAD_TOO_LARGE/);
  });
});

it('stops reading a refused body that never ends once the linger limits pass (quiet, then never quiet)', async () => {
  const { port } = new URL(app.baseUrl);
  const closedAfter = (trickleMs: number | null): Promise<{ ms: number; answer: string }> =>
    new Promise((resolve) => {
      const started = Date.now();
      const chunks: Buffer[] = [];
      let timer: NodeJS.Timeout | undefined;
      app.server.once('connection', (serverSide: net.Socket) =>
        serverSide.once('close', () => {
          clearInterval(timer);
          const ms = Date.now() - started;
          setTimeout(() => {
            socket.destroy();
            resolve({ ms, answer: Buffer.concat(chunks).toString('utf8') });
          }, 100);
        }),
      );
      const socket = net.connect({ port: Number(port), host: '127.0.0.1', allowHalfOpen: true });
      socket.on('data', (c: Buffer) => chunks.push(c));
      socket.on('error', () => undefined);
      socket.write(`POST /api/stripe/webhook/${randomUUID()} HTTP/1.1\r\nHost: x\r\nContent-Length: ${100 * 1024 * 1024}\r\n\r\n`);
      if (trickleMs !== null) timer = setInterval(() => !socket.destroyed && socket.write('x'), trickleMs);
    });
  const quiet = await closedAfter(null);
  expect(quiet.answer).toMatch(/^HTTP\/1\.1 413 /);
  expect(quiet.ms).toBeGreaterThanOrEqual(LINGER_IDLE_MS - 50);
  expect(quiet.ms).toBeLessThan(LINGER_MS);
  const trickling = await closedAfter(LINGER_IDLE_MS / 4);
  expect(trickling.answer).toMatch(/^HTTP\/1\.1 413 /);
  expect(trickling.ms).toBeGreaterThanOrEqual(LINGER_MS - 50);
  expect(trickling.ms).toBeLessThan(LINGER_MS + LINGER_IDLE_MS);
}, LINGER_MS * 3);

/** Writes `parts` one after another on one connection and reads everything until the server closes it. */
function conversation(parts: string[]): Promise<string> {
  const { port } = new URL(app.baseUrl);
  return new Promise((resolve) => {
    const socket = net.connect({ port: Number(port), host: '127.0.0.1', allowHalfOpen: true });
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', () => undefined);
    socket.on('end', () => socket.end());
    socket.on('close', () => resolve(Buffer.concat(chunks).toString('utf8')));
    const next = (i: number): void => {
      if (i < parts.length && !socket.destroyed) socket.write(parts[i]!, () => setTimeout(() => next(i + 1), 5));
    };
    next(0);
  });
}

it('keeps the connection after draining a refused webhook body: the next request on it is answered', async () => {
  const size = 200_000;
  const answer = await conversation([
    `POST /api/stripe/webhook/${randomUUID()} HTTP/1.1\r\nHost: x\r\nContent-Length: ${size}\r\n\r\n`,
    'x'.repeat(size),
    'GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
  ]);
  // the second answer follows the first's body directly
  expect([...answer.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]))).toEqual([413, 200]);
});

it('answers a refused webhook body once, even when what follows it is not HTTP', async () => {
  const started = Date.now();
  const answer = await conversation([
    `POST /api/stripe/webhook/${randomUUID()} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n`,
    `${(100_000).toString(16)}\r\n${'x'.repeat(100_000)}\r\n`,
    'zz not a chunk size\r\n\r\n',
  ]);
  expect([...answer.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]))).toEqual([413]);
  expect(Date.now() - started).toBeLessThan(LINGER_MS);
});

it('holds nothing per refused body on a kept connection: twelve in a row leave no listeners behind', async () => {
  const warnings: string[] = [];
  const onWarning = (w: Error) => warnings.push(w.name);
  process.on('warning', onWarning);
  let closeListeners = -1;
  const onRequest = (req: { url?: string; socket: net.Socket }) => {
    if (req.url === '/health') closeListeners = req.socket.listenerCount('close');
  };
  app.server.on('request', onRequest);
  try {
    const size = 70_000;
    const refused = `POST /api/stripe/webhook/${randomUUID()} HTTP/1.1\r\nHost: x\r\nContent-Length: ${size}\r\n\r\n${'x'.repeat(size)}`;
    const answer = await conversation([...Array.from({ length: 12 }, () => refused), 'GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n']);
    expect([...answer.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]))).toEqual([...Array.from({ length: 12 }, () => 413), 200]);
  } finally {
    process.off('warning', onWarning);
    app.server.off('request', onRequest);
  }
  expect(warnings).not.toContain('MaxListenersExceededWarning');
  expect(closeListeners).toBeGreaterThanOrEqual(0);
  expect(closeListeners).toBeLessThan(5);
});
