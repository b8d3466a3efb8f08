'use strict';
/**
 * @corp/perf-agent — the in-process agent of perf-agent.
 *
 *   const agent = require('@corp/perf-agent');
 *   agent.start({ hub: '127.0.0.1:7070', app: 'orders-api', secret: '…', labels: { role: 'worker' } });
 *   await agent.stop();
 *
 * The link to perf-hub runs on a native thread (Rust, tokio); commands run in an inspector
 * worker connected to this main thread, so they work while JavaScript is busy in a loop.
 * Nothing here keeps the process alive or throws because the hub is down.
 */
const fs = require('node:fs');
const path = require('node:path');
const os = require('node:os');
const v8 = require('node:v8');
const { Worker, isMainThread } = require('node:worker_threads');
const native = require('./binding.js');
const { SNAPSHOT_HOOK_KEY } = require('./lib/snapshot-hook.js');


function findPerf() {
  if (process.env.PERF_AGENT_PERF_BIN) return fs.existsSync(process.env.PERF_AGENT_PERF_BIN);
  return (process.env.PATH || '').split(path.delimiter).some((dir) => {
    try {
      fs.accessSync(path.join(dir, 'perf'), fs.constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

/** JS frames appear in perf stacks only with a perf map, which can't be enabled at run time. */
function hasPerfMap() {
  const flags = [...process.execArgv, ...(process.env.NODE_OPTIONS || '').split(/\s+/)];
  return flags.some((f) => f === '--perf-basic-prof' || f === '--perf-basic-prof-only-functions');
}

function capabilities() {
  const caps = native.inspectorKinds();
  if (process.platform === 'linux' && findPerf()) {
    caps.push('perf_flamegraph');
    if (hasPerfMap()) caps.push('perf_js_symbols');
  }
  return caps;
}

/**
 * The heap snapshot of a blocked process. From Node 22 on, V8 defers an inspector
 * `HeapProfiler.takeHeapSnapshot` until the main thread returns to its event loop, so a stuck
 * process could not be snapshotted that way. What still runs inside the main thread's V8
 * interrupt on every line is `Runtime.evaluate`; the worker evaluates a call of this function,
 * which has V8 write the snapshot straight into the command's private spool file (it is as safe
 * as any JS calling `v8.writeHeapSnapshot()`: an interrupt runs at a JS safepoint). It only
 * writes where the agent says a heap snapshot command is waiting, so an app that finds it can't
 * make it write anywhere else. Kept under a registered symbol, non-enumerable and read-only:
 * invisible to `Object.keys`, `for…in` and JSON, and no string-named global to collide with.
 */
function writeSnapshotForCommand(commandId) {
  const target = native.jobSnapshotTarget(String(commandId));
  if (!target.ok) return target;
  const started = process.hrtime.bigint();
  try {
    v8.writeHeapSnapshot(target.path);
  } catch (err) {
    return { ok: false, error: String((err && err.message) || err) };
  }
  return { ok: true, pauseMs: Number(process.hrtime.bigint() - started) / 1e6 };
}

function installSnapshotHook() {
  const existing = Object.getOwnPropertyDescriptor(globalThis, SNAPSHOT_HOOK_KEY);
  if (existing) return existing.value === writeSnapshotForCommand;
  try {
    Object.defineProperty(globalThis, SNAPSHOT_HOOK_KEY, {
      value: writeSnapshotForCommand,
      enumerable: false,
      writable: false,
      configurable: false,
    });
    return true;
  } catch {
    return false; // a frozen global (e.g. SES lockdown): the worker falls back to the inspector
  }
}

let worker = null;
let exitHookInstalled = false;
/** Sessions the worker has connected to this thread (shared memory, see exit hook). */
let exitState = null;
/** Longest an exit waits for the worker to disconnect its inspector sessions. */
const EXIT_WAIT_MS = 500;
let collector = null;
let beat = null;

/** JS-thread metrics (heap, event loop, GC, HTTP) and the heartbeat the stall detector watches. */
function startMetrics(intervalMs, trackHttp) {
  if (!(intervalMs > 0) || collector) return;
  const { createCollector } = require('./lib/metrics.js');
  collector = createCollector({ intervalMs, trackHttp });
  collector.start((sample) => {
    native.reportMetrics(JSON.stringify(sample));
  });
  beat = setInterval(() => native.jsBeat(), 250);
  beat.unref();
  native.jsBeat();
}

function stopMetrics() {
  if (collector) collector.stop();
  if (beat) clearInterval(beat);
  collector = null;
  beat = null;
}

function metricsInterval(options) {
  const raw = options.metricsIntervalMs ?? process.env.PERF_AGENT_METRICS_INTERVAL_MS ?? 5000;
  const ms = Number(raw);
  if (!Number.isFinite(ms) || ms < 0) throw new TypeError(`perf-agent: bad metrics interval '${raw}'`);
  if (options.metrics === false || process.env.PERF_AGENT_METRICS === '0') return 0;
  return ms === 0 ? 0 : Math.max(ms, 1000);
}

function stringLabels(labels) {
  if (labels == null) return undefined;
  if (typeof labels !== 'object') throw new TypeError('perf-agent: labels must be an object of strings');
  const out = {};
  for (const [k, v] of Object.entries(labels)) out[k] = String(v);
  return out;
}

function spoolMaxMb(options) {
  const raw = options.spoolMaxMb ?? process.env.PERF_AGENT_SPOOL_MAX_MB;
  if (raw == null || raw === '') return undefined;
  const mb = Number(raw);
  if (!Number.isInteger(mb) || mb < 1 || mb > 4194303) throw new TypeError(`perf-agent: bad spool size limit '${raw}' (MiB, 1-4194303)`);
  return mb;
}

/**
 * `tls: true | { ca, servername }` over `PERF_AGENT_TLS_CA` (a CA file: implies TLS),
 * `PERF_AGENT_TLS=1` (system roots) and `PERF_AGENT_TLS_SERVERNAME`. The option wins when given
 * (`false` turns TLS off). A CA file that can't be read is not thrown: the link reports it in
 * `status().lastError` and retries, never falling back to plaintext.
 */
function tlsOptions(options) {
  const env = process.env;
  let tls = options.tls;
  if (tls === undefined) {
    if (env.PERF_AGENT_TLS_CA) tls = { ca: env.PERF_AGENT_TLS_CA };
    else if (env.PERF_AGENT_TLS === '1' || env.PERF_AGENT_TLS === 'true') tls = true;
    else return {};
  }
  if (tls === false || tls === null) return {};
  if (tls === true) tls = {};
  if (typeof tls !== 'object' || Array.isArray(tls)) throw new TypeError('perf-agent: tls must be true, false or { ca, servername }');
  const { ca, servername = env.PERF_AGENT_TLS_SERVERNAME || undefined } = tls;
  if (ca !== undefined && (typeof ca !== 'string' || ca === '')) throw new TypeError('perf-agent: tls.ca must be the path of a PEM file');
  if (servername !== undefined && (typeof servername !== 'string' || servername === '')) throw new TypeError('perf-agent: tls.servername must be a host name');
  return { tls: true, tlsCa: ca === undefined ? undefined : path.resolve(ca), tlsServername: servername };
}

/** Options merged over `PERF_AGENT_*` environment variables. */
function resolveOptions(options = {}) {
  const env = process.env;
  return {
    hub: String(options.hub ?? env.PERF_AGENT_HUB ?? ''),
    app: String(options.app ?? env.PERF_AGENT_APP ?? ''),
    secret: String(options.secret ?? env.PERF_AGENT_SECRET ?? ''),
    labelsText: env.PERF_AGENT_LABELS || undefined,
    labels: stringLabels(options.labels),
    hostname: os.hostname(),
    nodeVersion: process.version,
    capabilities: capabilities(),
    perfHelper: [process.execPath, path.join(__dirname, 'lib', 'perf-helper.js')],
    spoolDir: options.spoolDir ?? env.PERF_AGENT_SPOOL_DIR ?? undefined,
    spoolMaxMb: spoolMaxMb(options),
    metricsIntervalMs: metricsInterval(options),
    ...tlsOptions(options),
  };
}

/**
 * The inspector worker lives as long as the process (a Worker that exits while an inspector
 * session is attached can abort Node 20), is unref'd so it never keeps the process alive, and
 * gets its listeners before unref() (a listener added after re-refs it).
 */
function ensureWorker() {
  if (worker) {
    worker.postMessage('register');
    return;
  }
  exitState = new Int32Array(new SharedArrayBuffer(4));
  const snapshotHook = installSnapshotHook();
  worker = new Worker(path.join(__dirname, 'lib', 'inspector-worker.js'), {
    name: 'perf-agent-inspector',
    workerData: { bindingPath: require.resolve('./binding.js'), exitState: exitState.buffer, snapshotHook },
    // Don't inherit -r preloads or --inspect flags of the app.
    execArgv: [],
    stdout: false,
    stderr: false,
  });
  worker.on('error', (err) => {
    process.emitWarning(`perf-agent: inspector worker failed: ${err && err.message}`);
    worker = null;
  });
  worker.on('exit', () => {
    worker = null;
  });
  worker.unref();
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    // Disconnect inspector sessions so exit doesn't wait "for the debugger to disconnect".
    // The worker runs on its own thread, so this thread can block briefly (bounded) until it
    // has done so — only when a session is connected at all.
    process.on('exit', () => {
      if (!worker || !exitState) return;
      worker.postMessage('main-exiting');
      const deadline = Date.now() + EXIT_WAIT_MS;
      let connected;
      while ((connected = Atomics.load(exitState, 0)) > 0 && Date.now() < deadline) {
        Atomics.wait(exitState, 0, connected, deadline - Date.now());
      }
    });
  }
}

/**
 * Starts the agent (idempotent). Throws only for missing or invalid options, never because
 * the hub can't be reached: the link retries with backoff in the background.
 * @returns {boolean} true if this call started it
 */
function start(options = {}) {
  if (!isMainThread) return false;
  const resolved = resolveOptions(options);
  const started = native.start(resolved);
  ensureWorker();
  if (started) startMetrics(resolved.metricsIntervalMs, options.metricsHttp !== false && process.env.PERF_AGENT_METRICS_HTTP !== '0');
  return started;
}

/** Stops the agent: says goodbye to the hub and stops its thread. */
async function stop() {
  stopMetrics();
  return native.stop();
}

/** `{ running, connected, processId, lastError, connects }` */
function status() {
  return native.status();
}

module.exports = { start, stop, status };
