import { createHash, randomBytes } from 'node:crypto';

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
/** 24 base62 characters: about 143 bits of randomness. */
const SECRET_LENGTH = 24;
/** Shown in lists and logs: `tk_live_` plus the first 8 characters of the secret. */
const PREFIX_SECRET_CHARS = 8;

export type KeyEnvironment = 'live' | 'test';

export const API_KEY_PATTERN = /^tk_(live|test)_[A-Za-z0-9]{22,128}$/;

function randomBase62(length: number): string {
  let out = '';
  while (out.length < length) {
    for (const byte of randomBytes(length * 2)) {
      // 248 = 4 × 62: rejecting larger bytes keeps every character equally likely.
      if (byte < 248 && out.length < length) out += ALPHABET[byte % 62];
    }
  }
  return out;
}

export function hashApiKey(key: string): string {
  return createHash('sha256').update(key).digest('hex');
}

export function publicPrefix(key: string): string {
  const match = /^(tk_(?:live|test)_)/.exec(key);
  const head = match?.[1] ?? '';
  return key.slice(0, head.length + PREFIX_SECRET_CHARS);
}

export function environmentOf(key: string): KeyEnvironment {
  return key.startsWith('tk_test_') ? 'test' : 'live';
}

export function generateApiKey(environment: KeyEnvironment): { key: string; prefix: string; hash: string } {
  const key = `tk_${environment}_${randomBase62(SECRET_LENGTH)}`;
  return { key, prefix: publicPrefix(key), hash: hashApiKey(key) };
}

/** The first product token of a User-Agent header, e.g. "tally-node/1.4.2". */
export function sdkVersionFromUserAgent(userAgent: string | undefined): string | undefined {
  const token = userAgent?.trim().split(/\s+/)[0];
  return token && /^[\w.@-]+\/[\w.+-]+$/.test(token) ? token.slice(0, 100) : undefined;
}
