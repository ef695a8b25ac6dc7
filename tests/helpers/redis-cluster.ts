import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** `count` ports that are free, each with its cluster bus port (+10000) free too. */
async function freeClusterPorts(count: number): Promise<number[]> {
  const ports: number[] = [];
  let candidate = 20_000 + Math.floor(Math.random() * 9_000);
  while (ports.length < count) {
    candidate += 1;
    if (candidate > 29_999) candidate = 20_000;
    if ((await portFree(candidate)) && (await portFree(candidate + 10_000))) ports.push(candidate);
  }
  return ports;
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

interface ClusterNodeInfo {
  id: string;
  port: number;
  master: boolean;
  failed: boolean;
  masterId: string | null;
  slots: [number, number][];
}

function parseClusterNodes(text: string): ClusterNodeInfo[] {
  return text
    .trim()
    .split('\n')
    .map((line) => {
      const [id, address, flags, masterId, , , , , ...slots] = line.split(' ');
      return {
        id: id!,
        port: Number(/:(\d+)@/.exec(address!)![1]),
        master: flags!.includes('master'),
        failed: /\bfail\b/.test(flags!),
        masterId: masterId === '-' ? null : masterId!,
        slots: slots
          .filter((s) => /^\d/.test(s))
          .map((s) => {
            const [a, b] = s.split('-').map(Number);
            return [a!, b ?? a!] as [number, number];
          }),
      };
    });
}

/**
 * A real Redis Cluster of `masters` masters, each with one replica, on ports and a data folder of
 * its own, without persistence. `cluster-node-timeout` is short so a killed master's replica takes
 * over in a few seconds; `cluster-replica-validity-factor 0` lets it, however long it was cut off.
 * Everything the cluster started is stopped and its folder deleted by stop().
 */
export class RedisClusterServer {
  private readonly servers = new Map<number, ChildProcess>();
  private readonly clients = new Map<number, Redis>();
  private mastersBeforeKill = new Set<number>();

  private constructor(
    readonly ports: number[],
    private readonly dir: string,
  ) {}

  static async start(options: { masters?: number; nodeTimeoutMs?: number } = {}): Promise<RedisClusterServer> {
    const masters = options.masters ?? 3;
    const ports = await freeClusterPorts(masters * 2);
    const cluster = new RedisClusterServer(ports, mkdtempSync(path.join(tmpdir(), 'tally-redis-cluster-')));
    try {
      for (const port of ports) cluster.spawnNode(port, options.nodeTimeoutMs ?? 1000);
      for (const port of ports) await until(`redis-server on ${port}`, async () => ((await cluster.client(port).ping()) === 'PONG' ? true : undefined), 20_000);
      const created = spawnSync(
        'redis-cli',
        ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '1', '--cluster-yes'],
        { encoding: 'utf8', timeout: 60_000 },
      );
      if (created.status !== 0) throw new Error(`redis-cli --cluster create failed:\n${created.stdout}\n${created.stderr}`);
      await cluster.waitUntilHealthy();
      return cluster;
    } catch (err) {
      await cluster.stop();
      throw err;
    }
  }

  private spawnNode(port: number, nodeTimeoutMs: number): void {
    const child = spawn(
      'redis-server',
      [
        '--port', String(port),
        '--bind', '127.0.0.1',
        '--cluster-enabled', 'yes',
        '--cluster-config-file', path.join(this.dir, `nodes-${port}.conf`),
        '--cluster-node-timeout', String(nodeTimeoutMs),
        '--cluster-replica-validity-factor', '0',
        '--dir', this.dir,
        '--dbfilename', `dump-${port}.rdb`,
        '--save', '',
        '--appendonly', 'no',
        '--protected-mode', 'no',
      ],
      { stdio: 'ignore' },
    );
    this.servers.set(port, child);
  }

  private client(port: number): Redis {
    let client = this.clients.get(port);
    if (!client) {
      client = new Redis({ host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => 200 });
      client.on('error', () => undefined);
      this.clients.set(port, client);
    }
    return client;
  }

  /** For REDIS_CLUSTER_NODES: every node (the client finds the others from any one of them). */
  get nodesSpec(): string {
    return this.ports.map((p) => `127.0.0.1:${p}`).join(',');
  }

  private alivePorts(): number[] {
    return this.ports.filter((p) => this.servers.get(p)?.exitCode === null && this.servers.get(p)?.signalCode === null);
  }

  async nodes(): Promise<ClusterNodeInfo[]> {
    const port = this.alivePorts()[0]!;
    return parseClusterNodes((await this.client(port).call('CLUSTER', 'NODES')) as string);
  }

  /** Every live node says cluster_state:ok and every slot has a live master. */
  async waitUntilHealthy(timeoutMs = 60_000): Promise<void> {
    await until(
      'cluster_state:ok on every live node',
      async () => {
        for (const port of this.alivePorts()) {
          const info = (await this.client(port).call('CLUSTER', 'INFO')) as string;
          if (!info.includes('cluster_state:ok')) return undefined;
        }
        const nodes = await this.nodes();
        const covered = nodes.filter((n) => n.master && !n.failed).reduce((sum, n) => sum + n.slots.reduce((s, [a, b]) => s + b - a + 1, 0), 0);
        return covered === 16384 ? true : undefined;
      },
      timeoutMs,
    );
  }

  /** The port of the master that serves `key`'s slot now. */
  async masterPortOf(key: string): Promise<number> {
    const port = this.alivePorts()[0]!;
    const slot = Number(await this.client(port).call('CLUSTER', 'KEYSLOT', key));
    const owner = (await this.nodes()).find((n) => n.master && !n.failed && n.slots.some(([a, b]) => a <= slot && slot <= b));
    if (!owner) throw new Error(`no live master serves slot ${slot}`);
    return owner.port;
  }

  /** SIGKILLs a node, as a crashed machine would go. */
  async kill(port: number): Promise<void> {
    this.mastersBeforeKill = new Set((await this.nodes()).filter((n) => n.master && n.slots.length > 0).map((n) => n.port));
    this.clients.get(port)?.disconnect();
    this.clients.delete(port);
    this.servers.get(port)?.kill('SIGKILL');
  }

  /** Waits until another node serves what the killed master `port` served, and the cluster is ok. */
  async waitForFailover(port: number, timeoutMs = 60_000): Promise<number> {
    const promoted = await until(
      `a replica of ${port} to take over`,
      async () => {
        const nodes = await this.nodes();
        const dead = nodes.find((n) => n.port === port)!;
        if (!dead.failed) return undefined;
        const heir = nodes.find((n) => n.master && !n.failed && n.slots.length > 0 && !this.mastersBeforeKill.has(n.port));
        return heir?.port;
      },
      timeoutMs,
    );
    await this.waitUntilHealthy(timeoutMs);
    return promoted;
  }

  async stop(): Promise<void> {
    for (const client of this.clients.values()) client.disconnect();
    this.clients.clear();
    await Promise.all(
      [...this.servers.values()].map(
        (child) =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null) return resolve();
            child.once('exit', () => resolve());
            child.kill('SIGKILL');
          }),
      ),
    );
    rmSync(this.dir, { recursive: true, force: true });
  }
}
