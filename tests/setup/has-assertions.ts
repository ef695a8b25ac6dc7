/**
 * Every test asserts something: a test whose assertions sit in a branch or a callback that never
 * ran fails instead of passing silently.
 */
beforeEach(() => {
  expect.hasAssertions();
});
