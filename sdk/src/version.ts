/** Kept equal to package.json's version by a test (the User-Agent names it). */
export const SDK_VERSION = '0.1.0';
