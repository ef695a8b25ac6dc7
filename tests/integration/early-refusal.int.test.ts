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

/**
 * POSTs `total` bytes of body to `path` in `chunk`-byte writes, each after the last was taken
 * (declared with Content-Length or sent chunked), going on after the server's half of the
 * connection ended as fetch does; then reads the answer.
 */
let ownerKey: string;
beforeAll(async () => {
  ownerKey = (await app.createTenant()).ownerKey;
});

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
