import { Writable } from 'node:stream';
import { randomUUID } from 'node:crypto';
import pino from 'pino';
import { TestApp } from '../helpers/harness';

/** Every log line a request makes carries its request id (X-Request-ID when the client sent one). */
let app: TestApp;
const lines: Record<string, unknown>[] = [];

beforeAll(async () => {
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n')) if (line) lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  app = await TestApp.start({}, { logger: pino({ level: 'info' }, sink) });
});
afterAll(() => app.close());

const until = async (found: () => boolean, what: string) => {
  for (let i = 0; i < 200 && !found(); i++) await new Promise((resolve) => setTimeout(resolve, 25));
  if (!found()) throw new Error(`no ${what}`);
};

it("tags the log line of an export the client abandoned with the client's X-Request-ID", async () => {
  const { ownerKey } = await app.createTenant();
  const { id: licenseId } = await app.createLicense(ownerKey);
  for (let call = 0; call < 20; call++) {
    const events = Array.from({ length: 1000 }, () => ({ licenseId, usageType: 'api_call', route: `/r/${randomUUID()}` }));
    expect((await app.call('usage.trackEvents', { events }, ownerKey)).status).toBe(200);
  }
  const today = new Date().toISOString().slice(0, 10);
  const requestId = `req-${randomUUID()}`;
  const abort = new AbortController();
  const res = await fetch(`${app.baseUrl}/api/export/events?format=csv&licenseId=${licenseId}&startDate=${today}&endDate=${today}`, {
    headers: { authorization: `Bearer ${ownerKey}`, 'x-request-id': requestId },
    signal: abort.signal,
  });
  expect(res.status).toBe(200);
  await res.body!.getReader().read(); // the first rows, then the client goes away
  abort.abort();
  await until(() => lines.some((l) => l.msg === 'export abandoned'), 'log line for the abandoned export');
  expect(lines.find((l) => l.msg === 'export abandoned')).toMatchObject({ requestId, kind: 'events' });
});
