const path = require('node:path');

/**
 * The SDK's sources import each other as './x.js' (what its ESM build needs, as Node's ESM loader
 * wants extensions); tests run those sources, so inside sdk/src a './x.js' that does not exist is
 * its './x.ts'. Everything else resolves as jest always does.
 */
const sdkSrc = path.resolve(__dirname, '..', '..', 'sdk', 'src') + path.sep;

module.exports = (request, options) => {
  if ((options.basedir + path.sep).startsWith(sdkSrc) && request.startsWith('./') && request.endsWith('.js')) {
    try {
      return options.defaultResolver(request, options);
    } catch {
      return options.defaultResolver(`${request.slice(0, -3)}.ts`, options);
    }
  }
  return options.defaultResolver(request, options);
};
