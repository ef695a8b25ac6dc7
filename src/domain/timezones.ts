const SUPPORTED = new Set<string>([...Intl.supportedValuesOf('timeZone'), 'UTC', 'Etc/UTC']);

/** True for IANA zone names (canonical or link, e.g. "Asia/Calcutta"); offsets like "+05:30" are not zones. */
export function isIanaTimeZone(name: string): boolean {
  if (SUPPORTED.has(name)) return true;
  if (!/^[A-Za-z][A-Za-z0-9_+-]*(\/[A-Za-z0-9_+-]+){0,2}$/.test(name)) return false;
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: name });
    return true;
  } catch {
    return false;
  }
}
