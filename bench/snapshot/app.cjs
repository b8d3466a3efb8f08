'use strict';
// Child app of bench/snapshot/run.mjs (forked with an IPC channel).
//
//   node --expose-gc --max-old-space-size=N app.cjs --mode agent|baseline --heap-mb M [--count C]
//
// Builds an object-dense heap (many small objects, arrays and strings), runs a 10 ms lag
// tracker, and then waits for the bench:
//   agent mode:    starts @corp/perf-agent (PERF_AGENT_* env) and reports `ready` once connected;
//                  the bench takes the snapshot through the hub.
//   baseline mode: on {cmd:'snapshot', file} runs v8.writeHeapSnapshot(file) and reports its time
//                  (with BENCH_START_AGENT=1 the agent is started and connected too, idle).
// {cmd:'mark'} resets the lag counters; {cmd:'report'} sends them back.
const v8 = require('node:v8');
const { performance, monitorEventLoopDelay } = require('node:perf_hooks');

function arg(name, dflt) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : dflt;
}
const mode = arg('mode', 'baseline');
const heapMb = Number(arg('heap-mb', '100'));
const fixedCount = arg('count') ? Number(arg('count')) : null;

const send = (m) => process.send && process.send(m);

// ---- the heap: buckets of small records; identical for a given record count ----
const root = [];
function makeRecord(i) {
  return {
    id: i,
    name: 'user-' + i,
    score: i * 0.5 + 0.25, // a HeapNumber for odd i
    tags: [i & 7, 'tag-' + (i % 1000)],
    meta: { parent: i >> 4, flags: null, path: '/a/' + (i % 97) },
  };
}
function buildHeap() {
  const target = heapMb * 1024 * 1024;
  let bucket = [];
  let i = 0;
  for (;;) {
    if (fixedCount !== null ? i >= fixedCount : (i % 20000 === 0 && process.memoryUsage().heapUsed >= target)) break;
    bucket.push(makeRecord(i));
    if (bucket.length === 10000) {
      root.push(bucket);
      bucket = [];
    }
    i++;
  }
  root.push(bucket);
  return i;
}

const t0 = performance.now();
const count = buildHeap();
const buildMs = performance.now() - t0;
global.gc();
global.gc();

// ---- lag tracker ----
let last = performance.now();
let maxGap = 0;
let stalledMs = 0; // sum of the parts of gaps beyond 50 ms
let gaps = []; // gaps > 100 ms: [start offset ms since mark, length ms]
let markAt = performance.now();
const hist = monitorEventLoopDelay({ resolution: 10 });
hist.enable();
const ticker = setInterval(() => {
  const now = performance.now();
  const gap = now - last;
  if (gap > maxGap) maxGap = gap;
  if (gap > 50) stalledMs += gap - 10;
  if (gap > 100 && gaps.length < 50) gaps.push([Math.round(last - markAt), Math.round(gap)]);
  last = now;
}, 10);

function mark() {
  maxGap = 0;
  stalledMs = 0;
  gaps = [];
  markAt = performance.now();
  last = markAt;
  hist.reset();
}

function report() {
  // The ticker's pending gap (if the report comes right after a stall) counts too.
  const now = performance.now();
  const pending = now - last;
  return {
    maxGapMs: Math.max(maxGap, pending),
    stalledMs,
    gaps,
    eldMaxMs: hist.max / 1e6,
    sinceMarkMs: now - markAt,
    mem: process.memoryUsage(),
  };
}

let agent = null;
process.on('message', (m) => {
  if (!m || typeof m !== 'object') return;
  if (m.cmd === 'mark') {
    mark();
    send({ type: 'marked' });
  } else if (m.cmd === 'report') {
    send({ type: 'report', ...report() });
  } else if (m.cmd === 'snapshot') {
    const s = performance.now();
    v8.writeHeapSnapshot(m.file);
    const wallMs = performance.now() - s;
    // Let the ticker see the gap before we report.
    setTimeout(() => send({ type: 'snapshot-done', wallMs }), 30);
  } else if (m.cmd === 'busy') {
    // The stuck process: spin on the main thread, no event loop, for m.ms.
    send({ type: 'busy-start' });
    const end = Date.now() + m.ms;
    let x = 0;
    while (Date.now() < end) x++;
    send({ type: 'busy-done', x });
  } else if (m.cmd === 'exit') {
    clearInterval(ticker);
    Promise.resolve(agent && agent.stop()).finally(() => process.exit(0));
  }
});

function ready() {
  send({ type: 'ready', mode, count, buildMs, heapUsed: process.memoryUsage().heapUsed, pid: process.pid });
}

if (mode === 'agent' || process.env.BENCH_START_AGENT === '1') {
  agent = require(process.env.PERF_AGENT_PKG || '@corp/perf-agent');
  agent.start({});
  const w = setInterval(() => {
    const s = agent.status();
    if (s.connected) {
      clearInterval(w);
      ready();
    }
  }, 50);
} else {
  ready();
}
// Keep alive until told to exit (the IPC channel keeps the loop alive).
