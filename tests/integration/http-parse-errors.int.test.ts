import net from 'node:net';
import { LINGER_IDLE_MS, LINGER_MS, closeLingering } from '../../src/server/linger';
import { useTestApp } from '../helpers/harness';
import { pieces, rawExchange, statusesOf, untilServerCloses } from '../helpers/raw-http';

/**
 * Requests node:http refuses before any route sees them (a request line or headers past
 * --max-http-header-size, bytes that are not HTTP) still get a body that says why: a GET of a
 * query with a large input is refused this way, and an empty 431 tells a client nothing.
 */
const app = useTestApp();

/** Writes raw bytes and reads the whole answer (the server closes the connection after it). */
function raw(request: string): Promise<string> {
  const { port } = new URL(app.baseUrl);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), '127.0.0.1');
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', reject);
    socket.on('close', () => resolve(Buffer.concat(chunks).toString('utf8')));
    socket.end(request);
  });
}

function parsed(answer: string) {
  const [head, body] = answer.split('\r\n\r\n', 2) as [string, string];
  return { status: Number(head.split(' ')[1]), head, body: JSON.parse(body) as { error: { message: string; code: string } } };
}

it('answers a query whose input makes the URL too long with a 431 that says so', async () => {
  const input = encodeURIComponent(JSON.stringify({ cursor: 'x'.repeat(20_000) }));
  const res = await fetch(`${app.baseUrl}/api/trpc/licenses.list?input=${input}`);
  expect(res.status).toBe(431);
  expect(res.headers.get('content-type')).toBe('application/json');
  const body = (await res.json()) as { error: { message: string; code: string } };
  expect(body.error.code).toBe('REQUEST_HEADER_FIELDS_TOO_LARGE');
  expect(body.error.message).toMatch(/at most \d+ bytes/);
});

it('answers a request just within the header limit normally', async () => {
  // 16 KB (node's default) minus the request line and the headers fetch adds
  const input = encodeURIComponent(JSON.stringify({ cursor: 'x'.repeat(15_000) }));
  const res = await fetch(`${app.baseUrl}/api/trpc/licenses.list?input=${input}`);
  expect(res.status).toBe(401); // reached the API: no key
});

it('answers a header past the limit with a 431 that says so', async () => {
  const res = await fetch(`${app.baseUrl}/health`, { headers: { 'x-filler': 'y'.repeat(17_000) } });
  expect(res.status).toBe(431);
  expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(/headers/);
});

it('answers bytes that are not HTTP with a 400 that says so', async () => {
  const answer = parsed(await raw('GET /health HTTP/1.1\r\nHost: x\r\nBad Header Without Colon\r\n\r\n'));
  expect(answer.status).toBe(400);
  expect(answer.body.error).toEqual({ message: expect.stringMatching(/malformed HTTP request/), code: 'BAD_REQUEST' });
});

it('reads the rest of a request it refused, so a client still sending it gets the 431, not a reset', async () => {
  // a 4 MB URL written in pieces: the answer is ready after the first 16 KB; closing then
  // would reset the connection under a client still writing (it would see ECONNRESET, no answer)
  const { text: answer, error } = await rawExchange(
    app.baseUrl,
    ['GET /api/trpc/licenses.list?input=', ...pieces(16, 256 * 1024), ' HTTP/1.1\r\nHost: x\r\n\r\n'],
    { end: 'after-parts' },
  );
  expect(error).toBeUndefined();
  expect(parsed(answer).status).toBe(431);
  expect(parsed(answer).body.error.code).toBe('REQUEST_HEADER_FIELDS_TOO_LARGE');
});

/** Sends a request line past the limit on a new connection, lets `drive` write more, and ends when the server closes its side. */
async function refusedThen(drive: (socket: net.Socket) => void = () => undefined) {
  const { text: answer, error, afterLastWriteMs: closedAfterMs, afterStartMs } = await untilServerCloses(app.server, app.baseUrl, `GET /health?a=${'x'.repeat(20_000)}`, drive);
  return { answer, closedAfterMs, afterStartMs, ...(error ? { error } : {}) };
}

it('keeps reading a refused request while its client pauses for less than the idle limit', async () => {
  const { answer, error, afterStartMs } = await refusedThen((socket) => {
    let pieces = 0;
    const timer = setInterval(() => {
      if (++pieces < 6) socket.write('x'.repeat(20_000));
      else {
        clearInterval(timer);
        socket.end(' HTTP/1.1\r\nHost: x\r\n\r\n');
      }
    }, LINGER_IDLE_MS / 4);
    socket.once('close', () => clearInterval(timer));
  });
  expect(error).toBeUndefined();
  expect(parsed(answer).status).toBe(431);
  // the server let go only once the client had sent its last piece (the sixth tick), not before
  expect(afterStartMs).toBeGreaterThanOrEqual((6 * LINGER_IDLE_MS) / 4 - 50);
});

it('closes a refused request whose client goes quiet for the idle limit, with the answer sent', async () => {
  const { answer, closedAfterMs } = await refusedThen(() => undefined);
  expect(parsed(answer).status).toBe(431);
  expect(closedAfterMs).toBeGreaterThanOrEqual(LINGER_IDLE_MS - 50);
  expect(closedAfterMs).toBeLessThan(LINGER_MS);
});

it('closes a refused request whose client never stops sending once the linger limit passes', async () => {
  const started = Date.now();
  const { answer, error } = await refusedThen((socket) => {
    const timer = setInterval(() => !socket.destroyed && socket.write('x'), LINGER_IDLE_MS / 4);
    socket.once('close', () => clearInterval(timer));
  });
  expect(error).toBeUndefined();
  expect(parsed(answer).status).toBe(431);
  expect(Date.now() - started).toBeGreaterThanOrEqual(LINGER_MS - 50);
  expect(Date.now() - started).toBeLessThan(LINGER_MS + LINGER_IDLE_MS);
}, LINGER_MS * 3);

it('lets go of a lingering socket at once on shutdown (closeLingering)', async () => {
  const started = Date.now();
  const { answer } = await refusedThen(() => setTimeout(closeLingering, 200));
  expect(parsed(answer).status).toBe(431);
  expect(Date.now() - started).toBeLessThan(LINGER_IDLE_MS);
});

it('never answers a pipelined request with the refusal of the one after it', async () => {
  // /health awaits PostgreSQL and Redis: the second request's header overflow is found while
  // the first is still being answered, and a 431 written then would read as the first's answer
  const { text: answer } = await rawExchange(app.baseUrl, [`GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /health?a=${'x'.repeat(20_000)} HTTP/1.1\r\nHost: x\r\n\r\n`], {
    end: 'when-server-ends',
  });
  expect(statusesOf(answer)[0]).not.toBe(431);
});

it('answers a request whose chunked body is not HTTP with one 400 that says so', async () => {
  const { ownerKey } = await app.createTenant();
  const answer = await raw(
    `POST /api/trpc/usage.trackEvents HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${ownerKey}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{"eve\r\nzz not a size\r\n\r\n`,
  );
  expect(statusesOf(answer)).toEqual([400]);
  expect(parsed(answer).body.error).toEqual({ message: expect.stringMatching(/malformed HTTP request/), code: 'BAD_REQUEST' });
});
