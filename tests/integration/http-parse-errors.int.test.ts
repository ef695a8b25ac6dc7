import net from 'node:net';
import { useTestApp } from '../helpers/harness';

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
