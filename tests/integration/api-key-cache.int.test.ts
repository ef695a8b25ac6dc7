import { randomBytes } from 'node:crypto';
import { useTestApp } from '../helpers/harness';
import { ApiKeyAuthenticator } from '../../src/domain/api-keys/authenticator';
import { createApiKey } from '../../src/domain/api-keys/api-keys';
import { hashApiKey, publicPrefix } from '../../src/domain/api-keys/key-material';

const ALPHANUMERIC = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
const bogusKey = () => `tk_live_${Array.from(randomBytes(24), (b) => ALPHANUMERIC[b % 62]).join('')}`;
const bearer = (key: string) => `Bearer ${key}`;

const app = useTestApp();
let tenantId: string;
beforeAll(async () => {
  ({ tenantId } = await app.createTenant());
});

/** Revoked in the database only, with no broadcast: a cached key still passes, a looked-up one does not. */
const revokeQuietly = (id: string) => app.prisma.apiKey.update({ where: { id }, data: { revokedAt: new Date() } });

describe('ApiKeyAuthenticator caches', () => {
  it('holds at most maxKeys accepted keys, dropping the least recently used one', async () => {
    const cache = new ApiKeyAuthenticator(app.prisma, { cacheTtlMs: 60_000, usageFlushMs: 60_000, maxKeys: 3, maxRefused: 2 });
    const keys = await Promise.all([1, 2, 3, 4].map((i) => createApiKey(app.prisma, { tenantId, name: `k${i}`, role: 'read', environment: 'live' })));
    for (const k of keys.slice(0, 3)) expect((await cache.authenticate(bearer(k.key))).ok).toBe(true);
    expect(cache.cacheSizes()).toEqual({ accepted: 3, refused: 0 });
    expect((await cache.authenticate(bearer(keys[0]!.key))).ok).toBe(true); // used again: keys[1] is now the oldest
    expect((await cache.authenticate(bearer(keys[3]!.key))).ok).toBe(true); // the bound + 1st
    expect(cache.cacheSizes()).toEqual({ accepted: 3, refused: 0 });
    await revokeQuietly(keys[0]!.id);
    await revokeQuietly(keys[1]!.id);
    expect((await cache.authenticate(bearer(keys[0]!.key))).ok).toBe(true); // still cached
    expect(await cache.authenticate(bearer(keys[1]!.key))).toMatchObject({ ok: false, reason: 'revoked' }); // dropped, looked up again
  });

  it('holds refused keys apart, at most maxRefused, so random keys cannot push out accepted ones', async () => {
    const cache = new ApiKeyAuthenticator(app.prisma, { cacheTtlMs: 60_000, usageFlushMs: 60_000, maxKeys: 3, maxRefused: 2 });
    const good = await createApiKey(app.prisma, { tenantId, name: 'good', role: 'read', environment: 'live' });
    expect((await cache.authenticate(bearer(good.key))).ok).toBe(true);
    const unknown = [bogusKey(), bogusKey()];
    for (const key of unknown) expect(await cache.authenticate(bearer(key))).toMatchObject({ ok: false, reason: 'unknown' });
    expect(cache.cacheSizes()).toEqual({ accepted: 1, refused: 2 });
    const third = bogusKey(); // the bound + 1st refused key
    expect(await cache.authenticate(bearer(third))).toMatchObject({ ok: false, reason: 'unknown' });
    expect(cache.cacheSizes()).toEqual({ accepted: 1, refused: 2 });
    for (let i = 0; i < 50; i++) await cache.authenticate(bearer(bogusKey()));
    expect(cache.cacheSizes()).toEqual({ accepted: 1, refused: 2 });
    await revokeQuietly(good.id);
    expect((await cache.authenticate(bearer(good.key))).ok).toBe(true); // never pushed out by refused keys

    // the oldest refused key was dropped: issued now, it is looked up again and accepted; a cached refusal is not
    const [issuedFirst, issuedLast] = [unknown[0]!, bogusKey()];
    expect(await cache.authenticate(bearer(issuedLast))).toMatchObject({ ok: false, reason: 'unknown' });
    for (const key of [issuedFirst, issuedLast]) {
      await app.prisma.apiKey.create({ data: { tenantId, name: 'late', prefix: publicPrefix(key), keyHash: hashApiKey(key), role: 'read', environment: 'live' } });
    }
    expect((await cache.authenticate(bearer(issuedFirst))).ok).toBe(true);
    expect(await cache.authenticate(bearer(issuedLast))).toMatchObject({ ok: false, reason: 'unknown' });
  });
});
