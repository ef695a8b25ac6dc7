import fc from 'fast-check';
import type { z } from 'zod';

/**
 * fast-check arbitraries derived from zod 4 schemas, for fuzzing the API over HTTP.
 *
 * Values are what a client can put in JSON, plus `RawJson` fragments for what a JavaScript
 * value cannot say or what would overflow the serializer of the test itself (100,000 levels
 * of nesting, `1e400`, `-0`): `toJsonText` writes them verbatim. `undefined` leaves a key out.
 *
 * Two mixes: `valid` stays near the schema (in range mostly, just past a bound sometimes) so
 * that calls reach the domain code; `hostile` also puts hostile values (deep nesting, huge
 * strings and numbers, NaN text, lone surrogates, NUL, prototype keys, wrong types, extra
 * keys) at any node.
 */
export class RawJson {
  constructor(
    readonly text: string,
    readonly label: string,
  ) {}
  toString(): string {
    return this.label;
  }
  [fc.toStringMethod](): string {
    return `RawJson(${this.label})`;
  }
}

/** JSON text of a fuzz value, RawJson fragments written as they are. */
export function toJsonText(value: unknown): string {
  if (value instanceof RawJson) return value.text;
  if (value === undefined) return 'null';
  if (Array.isArray(value)) return `[${value.map((v) => toJsonText(v)).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const parts: string[] = [];
    for (const key of Object.keys(value)) {
      const v = (value as Record<string, unknown>)[key];
      if (v !== undefined) parts.push(`${JSON.stringify(key)}:${toJsonText(v)}`);
    }
    return `{${parts.join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

/** A short description of a fuzz value for failure messages (inputs can be megabytes). */
export function describeValue(value: unknown, max = 600): string {
  let text: string;
  try {
    text = toJsonText(value);
  } catch (err) {
    text = `<unprintable: ${String(err)}>`;
  }
  return text.length <= max ? text : `${text.slice(0, max)}… (${text.length} chars)`;
}

/** An object with the given own keys, `__proto__` included as an own key (not the prototype). */
function ownObject(entries: [string, unknown][]): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  for (const [k, v] of entries) Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
  return o;
}

const nested = (open: string, leaf: string, close: string, levels: number) =>
  new RawJson(`${open.repeat(levels)}${leaf}${close.repeat(levels)}`, `${levels} levels of ${open}`);

export const PROTOTYPE_KEYS = ['__proto__', 'constructor', 'prototype'];

/** Sizes around the default 1 MB body limit (MAX_BODY_BYTES). */
const MB = 1_048_576;

/** Hostile values for any position: the fuzzer's dictionary. */
export function hostileValue(): fc.Arbitrary<unknown> {
  return fc.oneof(
    // deep nesting, within and far past any sensible depth bound
    {
      weight: 3,
      arbitrary: fc.constantFrom(33, 100, 4_000, 100_000).chain((n) =>
        fc.constantFrom(nested('[', '', ']', n), nested('{"a":', '1', '}', n), nested('[{"a":', '1', '}]', n)),
      ),
    },
    // huge strings: short of the body limit, at it, and past it (multi-byte too)
    fc.constantFrom(MB - 4_096, MB - 200, MB + 1, 2 * MB).map((n) => 'x'.repeat(n)),
    fc.constant('é'.repeat(MB / 2 + 1)),
    fc.constant('💩'.repeat(20_000)),
    // numbers JSON can carry but JavaScript rounds or cannot hold
    fc.constantFrom('1e308', '1e400', '-1e400', '-0', '1e-400', '123456789012345678901234567890', '0.1e1', '-0.0').map(
      (t) => new RawJson(t, t),
    ),
    fc.constantFrom(Number.MAX_VALUE, -Number.MAX_VALUE, Number.MIN_VALUE, 2 ** 53, 2 ** 53 + 2, -(2 ** 53) - 2, 2 ** 31, -1, 0, 0.5, 1e21),
    // numbers as text
    fc.constantFrom('NaN', 'Infinity', '-Infinity', '1e308', '1e400', '-0', '0x10', ' 1', '1_000', '1,5', '١٢', ''),
    // characters storage refuses or mangles
    fc.constantFrom('\uD800', 'a\uDFFFb', '\u0000', 'a\u0000b', '\u2028\u2029', '\uFEFFx', '%00', '\\u0000', '\r\nX-Injected: 1'),
    // text that means something to something
    fc.constantFrom("' OR 1=1 --", '"; DROP TABLE licenses; --', '${7*7}', '{{7*7}}', '<script>alert(1)</script>', '../../../../etc/passwd', 'null', 'undefined', 'true'),
    // prototype keys as values and as keys
    fc.constantFrom(...PROTOTYPE_KEYS),
    fc.constantFrom(...PROTOTYPE_KEYS).map((k) => ownObject([[k, { polluted: true, prototype: { polluted: true } }]])),
    // wrong types
    fc.constantFrom<unknown>(null, true, false, [], {}, [null], [[]], { length: 1 }),
  );
}

export interface ArbitraryOptions {
  /** 'valid': within the schema as far as it says; 'hostile': just past its bounds, and hostile values anywhere. */
  mix: 'valid' | 'hostile';
  /** Real ids to use for uuid fields, mixed with random uuids. */
  ids: readonly string[];
  /**
   * An arbitrary for a node the schema cannot describe (a `z.custom`, a refinement that needs a
   * dictionary such as time zones), by the path of keys to it; undefined: derive it.
   */
  hint?: (path: readonly string[], schema: z.ZodType, opts: ArbitraryOptions) => fc.Arbitrary<unknown> | undefined;
}

interface Bag {
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  exclusiveMaximum?: number;
  format?: string;
  patterns?: Set<RegExp>;
  length?: number;
}

interface Def {
  type: string;
  [k: string]: any;
}

const defOf = (schema: unknown): Def => (schema as { _zod: { def: Def } })._zod.def;
/** Bounds, format and patterns of a schema, read from its checks (zod fills `_zod.bag` lazily). */
function bagOf(schema: unknown): Bag {
  const def = defOf(schema);
  const bag: Bag = {};
  if (typeof def.format === 'string') bag.format = def.format;
  if (def.pattern instanceof RegExp) bag.patterns = new Set([def.pattern]);
  for (const check of (def.checks ?? []) as { _zod: { def: Record<string, any> } }[]) {
    const c = check._zod.def;
    switch (c.check) {
      case 'min_length':
      case 'min_size':
        bag.minimum = Math.max(bag.minimum ?? 0, c.minimum);
        break;
      case 'max_length':
      case 'max_size':
        bag.maximum = Math.min(bag.maximum ?? Infinity, c.maximum);
        break;
      case 'length_equals':
        bag.minimum = bag.maximum = c.length;
        break;
      case 'greater_than':
        if (c.inclusive) bag.minimum = Math.max(bag.minimum ?? -Infinity, Number(c.value));
        else bag.exclusiveMinimum = Number(c.value);
        break;
      case 'less_than':
        if (c.inclusive) bag.maximum = Math.min(bag.maximum ?? Infinity, Number(c.value));
        else bag.exclusiveMaximum = Number(c.value);
        break;
      case 'number_format':
        bag.format = c.format;
        break;
      case 'string_format':
        if (c.format === 'regex' && c.pattern instanceof RegExp) (bag.patterns ??= new Set()).add(c.pattern);
        else bag.format ??= c.format;
        break;
      default:
        break;
    }
  }
  return bag;
}

function weighted<T>(...parts: [number, fc.Arbitrary<T>][]): fc.Arbitrary<T> {
  return fc.oneof(...parts.filter(([w]) => w > 0).map(([weight, arbitrary]) => ({ weight, arbitrary })));
}

/** Calendar dates worth a visit: DST changes, skipped days of Pacific zones, leap days, epochs. */
export const EDGE_DATES = [
  '2011-12-29', '2011-12-30', '2011-12-31', '1993-08-20', '1993-08-21', '1994-12-30', '1994-12-31',
  '2026-03-08', '2026-03-29', '2026-10-25', '2026-11-01', '2024-02-29', '2023-02-29', '2100-02-28',
  '1970-01-01', '1969-12-31', '2038-01-19', '2040-12-31', '0000-01-01', '9999-12-31', '2026-13-01', '2026-00-10',
];

const dateArb = fc.date({ min: new Date('1970-01-01T00:00:00Z'), max: new Date('2040-12-31T23:59:59Z'), noInvalidDate: true });
// recent: what live clients send (usage events may be at most 35 days old, 5 minutes ahead)
const recentDateArb = fc.oneof(
  { weight: 3, arbitrary: fc.date({ min: new Date(Date.now() - 30 * 86_400_000), max: new Date(), noInvalidDate: true }) },
  fc.date({ min: new Date(Date.now() - 120 * 86_400_000), max: new Date(Date.now() + 2 * 86_400_000), noInvalidDate: true }),
);

function isoDateArb(): fc.Arbitrary<string> {
  return weighted(
    [3, recentDateArb.map((d) => d.toISOString().slice(0, 10))],
    [2, dateArb.map((d) => d.toISOString().slice(0, 10))],
    [2, fc.constantFrom(...EDGE_DATES)],
  );
}

function isoDateTimeArb(): fc.Arbitrary<string> {
  return weighted(
    [8, recentDateArb.map((d) => d.toISOString())],
    [2, dateArb.map((d) => d.toISOString())],
    [1, fc.tuple(recentDateArb, fc.constantFrom('+14:00', '-12:00', '+05:45', '+00:00')).map(([d, z]) => d.toISOString().slice(0, 19) + z)],
    [1, fc.constantFrom(...EDGE_DATES).map((d) => `${d}T00:00:00Z`)],
  );
}

/** A string of exactly `length` UTF-16 units (varied, not only ASCII; no surrogates). */
function stringOfLength(length: number): fc.Arbitrary<string> {
  if (length <= 0) return fc.constant('');
  if (length > 300) return fc.constantFrom('a', 'é', 'Z').map((c) => c.repeat(length));
  const unit = fc.oneof(fc.constant(0x61), fc.integer({ min: 0x20, max: 0x7e }), fc.integer({ min: 0xa0, max: 0xd7ff }));
  return fc.array(unit, { minLength: length, maxLength: length }).map((codes) => String.fromCharCode(...codes));
}

function stringArb(schema: unknown, opts: ArbitraryOptions): fc.Arbitrary<unknown> {
  const bag = bagOf(schema);
  const def = defOf(schema);
  const format = (def.format as string | undefined) ?? bag.format;
  const min = bag.minimum ?? 0;
  const max = bag.maximum ?? Math.max(min, 200);
  const edge = opts.mix === 'hostile' ? 1 : 0;
  const pastBounds: [number, fc.Arbitrary<unknown>][] = [
    [edge, stringOfLength(max + 1)],
    [min > 0 ? edge : 0, stringOfLength(Math.max(0, min - 1))],
  ];
  switch (format) {
    case 'uuid':
    case 'guid':
      return weighted<unknown>(
        [opts.ids.length ? 6 : 0, fc.constantFrom(...(opts.ids.length ? opts.ids : ['']))],
        [3, fc.uuid()],
        [edge, fc.constantFrom('00000000-0000-0000-0000-000000000000', 'ffffffff-ffff-ffff-ffff-ffffffffffff')],
        [edge, fc.uuid().map((u) => u.toUpperCase())],
        [edge, fc.uuid().map((u) => u.slice(0, 35))],
      );
    case 'email':
      return weighted<unknown>([6, fc.emailAddress().filter((e) => e.length <= max)], [edge, fc.constant(`${'a'.repeat(64)}@${'b'.repeat(max)}.com`)]);
    case 'url':
      return weighted<unknown>(
        [5, fc.webUrl({ withQueryParameters: true })],
        [2, fc.constantFrom('http://127.0.0.1:9/hook', 'https://example.com/hook')],
        [edge, fc.constantFrom('javascript:alert(1)', 'file:///etc/passwd', 'http://[::1]:6379/', 'http://169.254.169.254/latest', 'http://0x7f000001/')],
        [edge, fc.constant(`https://example.com/${'a'.repeat(max)}`)],
      );
    case 'date':
      return weighted<unknown>([8, isoDateArb()], [edge, fc.constantFrom('2026-1-1', '20260101', '2026-01-01T00:00:00Z')]);
    case 'datetime':
      return weighted<unknown>([8, isoDateTimeArb()], [edge, fc.constantFrom('2026-02-30T00:00:00Z', '2026-01-01', '2026-01-01T25:00:00Z', 'yesterday')]);
    case 'ipv4':
      return fc.ipV4();
    case 'ipv6':
      return fc.ipV6();
    default:
      break;
  }
  const pattern = bag.patterns ? [...bag.patterns][0] : undefined;
  // a character storage refuses, spliced into text that is otherwise fine
  const spliced: [number, fc.Arbitrary<unknown>] = [
    4 * edge,
    fc.tuple(fc.string({ minLength: Math.max(0, min - 1), maxLength: Math.max(0, Math.min(max, 40) - 1) }), fc.constantFrom('\u0000', '\u0000', '\uD800', '\uDFFF'), fc.nat()).map(
      ([s, c, at]) => s.slice(0, at % (s.length + 1)) + c + s.slice(at % (s.length + 1)),
    ),
  ];
  if (pattern) {
    return weighted<unknown>(
      [8, fc.stringMatching(pattern).filter((s) => s.length >= min && s.length <= max)],
      [edge, fc.string({ maxLength: 70 })],
      spliced,
      ...pastBounds,
    );
  }
  return weighted<unknown>(
    [6, fc.string({ minLength: min, maxLength: Math.min(max, 300), unit: 'grapheme' }).filter((s) => s.length <= max)],
    [2, fc.string({ minLength: min, maxLength: Math.min(max, 40) })],
    [1, stringOfLength(max)],
    [min > 0 ? 1 : 0, stringOfLength(min)],
    spliced,
    ...pastBounds,
  );
}

function numberArb(schema: unknown, opts: ArbitraryOptions): fc.Arbitrary<unknown> {
  const edge = opts.mix === 'hostile' ? 1 : 0;
  const bag = bagOf(schema);
  const isInt = bag.format !== undefined && /int/.test(bag.format);
  const lo = bag.minimum ?? bag.exclusiveMinimum ?? (isInt ? Number.MIN_SAFE_INTEGER : -1e12);
  const hi = bag.maximum ?? bag.exclusiveMaximum ?? (isInt ? Number.MAX_SAFE_INTEGER : 1e12);
  const inRange = isInt
    ? fc.integer({ min: Math.max(lo, Number.MIN_SAFE_INTEGER), max: Math.min(hi, Number.MAX_SAFE_INTEGER) })
    : fc.double({ min: lo, max: hi, noNaN: true });
  const unbounded = bag.minimum === undefined && bag.exclusiveMinimum === undefined;
  return weighted<unknown>(
    [unbounded ? 2 : 6, inRange],
    // counts and quantities: what clients mostly send where the schema sets no bounds
    [unbounded ? 10 : 0, fc.oneof(fc.nat(1_000), fc.nat(1_000_000).map((n) => n / 1000))],
    [2, fc.constantFrom(lo, hi)],
    [2 * edge, fc.constantFrom(lo - 1, hi + 1, lo + 0.5, hi - 0.5)],
    [edge, fc.constantFrom(String(lo), String(hi))],
  );
}

/**
 * An arbitrary for `schema`: `path` is the chain of keys to it (for hints), `depth` guards
 * recursive schemas (z.json()).
 */
export function arbitraryFor(schema: z.ZodType, opts: ArbitraryOptions, path: readonly string[] = [], depth = 0): fc.Arbitrary<unknown> {
  const hinted = opts.hint?.(path, schema, opts);
  const derived = hinted ?? derive(schema, opts, path, depth);
  if (opts.mix === 'valid') return derived;
  return weighted([7, derived], [1, hostileValue()]);
}

function derive(schema: z.ZodType, opts: ArbitraryOptions, path: readonly string[], depth: number): fc.Arbitrary<unknown> {
  const def = defOf(schema);
  const inner = (s: unknown, p = path) => arbitraryFor(s as z.ZodType, opts, p, depth + 1);
  const edge = opts.mix === 'hostile' ? 1 : 0;
  switch (def.type) {
    case 'string':
      return stringArb(schema, opts);
    case 'number':
    case 'int':
      return numberArb(schema, opts);
    case 'bigint':
      return fc.bigInt().map((b) => new RawJson(b.toString(), b.toString()));
    case 'boolean':
      return weighted<unknown>([8, fc.boolean()], [edge, fc.constantFrom('true', 0, 1)]);
    case 'null':
      return fc.constant(null);
    case 'date':
      return isoDateTimeArb();
    case 'literal':
      return fc.constantFrom(...(def.values as unknown[]));
    case 'enum': {
      const values = Object.values(def.entries as Record<string, string | number>);
      return weighted<unknown>(
        [8, fc.constantFrom(...values)],
        [edge, fc.constantFrom(...values).map((v) => (typeof v === 'string' ? v.toUpperCase() + ' ' : -1))],
        [edge, fc.constant('')],
      );
    }
    case 'optional':
      return weighted([1, fc.constant(undefined)], [3, inner(def.innerType)]);
    case 'default':
    case 'prefault':
      return weighted([1, fc.constant(undefined)], [3, inner(def.innerType)]);
    case 'nullable':
      return weighted([1, fc.constant(null)], [4, inner(def.innerType)]);
    case 'readonly':
    case 'nonoptional':
    case 'catch':
    case 'success':
      return inner(def.innerType);
    case 'pipe':
      // The input side describes what a client sends; a transform's output is not the client's.
      return defOf(def.in).type === 'transform' ? inner(def.out) : inner(def.in);
    case 'union':
      return fc.oneof(...(def.options as unknown[]).map((o) => inner(o)));
    case 'intersection':
      return fc.tuple(inner(def.left), inner(def.right)).map(([a, b]) =>
        a && b && typeof a === 'object' && typeof b === 'object' ? { ...a, ...b } : a,
      );
    case 'array': {
      const bag = bagOf(schema);
      const min = bag.minimum ?? 0;
      const max = bag.maximum ?? 20;
      const element = inner(def.element, [...path, '[]']);
      const parts: [number, fc.Arbitrary<unknown>][] = [[8, fc.array(element, { minLength: min, maxLength: Math.min(max, Math.max(min, 8)) })]];
      if (max <= 5_000) {
        // one element past the bound, of plain values (1,001 copies of a megabyte string would be a gigabyte)
        const plain = arbitraryFor(def.element, { ...opts, mix: 'valid' }, [...path, '[]'], depth + 1);
        parts.push([edge, plain.map((e) => Array.from({ length: max + 1 }, () => e))]);
      }
      if (min > 0) parts.push([edge, fc.constant([])]);
      return weighted(...parts);
    }
    case 'tuple':
      return fc.tuple(...(def.items as unknown[]).map((item, i) => inner(item, [...path, String(i)])));
    case 'record': {
      const key = arbitraryFor(def.keyType, { ...opts, mix: 'valid' }, [...path, '{key}'], depth + 1).filter((k) => typeof k === 'string');
      const value = inner(def.valueType, [...path, '{value}']);
      return weighted(
        [6, fc.dictionary(key as fc.Arbitrary<string>, value, { maxKeys: 6 })],
        // deep nesting that still fits a size rule such as 8 KB of properties
        [2 * edge, fc.constantFrom(1_000, 4_000).map((n) => ({ a: nested('[', '', ']', n) }))],
        [edge, fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 2 }), { minKeys: 45, maxKeys: 60 })],
      );
    }
    case 'object': {
      const shape = def.shape as Record<string, unknown>;
      const fields: Record<string, fc.Arbitrary<unknown>> = {};
      for (const [k, v] of Object.entries(shape)) fields[k] = inner(v, [...path, k]);
      const record = fc.record(fields);
      if (opts.mix === 'valid') return record;
      // Extra keys: strict objects must refuse them by name, prototype keys must stay data.
      const extra = fc.option(fc.tuple(fc.constantFrom('extra', ...PROTOTYPE_KEYS), hostileValue()), { freq: 4 });
      return fc.tuple(record, extra).map(([r, e]) => (e ? ownObject([...Object.entries(r as Record<string, unknown>), e]) : r));
    }
    case 'lazy':
      return depth > 4 ? fc.jsonValue({ maxDepth: 1 }) : inner(def.getter());
    case 'transform':
    case 'custom':
    case 'unknown':
    case 'any':
    default:
      return fc.jsonValue({ maxDepth: 3 });
  }
}

/** The length of `toJsonText(value)`, counted without building it; stops past `budget`. */
export function jsonLength(value: unknown, budget = Number.MAX_SAFE_INTEGER): number {
  if (value instanceof RawJson) return value.text.length;
  if (value === undefined || value === null) return 4;
  if (typeof value === 'string') return value.length + 2;
  if (typeof value !== 'object') return String(value).length;
  let total = 2;
  const entries = Array.isArray(value) ? value.map((v) => ['', v] as const) : Object.entries(value);
  for (const [k, v] of entries) {
    total += k.length + 4 + jsonLength(v, budget - total);
    if (total > budget) return total;
  }
  return total;
}
