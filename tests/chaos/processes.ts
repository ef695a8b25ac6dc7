/**
 * Child processes of a chaos or soak run: Tally started exactly as `npm start` starts it (its
 * command is read from package.json), one role per process, and a redis-server of the run's
 * own, so that flushing or killing it touches nobody else. Every process started here is
 * remembered and killed when this process exits, whatever happens to the run.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { Redis } from 'ioredis';
import { freePort } from '../../bench/lib';

export const ROOT = path.resolve(__dirname, '..', '..');

const living = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of living) child.kill('SIGKILL');
});


export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `check` until it returns a value other than undefined, or fails naming `what` after `timeoutMs`. */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined>, timeoutMs: number, everyMs = 250): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${Math.round(timeoutMs / 1000)} s waiting for ${what}${lastError ? ` (last error: ${String(lastError)})` : ''}`);
    }
    await sleep(everyMs);
  }
}

/** `node [flags] <entry>` of package.json's start script. */
export function startCommand(): { nodeArgs: string[]; entry: string } {
  const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { scripts: { start: string } };
  const words = pkg.scripts.start.trim().split(/\s+/);
  if (words[0] !== 'node' || words.length < 2) throw new Error(`npm start must be "node [flags] <entry>" (got "${pkg.scripts.start}")`);
  return { nodeArgs: words.slice(1, -1), entry: words[words.length - 1]! };
}

export class Child {
  readonly child: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private tail = '';

  constructor(
    readonly name: string,
    command: string,
    args: string[],
    env: Record<string, string>,
  ) {
    this.child = spawn(command, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    living.add(this.child);
    const keep = (d: Buffer) => {
      this.tail = (this.tail + d.toString()).slice(-30_000);
    };
    this.child.stdout!.on('data', keep);
    this.child.stderr!.on('data', keep);
    this.exited = new Promise((resolve) =>
      this.child.once('exit', (code, signal) => {
        living.delete(this.child);
        resolve({ code, signal });
      }),
    );
  }

  get pid(): number {
    return this.child.pid!;
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  output(): string {
    return this.tail;
  }

  /** Waits until its output contains `text` (a log message), failing if it exits first. */
  async waitForOutput(text: string, timeoutMs: number): Promise<void> {
    await waitFor(
      `${this.name} to log "${text}"`,
      async () => {
        if (!this.alive) throw new Error(`${this.name} exited:\n${this.tail.slice(-4000)}`);
        return this.tail.includes(text) ? true : undefined;
      },
      timeoutMs,
    );
  }

  async kill(signal: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.alive) this.child.kill(signal);
    return this.exited;
  }

  /** SIGTERM, then SIGKILL after `graceMs`. */
  async stop(graceMs = 15_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (!this.alive) return this.exited;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }
}

export type Role = 'api' | 'worker' | 'scheduler' | 'all';

/** One Tally process of `role`, as `npm start` runs it, with `env` on top of the caller's environment. */
export function startTally(role: Role, env: Record<string, string>, name: string = role): Child {
  const start = startCommand();
  return new Child(name, process.execPath, [...start.nodeArgs, start.entry], { ...env, ROLE: role });
}

/** GET, resolving to the status (0 when nothing answers). */
export function statusOf(url: string): Promise<number> {
  return new Promise((resolve) => {
    const req = http.get(url, { agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', () => resolve(0));
    req.setTimeout(5000, () => req.destroy());
  });
}

export async function waitHealthy(api: Child, baseUrl: string, timeoutMs = 120_000): Promise<void> {
  await waitFor(
    `${api.name} to answer /health with 200`,
    async () => {
      if (!api.alive) throw new Error(`${api.name} exited:\n${api.output().slice(-4000)}`);
      return (await statusOf(`${baseUrl}/health`)) === 200 ? true : undefined;
    },
    timeoutMs,
  );
}

/** A redis-server of the run's own on a free port, without persistence. */
export class RedisServer {
  private constructor(
    readonly process: Child,
    readonly port: number,
    readonly client: Redis,
  ) {}

  static async start(): Promise<RedisServer> {
    const port = await freePort();
    const child = new Child('redis-server', 'redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {});
    const client = new Redis({ host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: 1 });
    client.on('error', () => undefined);
    await waitFor(
      `redis-server on port ${port}`,
      async () => {
        if (!child.alive) throw new Error(`redis-server exited:\n${child.output()}`);
        if (client.status !== 'ready') await client.connect().catch(() => undefined);
        return (await client.ping()) === 'PONG' ? true : undefined;
      },
      20_000,
      100,
    );
    return new RedisServer(child, port, client);
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** Everything goes: queued jobs, quota counters, caches. Returns how many keys there were. */
  async flush(): Promise<number> {
    const keys = await this.client.dbsize();
    await this.client.flushall();
    return keys;
  }

  async stop(): Promise<void> {
    this.client.disconnect();
    await this.process.kill('SIGKILL');
  }
}
