/**
 * `npm install` (postinstall) builds the web console's bundle when it is missing or older than
 * web/'s sources, so the first `npm start` serves it at once (npm start checks again). Without
 * Vite (an install without dev dependencies) it says so and leaves the bundle as it is.
 */
import { ensureConsoleBundle } from '../src/server/console/bundle';

const bundle = ensureConsoleBundle(process.env.CONSOLE_DIST_DIR ?? 'web/dist', (message) => console.log(message));
if (bundle.state === 'missing' || bundle.state === 'stale') console.log(`web console: ${bundle.reason}`);
