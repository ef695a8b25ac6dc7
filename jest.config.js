/**
 * Two projects under one `npm test`: unit tests (pure logic, no PostgreSQL or Redis) and
 * integration, chaos and end-to-end tests, which get one migrated database per run (global setup).
 * Every test must assert something (has-assertions.ts).
 * @type {import('jest').Config}
 */
const common = {
  testEnvironment: 'node',
  transform: { '^.+\\.ts$': ['@swc/jest', { jsc: { parser: { syntax: 'typescript' }, target: 'es2022' }, module: { type: 'commonjs' } }] },
  moduleFileExtensions: ['ts', 'js', 'json'],
  resolver: '<rootDir>/tests/setup/sdk-resolver.js',
  setupFilesAfterEnv: ['<rootDir>/tests/setup/has-assertions.ts'],
};

module.exports = {
  maxWorkers: 2,
  // a global option: projects do not take it
  testTimeout: 60000,
  projects: [
    { ...common, displayName: 'unit', roots: ['<rootDir>/tests/unit'] },
    {
      ...common,
      displayName: 'integration',
      roots: ['<rootDir>/tests/integration', '<rootDir>/tests/chaos', '<rootDir>/tests/e2e'],
      globalSetup: '<rootDir>/tests/setup/global-setup.ts',
      globalTeardown: '<rootDir>/tests/setup/global-teardown.ts',
    },
  ],
};
