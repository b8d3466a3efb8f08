'use strict';
/**
 * The perf helper process, spawned by the agent's native thread for a `perf_flamegraph`
 * command: `node lib/perf-helper.js --pid PID --seconds N --frequency HZ --out-dir DIR`.
 * It runs `perf record`/`perf script` and folds the stacks (Rust, off this JS thread), so
 * perf's CPU and memory never land in the app. It exits if the app goes away.
 */
const native = require('../binding.js');

const parent = process.ppid;
setInterval(() => {
  try {
    process.kill(parent, 0);
  } catch {
    process.exit(3);
  }
}, 500).unref();

native.perfHelperMain(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`perf helper failed: ${err && err.message}\n`);
    process.exit(1);
  },
);
