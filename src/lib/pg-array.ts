/**
 * A PostgreSQL array literal, written here rather than by pg's generic serializer (two
 * regular expressions per element): `plain` values (uuids, numbers, ISO instants, hex
 * digests) go in as they are, text is quoted and escaped only when it needs it.
 */
export function pgArray(values: readonly (string | number | null)[], plain: boolean): string;
/** The same for one field of each row, read by `get` (no array of the values in between). */
export function pgArray<T>(rows: readonly T[], plain: boolean, get: (row: T) => string | number | null): string;
export function pgArray<T>(values: readonly T[], plain: boolean, get?: (row: T) => string | number | null): string {
  let out = '{';
  for (let i = 0; i < values.length; i++) {
    const v = get ? get(values[i]!) : (values[i] as string | number | null | undefined);
    if (i > 0) out += ',';
    if (v === null || v === undefined) out += 'NULL';
    else if (plain) out += v;
    else {
      const text = String(v);
      out += `"${text.includes('\\') || text.includes('"') ? text.replace(/[\\"]/g, '\\$&') : text}"`;
    }
  }
  return `${out}}`;
}
