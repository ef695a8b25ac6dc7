import { z } from 'zod';

/**
 * How deeply free JSON a client sends (event properties, license and key metadata) may
 * nest: `{}` and `[]` are one level, `{"a":[1]}` two. Recursive code over client JSON (zod's
 * z.json(), JSON.stringify, canonical hashing) runs out of stack somewhere past a few
 * thousand levels, which an 8 KB value reaches; 32 is far beyond what metadata needs.
 */
export const MAX_JSON_DEPTH = 32;

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

export interface JsonProblem {
  /** Where, below the value checked: keys and array indexes. */
  path: (string | number)[];
  message: string;
}

interface Pending {
  value: unknown;
  depth: number;
  parent: Pending | null;
  key: string | number | null;
}

function pathOf(entry: Pending): (string | number)[] {
  const path: (string | number)[] = [];
  for (let at: Pending | null = entry; at && at.key !== null; at = at.parent) path.push(at.key);
  return path.reverse();
}

function isPlainObject(value: object): boolean {
  const proto = Object.getPrototypeOf(value) as unknown;
  return proto === Object.prototype || proto === null;
}

/**
 * What makes `value` something other than JSON nested at most `maxDepth` levels (containers
 * below `value` counted from `depth`, the level `value` itself is at), or null. Iterative,
 * with the depth checked before a container's children are looked at: any depth, however
 * large, is answered without recursion and in time bounded by the part within the limit.
 */
export function jsonProblem(value: unknown, maxDepth = MAX_JSON_DEPTH, depth = 1): JsonProblem | null {
  const stack: Pending[] = [{ value, depth, parent: null, key: null }];
  while (stack.length > 0) {
    const entry = stack.pop()!;
    const v = entry.value;
    if (v === null || typeof v === 'string' || typeof v === 'boolean') continue;
    if (typeof v === 'number') {
      if (!Number.isFinite(v)) return { path: pathOf(entry), message: 'must be a finite number' };
      continue;
    }
    if (typeof v !== 'object' || (!Array.isArray(v) && !isPlainObject(v))) {
      return { path: pathOf(entry), message: 'must be a JSON value' };
    }
    if (entry.depth > maxDepth) {
      return { path: pathOf(entry), message: `must be nested at most ${maxDepth} levels deep` };
    }
    if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) stack.push({ value: v[i], depth: entry.depth + 1, parent: entry, key: i });
    } else {
      const keys = Object.keys(v);
      for (let i = keys.length - 1; i >= 0; i--) {
        const key = keys[i]!;
        stack.push({ value: (v as Record<string, unknown>)[key], depth: entry.depth + 1, parent: entry, key });
      }
    }
  }
  return null;
}

/**
 * Any JSON value nested at most MAX_JSON_DEPTH levels, in place of z.json() (which recurses
 * and so overflows the stack on deep input). `depth` is the level the value sits at: 2 for a
 * value inside an object that counts as level 1. A refusal stops the parse there, so no
 * refinement after it (JSON.stringify for a size) sees the deep value.
 */
export function boundedJson(depth = 1): z.ZodType<JsonValue> {
  return z.custom<JsonValue>().superRefine((value, ctx) => {
    const problem = jsonProblem(value, MAX_JSON_DEPTH, depth);
    if (problem) ctx.addIssue({ code: 'custom', message: problem.message, path: problem.path, continue: false });
  });
}

/** A JSON object of keys of at most `maxKeyLength` characters to bounded JSON values; it is level 1. */
export function boundedJsonObject(maxKeyLength: number) {
  return z.record(z.string().max(maxKeyLength), boundedJson(2));
}
