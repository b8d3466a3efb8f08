'use strict';
/**
 * `node -r @corp/perf-agent/register app.js` starts the agent from `PERF_AGENT_*` with no code
 * change. A misconfiguration never breaks the app's startup: it warns once on stderr.
 */
const { isMainThread } = require('node:worker_threads');

if (isMainThread) {
  try {
    require('./index.js').start();
  } catch (err) {
    const msg = String(err && err.message ? err.message : err).replace(/^perf-agent: /, '');
    process.stderr.write(`[perf-agent] not started: ${msg}\n`);
  }
}
