import http from 'node:http';
import type pg from 'pg';

/** An export as a client saw it: `complete` is false when the server cut the body short. */
export interface ExportAnswer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  complete: boolean;
}

/** Reads a whole export (or as much as the server sends before it cuts the stream). */
export function readExport(url: string, key: string): Promise<ExportAnswer> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers: { authorization: `Bearer ${key}` } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', () => undefined); // "aborted": seen below as complete = false
      res.on('close', () =>
        resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks).toString('utf8'), complete: res.complete }),
      );
    });
    req.on('error', reject);
  });
}

export interface StalledExport {
  status: number;
  headers: http.IncomingHttpHeaders;
  /** The first chunk; for a refusal, its whole (JSON) body. */
  firstChunk: string;
  /** Settles when the response closes: whether the body was complete. */
  closed: Promise<boolean>;
  /** The client goes away. */
  leave(): void;
  /** The client starts reading again, to the end. */
  resume(): void;
}

/**
 * A client that starts an export, reads its first chunk and then stops reading: the server
 * holds the export (and its connection) mid-stream until the client reads, leaves, or is cut off.
 */
export function stallExport(url: string, key: string): Promise<StalledExport> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers: { authorization: `Bearer ${key}` } }, (res) => {
      res.on('error', () => undefined);
      const closed = new Promise<boolean>((done) => res.on('close', () => done(res.complete)));
      res.once('data', (chunk: Buffer) => {
        res.pause();
        resolve({
          status: res.statusCode!,
          headers: res.headers,
          firstChunk: chunk.toString('utf8'),
          closed,
          leave: () => req.destroy(),
          resume: () => res.resume(),
        });
      });
    });
    req.on('error', () => undefined); // leave() destroys it
    req.on('close', () => reject(new Error('closed before any byte')));
  });
}

/** `n` events of one license over the last day, written straight into the table (fast). */
export async function seedEvents(pool: pg.Pool, tenantId: string, licenseId: string, n: number): Promise<void> {
  await pool.query(
    `INSERT INTO usage_events (id, tenant_id, license_id, usage_type, quantity, occurred_at, payload_hash)
     SELECT gen_random_uuid(), $1, $2, 'api_call', i % 10, now() - interval '1 day' + (i % 3600) * interval '1 second', 'x'
       FROM generate_series(1, $3) AS i`,
    [tenantId, licenseId, n],
  );
}

/** The export URL of a license's events of the last three days, as CSV. */
export function eventsExportUrl(baseUrl: string, licenseId: string): string {
  const day = (offset: number) => new Date(Date.now() + offset * 86_400_000).toISOString().slice(0, 10);
  return `${baseUrl}/api/export/events?format=csv&licenseId=${licenseId}&startDate=${day(-3)}&endDate=${day(0)}&timezone=UTC`;
}

/** Data rows of a CSV export, when it ends with a whole line; null when the last line is cut. */
export function csvRows(body: string): number | null {
  if (!body.endsWith('\n')) return null;
  return body.split('\n').length - 2; // minus the header and the empty string after the last \n
}
