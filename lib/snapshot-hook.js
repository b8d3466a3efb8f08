'use strict';
/**
 * The key under which the main thread keeps its heap snapshot function (see index.js), and the
 * expression the inspector worker evaluates to call it. A registered symbol, so the worker can
 * name it in an expression while no string-named global exists.
 */
const SNAPSHOT_HOOK_KEY = Symbol.for('@corp/perf-agent.writeHeapSnapshot');

/** `Runtime.evaluate` expression that runs the hook for one command (the id as a JSON literal). */
function snapshotHookCall(commandId) {
  return `globalThis[Symbol.for(${JSON.stringify(SNAPSHOT_HOOK_KEY.description)})](${JSON.stringify(String(commandId))})`;
}

module.exports = { SNAPSHOT_HOOK_KEY, snapshotHookCall };
