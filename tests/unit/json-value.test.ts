import fc from 'fast-check';
import { z } from 'zod';
import { boundedJson, jsonProblem, MAX_JSON_DEPTH } from '../../src/lib/json-value';

/** `levels` arrays, one inside the other, around `leaf`. */
function arrays(levels: number, leaf: unknown = 1): unknown {
  let value = leaf;
  for (let i = 0; i < levels; i++) value = [value];
  return value;
}

describe('jsonProblem', () => {
  it(`accepts ${MAX_JSON_DEPTH} levels and names the first container of level ${MAX_JSON_DEPTH + 1}`, () => {
    expect(jsonProblem(arrays(MAX_JSON_DEPTH))).toBeNull();
    expect(jsonProblem(arrays(MAX_JSON_DEPTH + 1))).toEqual({
      path: Array<number>(MAX_JSON_DEPTH).fill(0),
      message: `must be nested at most ${MAX_JSON_DEPTH} levels deep`,
    });
    expect(jsonProblem({ a: { b: [{}] } }, 4)).toBeNull();
    expect(jsonProblem({ a: { b: [{}] } }, 3)).toEqual({ path: ['a', 'b', 0], message: 'must be nested at most 3 levels deep' });
    expect(jsonProblem({ ok: [1], deep: [[[]]] }, 3, 2)).toEqual({ path: ['deep', 0], message: 'must be nested at most 3 levels deep' });
  });

  it('answers a million levels without recursion', () => {
    expect(jsonProblem(arrays(1_000_000))?.path).toHaveLength(MAX_JSON_DEPTH);
    expect(() => boundedJson().parse(arrays(1_000_000))).toThrow(z.ZodError);
  });

  it('refuses what JSON cannot carry, with its path', () => {
    expect(jsonProblem({ a: [1, Number.NaN] })).toEqual({ path: ['a', 1], message: 'must be a finite number' });
    expect(jsonProblem({ a: undefined })).toEqual({ path: ['a'], message: 'must be a JSON value' });
    expect(jsonProblem({ a: new Date(0) })).toEqual({ path: ['a'], message: 'must be a JSON value' });
  });

  it('agrees with z.json() on every JSON value within the limit', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 6 }), (value) => {
        expect(boundedJson().safeParse(value).success).toBe(z.json().safeParse(value).success);
      }),
      { numRuns: 300 },
    );
  });
});
