import net from 'node:net';
import { randomUUID } from 'node:crypto';
import { LINGER_IDLE_MS, LINGER_MS } from '../../src/server/linger';
import { useTestApp } from '../helpers/harness';
import { pieces, rawExchange, statusesOf, untilServerCloses } from '../helpers/raw-http';

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

/** POSTs `total` bytes of body to `path` in `chunk`-byte pieces, declared with Content-Length or sent chunked. */
async function slowPost(path: string, total: number, chunk: number, framing: 'length' | 'chunked') {
  const head = `POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: Bearer ${ownerKey}\r\n`;
  const count = Math.ceil(total / chunk);
  const parts =
    framing === 'length'
      ? [`${head}Content-Length: ${count * chunk}\r\n\r\n`, ...pieces(count, chunk, ' ')]
      : [`${head}Transfer-Encoding: chunked\r\n\r\n`, ...[...pieces(count, chunk, ' ')].map((p) => `${chunk.toString(16)}\r\n${p}\r\n`), '0\r\n\r\n'];
  const { text, error } = await rawExchange(app.baseUrl, parts, { end: 'after-parts' });
  const [answerHead = '', body = ''] = text.split('\r\n\r\n', 2);
  return { status: Number(answerHead.split(' ')[1]), body, ...(error ? { error } : {}) };
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
  const closedAfter = async (trickleMs: number | null) => {
    const opening = `POST /api/stripe/webhook/${randomUUID()} HTTP/1.1\r\nHost: x\r\nContent-Length: ${100 * 1024 * 1024}\r\n\r\n`;
    const { text, afterStartMs } = await untilServerCloses(app.server, app.baseUrl, opening, (socket) => {
      if (trickleMs === null) return;
      const timer = setInterval(() => !socket.destroyed && socket.write('x'), trickleMs);
      socket.once('close', () => clearInterval(timer));
    });
    return { ms: afterStartMs, answer: text };
  };
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
const conversation = async (parts: string[]) => (await rawExchange(app.baseUrl, parts, { end: 'when-server-ends', gapMs: 5 })).text;

it('keeps the connection after draining a refused webhook body: the next request on it is answered', async () => {
  const size = 200_000;
  const answer = await conversation([
    `POST /api/stripe/webhook/${randomUUID()} HTTP/1.1\r\nHost: x\r\nContent-Length: ${size}\r\n\r\n`,
    'x'.repeat(size),
    'GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
  ]);
  // the second answer follows the first's body directly
  expect(statusesOf(answer)).toEqual([413, 200]);
});

it('answers a refused webhook body once, even when what follows it is not HTTP', async () => {
  const started = Date.now();
  const answer = await conversation([
    `POST /api/stripe/webhook/${randomUUID()} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n`,
    `${(100_000).toString(16)}\r\n${'x'.repeat(100_000)}\r\n`,
    'zz not a chunk size\r\n\r\n',
  ]);
  expect(statusesOf(answer)).toEqual([413]);
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
    expect(statusesOf(answer)).toEqual([...Array.from({ length: 12 }, () => 413), 200]);
  } finally {
    process.off('warning', onWarning);
    app.server.off('request', onRequest);
  }
  expect(warnings).not.toContain('MaxListenersExceededWarning');
  expect(closeListeners).toBeGreaterThanOrEqual(0);
  expect(closeListeners).toBeLessThan(5);
});
