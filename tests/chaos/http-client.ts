import http from 'node:http';

export interface Answer {
  status: number;
  body: string;
}

/** One HTTP request over a keep-alive agent; rejects on connection errors and after `timeoutMs` without an answer. */
export function request(
  agent: http.Agent,
  url: string,
  options: { method: 'GET' | 'POST'; key?: string; body?: string; headers?: Record<string, string>; timeoutMs?: number },
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | number> = { ...options.headers };
    if (options.key) headers.authorization = `Bearer ${options.key}`;
    if (options.body !== undefined) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = Buffer.byteLength(options.body);
    }
    const req = http.request(url, { method: options.method, headers, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
      res.on('aborted', () => reject(new Error('response aborted')));
    });
    req.setTimeout(options.timeoutMs ?? 60_000, () => req.destroy(new Error('no answer in time')));
    req.on('error', reject);
    req.end(options.body);
  });
}

/**
 * As an SDK would: the same request again, with the same body (so the same idempotency keys),
 * while the connection fails or the answer is 502/503, up to `giveUpMs`. Counts the retries.
 */
export async function requestWithRetry(
  agent: http.Agent,
  url: string,
  options: Parameters<typeof request>[2] & { giveUpMs?: number },
  counters: { retries: number; connectionErrors: number; unavailable: number },
): Promise<Answer> {
  const deadline = Date.now() + (options.giveUpMs ?? 180_000);
  let wait = 50;
  for (;;) {
    let reason: string;
    try {
      const answer = await request(agent, url, options);
      if (answer.status !== 502 && answer.status !== 503) return answer;
      counters.unavailable += 1;
      reason = `HTTP ${answer.status}: ${answer.body.slice(0, 200)}`;
    } catch (error) {
      counters.connectionErrors += 1;
      reason = (error as Error).message;
    }
    if (Date.now() > deadline) throw new Error(`gave up on ${url} after retrying for ${Math.round((options.giveUpMs ?? 180_000) / 1000)} s: ${reason}`);
    counters.retries += 1;
    await new Promise((r) => setTimeout(r, wait));
    wait = Math.min(1000, wait * 2);
  }
}
