import { createHash } from 'node:crypto';
import type { Redis } from '../../lib/redis';
import { LEASE_CAP_SHARE, LEASE_ROOM_SHARE } from './leases';

/**
 * Check-and-increment for every counter a set of events touches, atomically. Values are
 * integers (millionths of a unit).
 * KEYS: the counters. ARGV, in three parts:
 *  - returns (unused quota of retired leases, taken off first): their number and, per return:
 *    amount, number of its counters, their KEYS indexes;
 *  - events: their number and, per event: quantity, number of its counters, and per counter its
 *    KEYS index and cap (-1 = no hard cap);
 *  - lease requests (judged after the events): their number and, per request: the most and the
 *    least worth granting, the unit (a lease is a whole number of them), number of its counters,
 *    and per counter its KEYS index and cap.
 * A missing counter stops the script before anything is written: it answers
 * {0, missing indexes} and the caller rebuilds those from PostgreSQL.
 * Otherwise events are judged in order: one that would pass any cap is refused and adds
 * nothing. A lease gets the most asked for, but no more than 1/16 of the room left under any
 * hard cap nor 1/32 of that cap, or nothing when that is under the least worth granting.
 * Answer: {1, per event: admitted (1/0), then each counter's value before it, per lease request:
 * the amount granted, then each counter's value before it}.
 */
export const RESERVE_LUA = `
local nkeys = #KEYS
local vals = {}
local missing = {}
for i = 1, nkeys do
  local v = redis.call('GET', KEYS[i])
  if not v then missing[#missing + 1] = i else vals[i] = tonumber(v) end
end
if #missing > 0 then return {0, missing} end
local out = {1}
local delta = {}
local p = 1
local nreturns = tonumber(ARGV[p])
p = p + 1
for r = 1, nreturns do
  local amount = tonumber(ARGV[p])
  local nk = tonumber(ARGV[p + 1])
  p = p + 2
  for j = 0, nk - 1 do
    local k = tonumber(ARGV[p + j])
    vals[k] = vals[k] - amount
    delta[k] = (delta[k] or 0) - amount
  end
  p = p + nk
end
local nevents = tonumber(ARGV[p])
p = p + 1
for e = 1, nevents do
  local qty = tonumber(ARGV[p])
  local nk = tonumber(ARGV[p + 1])
  p = p + 2
  local ok = true
  for j = 0, nk - 1 do
    local k = tonumber(ARGV[p + 2 * j])
    local cap = tonumber(ARGV[p + 2 * j + 1])
    if cap >= 0 and vals[k] + qty > cap then ok = false end
  end
  out[#out + 1] = ok and 1 or 0
  for j = 0, nk - 1 do
    local k = tonumber(ARGV[p + 2 * j])
    out[#out + 1] = vals[k]
    if ok then
      vals[k] = vals[k] + qty
      delta[k] = (delta[k] or 0) + qty
    end
  end
  p = p + 2 * nk
end
local nleases = tonumber(ARGV[p] or '0')
p = p + 1
for l = 1, nleases do
  local grant = tonumber(ARGV[p])
  local least = tonumber(ARGV[p + 1])
  local unit = tonumber(ARGV[p + 2])
  local nk = tonumber(ARGV[p + 3])
  p = p + 4
  for j = 0, nk - 1 do
    local k = tonumber(ARGV[p + 2 * j])
    local cap = tonumber(ARGV[p + 2 * j + 1])
    if cap >= 0 then
      local byRoom = math.floor((cap - vals[k]) / ${LEASE_ROOM_SHARE})
      local byCap = math.floor(cap / ${LEASE_CAP_SHARE})
      if byRoom < grant then grant = byRoom end
      if byCap < grant then grant = byCap end
    end
  end
  grant = grant - grant % unit
  if grant < least then grant = 0 end
  out[#out + 1] = grant
  for j = 0, nk - 1 do
    local k = tonumber(ARGV[p + 2 * j])
    out[#out + 1] = vals[k]
    if grant > 0 then
      vals[k] = vals[k] + grant
      delta[k] = (delta[k] or 0) + grant
    end
  end
  p = p + 2 * nk
end
for k, d in pairs(delta) do if d ~= 0 then redis.call('INCRBY', KEYS[k], d) end end
return out
`;

/** Gives back reservations; a counter that has gone (expired, flushed) is left to be rebuilt. */
export const RELEASE_LUA = `
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('DECRBY', KEYS[i], ARGV[i]) end
end
return 1
`;

const sha = (script: string) => createHash('sha1').update(script).digest('hex');
const SHAS = new Map([RESERVE_LUA, RELEASE_LUA].map((s) => [s, sha(s)]));

/** EVALSHA, loading the script on NOSCRIPT (a restarted Redis has forgotten it). */
export async function runScript(redis: Redis, script: string, keys: string[], args: (string | number)[]): Promise<unknown> {
  const digest = SHAS.get(script) ?? sha(script);
  try {
    return await redis.evalsha(digest, keys.length, ...keys, ...args);
  } catch (error) {
    if (!(error instanceof Error) || !error.message.includes('NOSCRIPT')) throw error;
    return redis.eval(script, keys.length, ...keys, ...args);
  }
}
