/**
 * PostgreSQL text and jsonb cannot hold NUL, and a lone surrogate is not UTF-8 (jsonb refuses
 * it; pg would store text as U+FFFD): such text is refused wherever a client sends it, naming
 * the field, instead of a 500 from the database (lookups too: a NUL in a WHERE clause fails).
 */
export const storableChars = (s: string): boolean => !s.includes('\u0000') && s.isWellFormed();
export const UNSTORABLE_MESSAGE = 'must not contain NUL or unpaired surrogate characters';
