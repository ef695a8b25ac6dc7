import { randomUUID } from 'node:crypto';
import { createRedis } from '../../src/lib/redis';
import { RedisRateGate, bucketKey } from '../../src/domain/billing/rate-gate';
import { useTestApp } from '../helpers/harness';

/**
 * The Stripe rate limit is per account, not per process: every worker process sending to one
 * account takes from one token bucket in Redis. Two senders here are two processes' worth of
 * parts: separate Redis connections and separate gates, sharing nothing but Redis. Rates are
 * tiny (a token per 1,000 s) so that what the bucket grants does not depend on timing.
 */
const app = useTestApp();
const url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const clients = [createRedis(url), createRedis(url)];
const prefix = `test:rate:${randomUUID()}:`;
const SLOW = 0.001; // tokens per second: one token, then nothing for 1,000 s

afterAll(async () => {
  const keys = await clients[0]!.keys(`${prefix}*`);
  if (keys.length) await clients[0]!.del(...keys);
  await Promise.all(clients.map((c) => c.quit()));
});

async function grantsOf(gates: RedisRateGate[], rounds: number): Promise<number[]> {
  const grants = gates.map(() => 0);
  for (let r = 0; r < rounds; r++) {
    for (const [i, gate] of gates.entries()) if ((await gate.tryTake()) === 0) grants[i]! += 1;
  }
  return grants;
}

it("gives two senders of one account one budget between them, and each account its own (hash-tagged keys)", async () => {
  const account = randomUUID();
  const key = bucketKey(prefix, account);
  expect(key).toBe(`${prefix}billing:stripe-rate:{${account}}`); // one Redis Cluster slot per account
  const [a, b] = [new RedisRateGate(clients[0]!, key, SLOW), new RedisRateGate(clients[1]!, key, SLOW)];
  // A per-process gate would give each sender its own token: 2. The shared bucket holds 1 (burst).
  const grants = await grantsOf([a, b], 10);
  expect(grants[0]! + grants[1]!).toBe(1);
  // the one who was refused is told how long to wait (about 1,000 s for one token), not 0
  expect(await b.tryTake()).toBeGreaterThan(100_000);

  // another account's bucket is untouched by this one's use
  const other = new RedisRateGate(clients[1]!, bucketKey(prefix, randomUUID()), SLOW);
  expect(await grantsOf([other], 5)).toEqual([1]);
});

it('pauses every sender of the account when one of them is told to wait (Retry-After)', async () => {
  const key = bucketKey(prefix, randomUUID());
  const [a, b] = [new RedisRateGate(clients[0]!, key, 1_000), new RedisRateGate(clients[1]!, key, 1_000)];
  expect(await b.tryTake()).toBe(0);
  a.pause(3_600_000);
  // pause() sends its script without waiting; a command on the same connection after it runs after it
  await clients[0]!.ping();
  const wait = await b.tryTake();
  expect(wait).toBeGreaterThan(3_000_000);
  expect(wait).toBeLessThanOrEqual(3_600_000);
});

it("is the gate the app's billing sender uses", () => {
  const gate = app.services.billing.rateGateFor?.(randomUUID(), 10);
  expect(gate).toBeInstanceOf(RedisRateGate);
});
