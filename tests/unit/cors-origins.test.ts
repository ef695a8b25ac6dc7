import { loadEnv } from '../../src/env';
import { parseOrigins } from '../../src/lib/origins';

const originsOf = (spec: string) => [...parseOrigins(spec).origins];
const refusal = (spec: string) => {
  try {
    loadEnv({ CORS_ALLOWED_ORIGINS: spec });
  } catch (err) {
    return (err as Error).message;
  }
  return 'accepted';
};

describe('CORS_ALLOWED_ORIGINS', () => {
  it('is empty by default: same origin only', () => {
    expect(loadEnv({}).CORS_ALLOWED_ORIGINS).toBe('');
    expect(originsOf(loadEnv({}).CORS_ALLOWED_ORIGINS)).toEqual([]);
  });

  it('takes exact origins, comma-separated, in the spelling a browser sends', () => {
    expect(loadEnv({ CORS_ALLOWED_ORIGINS: 'https://app.example.com, http://localhost:5173' }).CORS_ALLOWED_ORIGINS).toBe(
      'https://app.example.com, http://localhost:5173',
    );
    expect(originsOf(' https://app.example.com ,http://localhost:5173,, ')).toEqual(['https://app.example.com', 'http://localhost:5173']);
    // upper case and a default port are spelled the browser's way, so they still match its Origin
    expect(originsOf('HTTPS://App.Example.COM:443,http://example.com:80,https://example.com:8443')).toEqual([
      'https://app.example.com',
      'http://example.com',
      'https://example.com:8443',
    ]);
    expect(originsOf('http://[::1]:3000,http://127.0.0.1:65535')).toEqual(['http://[::1]:3000', 'http://127.0.0.1:65535']);
  });

  it('refuses a wildcard in any form, at boot, with the reason', () => {
    for (const spec of ['*', 'https://*.example.com', 'https://app.example.com,*', 'http://*']) {
      expect([spec, refusal(spec)]).toEqual([spec, expect.stringMatching(/CORS_ALLOWED_ORIGINS: .*a wildcard is not allowed/)]);
    }
  });

  it('refuses a path, a query, a fragment and even a trailing slash', () => {
    for (const spec of ['https://app.example.com/', 'https://app.example.com/app', 'https://app.example.com?x=1', 'https://app.example.com#top']) {
      expect([spec, refusal(spec)]).toEqual([spec, expect.stringMatching(/CORS_ALLOWED_ORIGINS: .*is not an origin: write scheme:\/\/host\[:port\] with no path/)]);
    }
  });

  it('refuses a scheme other than http or https, and a missing one', () => {
    for (const spec of ['ftp://app.example.com', 'ws://app.example.com', 'file://app', 'chrome-extension://abcdef']) {
      expect([spec, refusal(spec)]).toEqual([spec, expect.stringMatching(/the scheme must be http or https/)]);
    }
    for (const spec of ['app.example.com', '//app.example.com', 'null', 'localhost:5173']) {
      expect([spec, refusal(spec)]).toEqual([spec, expect.stringMatching(/is not an origin/)]);
    }
  });

  it('refuses a bad host or port, and credentials', () => {
    // 65535 is the last port; one past it is refused
    expect(refusal('https://app.example.com:65535')).toBe('accepted');
    expect(refusal('https://app.example.com:65536')).toMatch(/host or port is not valid/);
    expect(refusal('https://app example.com')).toMatch(/is not an origin/);
    expect(refusal('https://user:secret@app.example.com')).toMatch(/no user name or password/);
  });

  it('names every bad entry of a list at once', () => {
    const message = refusal('https://ok.example.com,*,https://x.example.com/path');
    expect(message).toMatch(/"\*"/);
    expect(message).toMatch(/"https:\/\/x\.example\.com\/path"/);
    expect(message).not.toMatch(/ok\.example\.com/);
  });
});
