import { Redis, type RedisOptions } from 'ioredis';

export type { Redis };

/** BullMQ needs maxRetriesPerRequest: null; request/response callers want fast failure instead. */
export function createRedis(url: string, options: RedisOptions = {}): Redis {
  const client = new Redis(url, { lazyConnect: true, enableOfflineQueue: true, maxRetriesPerRequest: 2, ...options });
  client.on('error', () => undefined); // reported through /health; ioredis reconnects by itself
  return client;
}
