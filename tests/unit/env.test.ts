import { readFileSync } from 'node:fs';
import path from 'node:path';
import { ConfigError, envShape, loadEnv } from '../../src/env';
import { redisTargetOf } from '../../src/lib/redis';

describe('configuration', () => {
  it('has defaults for everything', () => {
    const env = loadEnv({});
    expect(env).toMatchObject({ PORT: 3000, ROLE: 'all', EVENT_MAX_AGE_DAYS: 35, MAX_BODY_BYTES: 1_048_576 });
  });

  it('names each bad variable', () => {
    expect(() => loadEnv({ PORT: 'eighty', ROLE: 'boss', DATABASE_URL: 'mysql://x' })).toThrow(ConfigError);
    try {
      loadEnv({ PORT: 'eighty', ROLE: 'boss', DATABASE_URL: 'mysql://x' });
    } catch (err) {
      expect((err as Error).message).toMatch(/PORT/);
      expect((err as Error).message).toMatch(/ROLE/);
      expect((err as Error).message).toMatch(/DATABASE_URL/);
    }
  });

  it('accepts every role', () => {
    for (const ROLE of ['api', 'worker', 'scheduler', 'all']) expect(loadEnv({ ROLE }).ROLE).toBe(ROLE);
  });

  it('checks PORT at its bounds', () => {
    expect(loadEnv({ PORT: '65535' }).PORT).toBe(65535);
    expect(() => loadEnv({ PORT: '65536' })).toThrow(/PORT/);
  });
});

describe('scaling settings', () => {
  it('checks QUOTA_LEASE_MAX_EVENTS at its bounds (0 turns leases off)', () => {
    expect(loadEnv({}).QUOTA_LEASE_MAX_EVENTS).toBe(256);
    expect(loadEnv({ QUOTA_LEASE_MAX_EVENTS: '0' }).QUOTA_LEASE_MAX_EVENTS).toBe(0);
    expect(() => loadEnv({ QUOTA_LEASE_MAX_EVENTS: '-1' })).toThrow(/QUOTA_LEASE_MAX_EVENTS/);
    expect(loadEnv({ QUOTA_LEASE_MAX_EVENTS: '10000' }).QUOTA_LEASE_MAX_EVENTS).toBe(10_000);
    expect(() => loadEnv({ QUOTA_LEASE_MAX_EVENTS: '10001' })).toThrow(/QUOTA_LEASE_MAX_EVENTS/);
  });

  it('checks DATABASE_READ_MAX_LAG_MS at its bounds', () => {
    expect(loadEnv({}).DATABASE_READ_MAX_LAG_MS).toBe(5000);
    expect(loadEnv({ DATABASE_READ_MAX_LAG_MS: '100' }).DATABASE_READ_MAX_LAG_MS).toBe(100);
    expect(() => loadEnv({ DATABASE_READ_MAX_LAG_MS: '99' })).toThrow(/DATABASE_READ_MAX_LAG_MS/);
    expect(loadEnv({ DATABASE_READ_MAX_LAG_MS: '3600000' }).DATABASE_READ_MAX_LAG_MS).toBe(3_600_000);
    expect(() => loadEnv({ DATABASE_READ_MAX_LAG_MS: '3600001' })).toThrow(/DATABASE_READ_MAX_LAG_MS/);
  });

  it('takes the replica and the direct connection as postgresql:// URLs, unset by default', () => {
    const defaults = loadEnv({});
    expect([defaults.DATABASE_READ_URL, defaults.DATABASE_DIRECT_URL]).toEqual([undefined, undefined]);
    const env = loadEnv({ DATABASE_READ_URL: 'postgresql://postgres@replica:5432/tally', DATABASE_DIRECT_URL: 'postgres://postgres@db:5432/tally' });
    expect(env.DATABASE_READ_URL).toBe('postgresql://postgres@replica:5432/tally');
    expect(env.DATABASE_DIRECT_URL).toBe('postgres://postgres@db:5432/tally');
    expect(() => loadEnv({ DATABASE_READ_URL: 'mysql://replica/tally' })).toThrow(/DATABASE_READ_URL/);
    expect(() => loadEnv({ DATABASE_DIRECT_URL: 'replica:5432' })).toThrow(/DATABASE_DIRECT_URL/);
  });
});

describe('Redis Cluster settings', () => {
  it('takes REDIS_CLUSTER_NODES or a redis+cluster:// REDIS_URL, and refuses what is not host:port', () => {
    expect(redisTargetOf(loadEnv({}))).toEqual({ kind: 'single', url: 'redis://127.0.0.1:6379' });
    expect(redisTargetOf(loadEnv({ REDIS_CLUSTER_NODES: '10.0.0.1:7000, redis-b:7001', REDIS_URL: 'rediss://:s3cret@ignored:6379' }))).toEqual({
      kind: 'cluster',
      nodes: [{ host: '10.0.0.1', port: 7000 }, { host: 'redis-b', port: 7001 }],
      tls: true,
      password: 's3cret',
    });
    expect(redisTargetOf(loadEnv({ REDIS_URL: 'redis+cluster://ops:pw@h1:7000,h2:7001' }))).toEqual({
      kind: 'cluster',
      nodes: [{ host: 'h1', port: 7000 }, { host: 'h2', port: 7001 }],
      tls: false,
      username: 'ops',
      password: 'pw',
    });
    expect(redisTargetOf(loadEnv({ REDIS_CLUSTER_NODES: 'h:65535' })).kind).toBe('cluster');
    expect(() => loadEnv({ REDIS_CLUSTER_NODES: 'h:65536' })).toThrow(/REDIS_CLUSTER_NODES: "h:65536" is not host:port/);
    expect(() => loadEnv({ REDIS_CLUSTER_NODES: 'h1:7000,h2' })).toThrow(/REDIS_CLUSTER_NODES/);
    expect(() => loadEnv({ REDIS_CLUSTER_NODES: ',' })).toThrow(/REDIS_CLUSTER_NODES: names no node/);
    expect(() => loadEnv({ REDIS_URL: 'redis+cluster://h1' })).toThrow(/REDIS_URL/);
    expect(() => loadEnv({ REDIS_URL: 'http://h1:6379' })).toThrow(/REDIS_URL/);
  });

  it('refuses braces in REDIS_KEY_PREFIX on a cluster only (they would pin every key to one slot)', () => {
    expect(() => loadEnv({ REDIS_CLUSTER_NODES: 'h:7000', REDIS_KEY_PREFIX: '{tally}:' })).toThrow(/REDIS_KEY_PREFIX/);
    expect(loadEnv({ REDIS_KEY_PREFIX: '{tally}:' }).REDIS_KEY_PREFIX).toBe('{tally}:');
  });
});

describe('.env.example', () => {
  it('lists every variable with its default', () => {
    const text = readFileSync(path.join(__dirname, '..', '..', '.env.example'), 'utf8');
    const listed = new Map(
      [...text.matchAll(/^#? ?([A-Z][A-Z0-9_]+)=(.*)$/gm)].map((m) => [m[1]!, m[2]!] as const),
    );
    const defaults = loadEnv({});
    for (const name of Object.keys(envShape)) {
      expect([name, listed.has(name)]).toEqual([name, true]);
      const value = (defaults as Record<string, unknown>)[name];
      if (value !== undefined) expect([name, listed.get(name)]).toEqual([name, String(value)]);
    }
  });
});
