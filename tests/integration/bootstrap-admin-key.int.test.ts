import { randomBytes } from 'node:crypto';
import { useTestApp } from '../helpers/harness';
import { ensureAdminKey } from '../../src/domain/api-keys/api-keys';
import { hashApiKey } from '../../src/domain/api-keys/key-material';

/**
 * BOOTSTRAP_ADMIN_KEY is ensured by every process at start: processes started together (the
 * topology suite's six) must all come up, with the key stored once.
 */
const app = useTestApp();

it('ensures the bootstrap admin key from many processes at once: every start succeeds, one key is stored, and it works', async () => {
  for (let round = 0; round < 5; round++) {
    const key = `tk_live_${randomBytes(24).toString('base64url').replace(/[-_]/g, '').slice(0, 26)}`;
    const starts = await Promise.allSettled(Array.from({ length: 8 }, () => ensureAdminKey(app.prisma, key)));
    expect(starts.filter((s) => s.status === 'rejected')).toEqual([]);
    expect(await app.prisma.apiKey.count({ where: { keyHash: hashApiKey(key) } })).toBe(1);
    const me = await app.call('apiKeys.me', undefined, key, { method: 'GET' });
    expect(me.status).toBe(200);
    expect([me.data.role, me.data.tenant]).toEqual(['admin', null]);
  }
});
