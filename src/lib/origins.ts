/**
 * A list of web origins as an operator writes it (comma-separated, e.g.
 * `https://app.example.com, http://localhost:5173`): each entry is exactly a scheme, a host and
 * an optional port, the way a browser names an origin in its `Origin` header. Anything looser
 * (a wildcard, a path, a scheme other than http/https) is refused with the reason, so a typo
 * stops the boot instead of silently opening or closing the API to browsers.
 */
export function parseOrigins(spec: string): { origins: Set<string>; errors: string[] } {
  const origins = new Set<string>();
  const errors: string[] = [];
  for (const raw of spec.split(',').map((s) => s.trim()).filter(Boolean)) {
    if (raw.includes('*')) {
      errors.push(`"${raw}": a wildcard is not allowed; list each origin exactly (e.g. https://app.example.com)`);
      continue;
    }
    // scheme://authority and nothing after it: not even a trailing slash, which no browser sends
    const shape = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#\s]+)$/.exec(raw);
    if (!shape) {
      errors.push(`"${raw}" is not an origin: write scheme://host[:port] with no path, query or trailing slash (e.g. https://app.example.com)`);
      continue;
    }
    const scheme = shape[1]!.toLowerCase();
    if (scheme !== 'http' && scheme !== 'https') {
      errors.push(`"${raw}": the scheme must be http or https`);
      continue;
    }
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      errors.push(`"${raw}" is not an origin: the host or port is not valid`);
      continue;
    }
    if (url.username || url.password) {
      errors.push(`"${raw}": an origin carries no user name or password`);
      continue;
    }
    // URL.origin is the browser's spelling: lower-case scheme and host, default port left out
    origins.add(url.origin);
  }
  return { origins, errors };
}
