/**
 * treecast's static file server for the publish directory: ostree HTTP
 * pulls, iPXE scripts, kickstarts, artifacts and the browsable index.
 */
export { startServer } from './server.js';
export type { RunningServer, ServeOptions } from './server.js';
export { lookupMime, DEFAULT_MIME } from './mime.js';
