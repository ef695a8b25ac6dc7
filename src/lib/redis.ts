import { Cluster, Redis as SingleRedis, type RedisOptions } from 'ioredis';

/** A single Redis or a Redis Cluster: every Redis use of Tally works on either. */
export type Redis = SingleRedis | Cluster;

/** Where Redis is: one server (a redis:// URL) or the startup nodes of a Redis Cluster. */
export type RedisTarget =
  | { kind: 'single'; url: string }
  | { kind: 'cluster'; nodes: { host: string; port: number }[]; username?: string; password?: string; tls: boolean };

const NODE = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/;

/** `host:port,host:port` (REDIS_CLUSTER_NODES): the nodes, or the reasons the list is bad. */
export function parseClusterNodes(spec: string): { nodes: { host: string; port: number }[]; errors: string[] } {
  const nodes: { host: string; port: number }[] = [];
  const errors: string[] = [];
  for (const raw of spec.split(',').map((s) => s.trim())) {
    if (raw === '') continue;
    const m = NODE.exec(raw);
    const port = m ? Number(m[2]) : NaN;
    if (!m || port < 1 || port > 65535) {
      errors.push(`"${raw}" is not host:port`);
      continue;
    }
    nodes.push({ host: m[1]!.replace(/^\[|\]$/g, ''), port });
  }
  if (errors.length === 0 && nodes.length === 0) errors.push('names no node (host:port,host:port,…)');
  return { nodes, errors };
}

/**
 * The Redis a process uses: REDIS_CLUSTER_NODES when set, else REDIS_URL, which may itself name
 * a cluster as `redis+cluster://[user:password@]host:port,host:port` (`rediss+cluster://` for TLS).
 */
export function redisTargetOf(env: { REDIS_URL: string; REDIS_CLUSTER_NODES?: string | undefined }): RedisTarget {
  const cluster = /^(rediss?)\+cluster:\/\/(?:([^@/]*)@)?([^/?#]*)/.exec(env.REDIS_URL);
  if (env.REDIS_CLUSTER_NODES) {
    // REDIS_URL still gives the credentials and TLS (rediss://); its host is not used
    const single = /^(rediss?):\/\/(?:([^@/]*)@)?/.exec(env.REDIS_URL);
    const scheme = cluster?.[1] ?? single?.[1];
    const userinfo = cluster ? cluster[2] : single?.[2];
    return { kind: 'cluster', nodes: parseClusterNodes(env.REDIS_CLUSTER_NODES).nodes, tls: scheme === 'rediss', ...credentialsOf(userinfo) };
  }
  if (cluster) return { kind: 'cluster', nodes: parseClusterNodes(cluster[3]!).nodes, tls: cluster[1] === 'rediss', ...credentialsOf(cluster[2]) };
  return { kind: 'single', url: env.REDIS_URL };
}

/** `user:password`, `:password` or `password` of a URL's user info. */
function credentialsOf(userinfo: string | undefined): { username?: string; password?: string } {
  if (!userinfo) return {};
  const colon = userinfo.indexOf(':');
  const username = colon < 0 ? '' : decodeURIComponent(userinfo.slice(0, colon));
  const password = decodeURIComponent(colon < 0 ? userinfo : userinfo.slice(colon + 1));
  return { ...(username ? { username } : {}), ...(password ? { password } : {}) };
}

/** Why REDIS_URL cannot be used (or null): a redis://, rediss:// or redis+cluster:// URL. */
export function redisUrlProblem(url: string): string | null {
  if (/^rediss?:\/\//.test(url)) return null;
  const cluster = /^rediss?\+cluster:\/\/(?:[^@/]*@)?([^/?#]*)/.exec(url);
  if (!cluster) return 'must be a redis://, rediss:// or redis+cluster:// URL';
  const { errors } = parseClusterNodes(cluster[1]!);
  return errors.length ? `redis+cluster:// ${errors.join('; ')}` : null;
}

/** Host and port(s) of a target, for messages (never the password). */
export function describeRedisTarget(target: RedisTarget): string {
  if (target.kind === 'cluster') return `the Redis Cluster at ${target.nodes.map((n) => `${n.host}:${n.port}`).join(',')}`;
  try {
    const u = new URL(target.url);
    return `${u.hostname}:${u.port || 6379}`;
  } catch {
    return 'REDIS_URL';
  }
}

/**
 * BullMQ needs maxRetriesPerRequest: null; request/response callers want fast failure instead.
 * On a cluster the same options apply to each node's connection; commands to a slot whose master
 * is failing over are retried by the cluster client (MOVED, CLUSTERDOWN, a closed connection)
 * until its replica has taken over or `maxRedirections` is spent.
 */
export function createRedis(target: RedisTarget | string, options: RedisOptions = {}): Redis {
  const resolved: RedisTarget = typeof target === 'string' ? { kind: 'single', url: target } : target;
  const base = { lazyConnect: true, enableOfflineQueue: true, maxRetriesPerRequest: 2, ...options };
  let client: Redis;
  if (resolved.kind === 'single') client = new SingleRedis(resolved.url, base);
  else {
    const { lazyConnect, enableOfflineQueue, enableAutoPipelining, retryStrategy, ...nodeOptions } = base;
    client = new Cluster(resolved.nodes, {
      lazyConnect,
      enableOfflineQueue,
      enableAutoPipelining,
      // null from the caller's strategy (give up at once) holds for the whole cluster too
      ...(retryStrategy ? { clusterRetryStrategy: (times: number) => retryStrategy(times) ?? null } : {}),
      redisOptions: {
        ...nodeOptions,
        ...(resolved.username ? { username: resolved.username } : {}),
        ...(resolved.password ? { password: resolved.password } : {}),
        ...(resolved.tls ? { tls: {} } : {}),
      },
    });
  }
  client.on('error', () => undefined); // reported through /health; ioredis reconnects by itself
  return client;
}

/** A second connection to the same Redis (a subscriber, a blocking connection). */
export function duplicateRedis(client: Redis): Redis {
  const copy: Redis = client instanceof Cluster ? client.duplicate() : client.duplicate();
  copy.on('error', () => undefined);
  return copy;
}

export function isCluster(client: Redis): client is Cluster {
  return client instanceof Cluster;
}

/**
 * Every key that starts with `prefix`, from every master (on a cluster each master holds only
 * its own slots, so one SCAN of one node would miss the others' keys). For cleanup and tools,
 * never on a request's path.
 */
export async function keysWithPrefix(client: Redis, prefix: string): Promise<string[]> {
  if (client instanceof Cluster) {
    // a client that has not sent a command since a failover still has the old slot map
    await new Promise<void>((resolve, reject) => client.refreshSlotsCache((err) => (err ? reject(err) : resolve())));
  }
  const servers = client instanceof Cluster ? slotOwners(client) : [client];
  const pattern = `${prefix.replace(/[*?[\]\\]/g, '\\$&')}*`;
  const keys: string[] = [];
  for (const server of servers) {
    let cursor = '0';
    do {
      const [next, batch] = await server.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
      keys.push(...batch);
      cursor = next;
    } while (cursor !== '0');
  }
  return keys;
}

/** The masters that serve slots now (a failed master's connection may linger in the pool). */
function slotOwners(cluster: Cluster): SingleRedis[] {
  const owners = new Set(cluster.slots.map((nodes) => nodes?.[0]).filter((key): key is string => key !== undefined));
  return cluster.nodes('master').filter((node) => owners.has(`${node.options.host}:${node.options.port}`));
}

/** Deletes keys one slot at a time (a multi-key DEL must stay within one slot on a cluster). */
export async function deleteKeys(client: Redis, keys: string[]): Promise<number> {
  if (keys.length === 0) return 0;
  if (!(client instanceof Cluster)) return client.del(...keys);
  const deleted = await Promise.all(keys.map((k) => client.del(k)));
  return deleted.reduce((a, b) => a + b, 0);
}
