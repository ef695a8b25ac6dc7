import { API_KEY_PATTERN, generateApiKey, hashApiKey, publicPrefix, sdkVersionFromUserAgent } from '../../src/domain/api-keys/key-material';

describe('API key material', () => {
  it('makes tk_live_/tk_test_ keys with 24 base62 characters (over 128 bits)', () => {
    const live = generateApiKey('live');
    const test = generateApiKey('test');
    expect(live.key).toMatch(/^tk_live_[A-Za-z0-9]{24}$/);
    expect(test.key).toMatch(/^tk_test_[A-Za-z0-9]{24}$/);
    expect(24 * Math.log2(62)).toBeGreaterThan(128);
    expect(API_KEY_PATTERN.test(live.key)).toBe(true);
  });

  it('stores a SHA-256 digest and a short public prefix', () => {
    const { key, hash, prefix } = generateApiKey('live');
    expect(hash).toBe(hashApiKey(key));
    expect(hash).toMatch(/^[0-9a-f]{64}$/);
    expect(prefix).toBe(key.slice(0, 16));
    expect(publicPrefix(key)).toBe(prefix);
  });

  it('never repeats', () => {
    const keys = new Set(Array.from({ length: 10_000 }, () => generateApiKey('live').key));
    expect(keys.size).toBe(10_000);
  });

  it('reads the SDK version from the first User-Agent product', () => {
    expect(sdkVersionFromUserAgent('tally-node/1.4.2 (linux; node 20)')).toBe('tally-node/1.4.2');
    expect(sdkVersionFromUserAgent('curl/8.5.0')).toBe('curl/8.5.0');
    expect(sdkVersionFromUserAgent('garbage')).toBeUndefined();
    expect(sdkVersionFromUserAgent(undefined)).toBeUndefined();
  });
});
