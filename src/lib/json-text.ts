/**
 * JSON texts of objects already serialized once. An analytics answer is turned into JSON for
 * the Redis cache (or parsed from it); the HTTP answer then reuses that text instead of
 * serializing the same object a second time (a year of daily points is ~25 kB). Weak: an
 * entry lives as long as its object. An object must not change after it is remembered, and
 * only an object that nothing re-shapes on the way out may be (a procedure with tRPC's output
 * parser answers a copy, which is serialized as usual).
 */
const texts = new WeakMap<object, string>();

export function rememberJson(value: unknown, text: string): void {
  if (value !== null && typeof value === 'object') texts.set(value, text);
}

/** The text remembered for this very object, if any. */
export function rememberedJson(value: unknown): string | undefined {
  return value !== null && typeof value === 'object' ? texts.get(value) : undefined;
}
