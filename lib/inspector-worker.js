'use strict';
/**
 * The inspector worker: receives commands from the agent's native link thread (through a
 * threadsafe function, never through the main thread) and runs them with an inspector session
 * connected to the main thread. V8 services those messages with interrupts, so they run while
 * the main thread is stuck in a JavaScript loop. Results flow back to Rust chunk by chunk.
 *
 * A process.exit() with a session still attached prints "Waiting for the debugger to
 * disconnect...": the main thread tells this worker at exit and waits (bounded) until the
 * session is gone.
 */
const { parentPort, workerData } = require('node:worker_threads');
const inspector = require('node:inspector');
const native = require(workerData.bindingPath);
const { snapshotHookCall } = require('./snapshot-hook.js');

/**
 * One long-lived session for all commands (they run one at a time): V8 forgets its heap object
 * ids whenever an inspector session disconnects, and stable ids across snapshots are what lets
 * a diff tell new objects from old ones. It is disconnected at exit (see index.js).
 */
let shared = null;

// Shared with the main thread: [0] = sessions connected; the main thread waits on it at exit.
const exitState = new Int32Array(workerData.exitState);

function setConnected() {
  Atomics.store(exitState, 0, shared ? 1 : 0);
  Atomics.notify(exitState, 0);
}

function register() {
  native.registerExecutor((jobJson) => {
    let job;
    try {
      job = JSON.parse(jobJson);
    } catch {
      return;
    }
    run(job).catch((err) => native.jobFail(job.id, `${job.kind} failed: ${err && err.message ? err.message : err}`));
  });
}

function disconnectSession() {
  if (shared) {
    try {
      shared.disconnect();
    } catch {}
  }
  shared = null;
  setConnected();
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function sharedSession() {
  if (!shared) {
    shared = new inspector.Session();
    shared.connectToMainThread();
    setConnected();
  }
  return shared;
}

const COMMAND_EVENTS = ['HeapProfiler.addHeapSnapshotChunk', 'HeapProfiler.reportHeapSnapshotProgress'];

async function run(job) {
  const session = sharedSession();
  const post = (method, params) =>
    new Promise((resolve, reject) =>
      session.post(method, params || {}, (err, res) => (err ? reject(err) : resolve(res))),
    );
  try {
    switch (job.kind) {
      case 'heap_snapshot':
        return await heapSnapshot(job, session, post);
      case 'cpu_profile':
        return await timedProfile(job, post, {
          start: async () => {
            await post('Profiler.enable');
            if (job.interval_us) await post('Profiler.setSamplingInterval', { interval: job.interval_us });
            await post('Profiler.start');
            if (job.main_blocked) await refreshOptimizedCode(post);
          },
          stop: async () => {
            const { profile } = await post('Profiler.stop');
            await post('Profiler.disable');
            return profile;
          },
        });
      case 'heap_sampling':
        return await timedProfile(job, post, {
          // Count allocations that are garbage by the end too: the question is who allocates.
          start: () =>
            post('HeapProfiler.startSampling', {
              ...(job.interval_bytes ? { samplingInterval: job.interval_bytes } : {}),
              includeObjectsCollectedByMajorGC: true,
              includeObjectsCollectedByMinorGC: true,
            }),
          stop: async () => (await post('HeapProfiler.stopSampling')).profile,
        });
      default:
        native.jobFail(job.id, `this agent cannot run ${job.kind}`);
    }
  } finally {
    for (const ev of COMMAND_EVENTS) session.removeAllListeners(ev);
  }
}

/**
 * V8's profiler can only name code it saw being created or that is attached to a function when
 * profiling starts. A loop that was OSR-compiled before that is neither, so a process stuck in
 * one long-running loop would be profiled as its caller. Switching precise coverage on and off
 * makes V8 deoptimize everything once; the stuck loop is then re-optimized under the profiler
 * and named. It costs a re-warm-up of all optimized code (measured: -9 % req/s over a 6 s
 * profile of a busy server), so it is done only when the agent saw the main thread blocked —
 * the one case where a single long-running invocation hides from the profiler; code that is
 * entered again and again is named without it.
 */
async function refreshOptimizedCode(post) {
  try {
    await post('Profiler.startPreciseCoverage', { callCount: false, detailed: false });
    await post('Profiler.stopPreciseCoverage');
  } catch {
    // Older runtimes without precise coverage: profile as is.
  }
}

async function heapSnapshot(job, session, post) {
  const usage = await post('Runtime.getHeapUsage');
  const pre = native.jobPreflight(job.id, usage.usedSize);
  if (!pre.ok) return; // refused (no memory headroom); the agent already told the hub why
  if (workerData.snapshotHook) return writtenByV8(job, post, pre.estimate);
  return streamedByInspector(job, session, post);
}

/**
 * The main thread writes the snapshot itself, inside a V8 interrupt (works while it is stuck in
 * a loop, on every Node line; see index.js). This thread stays free meanwhile and reports
 * progress from the spool file's growth against the estimated file size.
 */
async function writtenByV8(job, post, estimate) {
  const expected = Math.max(1, (estimate && estimate.file_bytes) || 0);
  const progress = setInterval(() => {
    const written = native.jobSpooledBytes(job.id);
    native.jobProgress(job.id, 'snapshot', written, Math.max(expected, written + 1));
  }, 250);
  let reply;
  try {
    reply = await post('Runtime.evaluate', { expression: snapshotHookCall(job.id), returnByValue: true, silent: true });
  } finally {
    clearInterval(progress);
  }
  const outcome = reply && reply.result && reply.result.value;
  if (reply && reply.exceptionDetails) {
    return native.jobFail(job.id, `heap snapshot failed: ${describeException(reply.exceptionDetails)}`);
  }
  if (!outcome || !outcome.ok) {
    return native.jobFail(job.id, `heap snapshot failed: ${(outcome && outcome.error) || 'no answer from the main thread'}`);
  }
  finish(job, [`JavaScript paused ${Math.round(outcome.pauseMs)} ms while V8 wrote the snapshot`]);
}

function describeException(details) {
  return (details.exception && details.exception.description) || details.text || 'exception';
}

/** Fallback when the hook could not be installed: chunks stream through this session. */
async function streamedByInspector(job, session, post) {
  let writeError = null;
  session.on('HeapProfiler.addHeapSnapshotChunk', (m) => {
    if (writeError) return;
    const err = native.jobChunk(job.id, m.params.chunk);
    if (err) writeError = err;
  });
  session.on('HeapProfiler.reportHeapSnapshotProgress', (m) => {
    native.jobProgress(job.id, 'snapshot', m.params.done, m.params.total);
  });
  await post('HeapProfiler.takeHeapSnapshot', { reportProgress: true });
  if (writeError) native.jobFail(job.id, `spooling the snapshot failed: ${writeError}`);
  else finish(job);
}

async function timedProfile(job, post, { start, stop }) {
  await start();
  const seconds = Math.max(1, job.seconds | 0);
  for (let i = 0; i < seconds; i++) {
    native.jobProgress(job.id, 'profiling', i, seconds);
    await sleep(1000);
  }
  const profile = await stop();
  const err = native.jobChunk(job.id, JSON.stringify(profile));
  if (err) native.jobFail(job.id, `spooling the profile failed: ${err}`);
  else finish(job);
}

function finish(job, notes = []) {
  const err = native.jobFinish(job.id, notes);
  if (err) process.emitWarning(`perf-agent: ${job.kind} ${job.id}: ${err}`);
}

// A listener on parentPort keeps this worker alive for the life of the process; the main
// thread unref()s the worker, so it never keeps the process alive.
parentPort.on('message', (msg) => {
  if (msg === 'main-exiting') disconnectSession();
  else if (msg === 'register') register();
});
register();
