'use strict';
/**
 * lib/metrics.js: the JS-thread half of perf-agent's process metrics (issue 4).
 *
 * What only the JS thread can see (V8 heap, event loop, GC, libuv resources, HTTP traffic)
 * is collected here; RSS, CPU, load and cgroup figures come from the native thread
 * (crates/proc-metrics) so they keep flowing while JS is stuck. Zero dependencies, Node >= 18.
 *
 *   const { createCollector } = require('./lib/metrics');
 *   const c = createCollector({ intervalMs: 5000 });
 *   c.start((sample) => send(sample));   // every intervalMs; figures then reset
 *   c.snapshot();                        // the interval so far, without resetting
 *   c.stop();                            // removes every timer, observer and subscription
 *
 * Options: intervalMs (default 5000), eldResolutionMs (default 10, monitorEventLoopDelay's
 * timer), trackHttp (default true; false skips the diagnostics_channel subscriptions, whose
 * cost is ~0.2 µs per request on the dev VM, mostly two clock reads).
 *
 * Sample schema (a plain JSON object; the hub stores and exports exactly these names).
 * Units are in the names: *_bytes, *_ms. A latency or delay figure is null when nothing
 * was measured in the interval. Counters (count, errors, status_*, pause_ms) cover the
 * interval only.
 *   ts                      ms since the epoch when the sample was taken
 *   interval_ms             wall time covered (since start() or the previous sample)
 *   errors                  collector failures in the interval (the agent never throws)
 *   heap.used_bytes, heap.total_bytes, heap.limit_bytes, heap.external_bytes,
 *   heap.array_buffers_bytes, heap.malloced_bytes, heap.native_contexts,
 *   heap.detached_contexts (a leak signal)
 *   heap.spaces.<v8 space name>.{size_bytes, used_bytes, available_bytes, physical_bytes}
 *   event_loop.delay_{min,mean,p50,p99,max}_ms   monitorEventLoopDelay, as Node reports it:
 *                           the time between two timer ticks, so an idle loop shows about
 *                           resolution_ms
 *   event_loop.resolution_ms, event_loop.utilization (0..1, the ELU of the interval)
 *   gc.count, gc.pause_ms, gc.pause_max_ms
 *   gc.by_kind.{scavenge,mark_sweep_compact,incremental,weak_callbacks}.{count,pause_ms}
 *   resources.<type>        count of process.getActiveResourcesInfo() entries by type
 *                           (TCPSocketWrap, Timeout, FSReqCallback, ...)
 *   http_server             incoming requests that finished in the interval:
 *     count, status_2xx, status_3xx, status_4xx, status_5xx,
 *     latency_{mean,p50,p90,p99,max}_ms (request start to response finish),
 *     latency_histogram: { sum_ms, count, buckets: [[upper_bound_ms, cumulative_count], ...] }
 *                           the interval's timed requests in Prometheus-style buckets with the
 *                           fixed bounds HIST_BOUNDS_MS (1, 2.5, 5, ... 10000 ms); +Inf is not
 *                           listed (JSON has no Infinity): it is `count`. null when nothing
 *                           was timed, like the quantiles.
 *   http_client             outgoing node:http(s) requests: same fields plus errors;
 *                           latency is request start to response headers
 *   undici                  outgoing fetch()/undici requests: same as http_client
 *
 * The hub reads this schema through one Rust type, perf_protocol::MetricsSample
 * (crates/protocol/src/metrics_sample.rs): a field added here reaches the hub's history
 * untouched, but a figure the hub exports must be added to that type too.
 *
 * Percentiles come from a fixed log-bucket histogram (8 buckets per power of two from
 * 0.0078 ms to 35 min: 224 Uint32 counters, < 1 KB per histogram whatever the traffic).
 * A reported percentile is the bucket's geometric middle, clamped to the exact min/max, so
 * it is within ~4.5% of the true value. latency_histogram is derived exactly from the same
 * buckets: the count under bound b sums the log buckets that end at or below b, i.e. below the
 * largest log edge <= b, which is less than one log bucket (2^(1/8), ~9%) under b (6.5% at
 * most for these bounds; 1 ms is an edge and exact). So a request counted under b really took
 * less than b; one that took between that edge and b is counted under the next bound.
 */

const v8 = require('node:v8');
const dc = require('node:diagnostics_channel');
const { monitorEventLoopDelay, PerformanceObserver, performance, constants } = require('node:perf_hooks');

const DEFAULT_INTERVAL_MS = 5000;
const DEFAULT_ELD_RESOLUTION_MS = 10;

// Start time of a request, stored on the request/response object itself: one property
// write per request, no WeakMap churn, no closure per request.
const kStart = Symbol('perfAgentStart');

// ---------------------------------------------------------------------------------------
// Fixed-bucket latency histogram

const SUB_BUCKETS = 8; // per power of two: bucket width 2^(1/8) ≈ 9%
const MIN_EXP = -7; // 2^-7 ms ≈ 7.8 µs
const MAX_EXP = 21; // 2^21 ms ≈ 35 min; longer goes into the last bucket
const N_BUCKETS = (MAX_EXP - MIN_EXP) * SUB_BUCKETS;

function bucketOf(ms) {
  if (!(ms > 0)) return 0;
  const i = Math.floor((Math.log2(ms) - MIN_EXP) * SUB_BUCKETS);
  return i < 0 ? 0 : i >= N_BUCKETS ? N_BUCKETS - 1 : i;
}

function bucketMiddle(i) {
  return 2 ** ((i + 0.5) / SUB_BUCKETS + MIN_EXP);
}

function round3(x) {
  return Math.round(x * 1000) / 1000;
}

/** Upper bounds (ms) of latency_histogram; the same list is LATENCY_BUCKETS_MS in the hub. */
const HIST_BOUNDS_MS = [1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000];

/** How many log buckets (from 0) end at or below `ms` (log_bucket_cut in the protocol crate). */
function histCut(ms) {
  const k = Math.floor((Math.log2(ms) - MIN_EXP) * SUB_BUCKETS + 1e-9);
  return k < 0 ? 0 : k > N_BUCKETS - 1 ? N_BUCKETS - 1 : k;
}

const HIST_CUTS = HIST_BOUNDS_MS.map(histCut);

/** Counts, status classes and a latency histogram for one kind of request. */
class RequestStats {
  constructor(withErrors) {
    this.withErrors = withErrors;
    this.buckets = new Uint32Array(N_BUCKETS);
    this.reset();
  }

  reset() {
    this.count = 0;
    this.errors = 0;
    this.status = [0, 0, 0, 0]; // 2xx..5xx
    this.sum = 0;
    this.min = Infinity;
    this.max = 0;
    this.buckets.fill(0);
  }

  record(ms, statusCode) {
    this.count++;
    const cls = (statusCode / 100) | 0;
    if (cls >= 2 && cls <= 5) this.status[cls - 2]++;
    if (!(ms >= 0)) return; // clock oddity: counted, not timed
    this.sum += ms;
    if (ms < this.min) this.min = ms;
    if (ms > this.max) this.max = ms;
    this.buckets[bucketOf(ms)]++;
  }

  /** The p-quantile (0..1) from the buckets, clamped to the exact min and max. */
  percentile(p) {
    let timed = 0;
    for (let i = 0; i < N_BUCKETS; i++) timed += this.buckets[i];
    if (timed === 0) return null;
    const rank = Math.max(1, Math.ceil(p * timed));
    let seen = 0;
    for (let i = 0; i < N_BUCKETS; i++) {
      seen += this.buckets[i];
      if (seen >= rank) return round3(Math.min(this.max, Math.max(this.min, bucketMiddle(i))));
    }
    return round3(this.max);
  }

  /** Cumulative counts at HIST_BOUNDS_MS, from the log buckets (see the header comment). */
  histogram() {
    const buckets = new Array(HIST_BOUNDS_MS.length);
    let seen = 0;
    let i = 0;
    for (let b = 0; b < HIST_CUTS.length; b++) {
      for (; i < HIST_CUTS[b]; i++) seen += this.buckets[i];
      buckets[b] = [HIST_BOUNDS_MS[b], seen];
    }
    for (; i < N_BUCKETS; i++) seen += this.buckets[i];
    return { sum_ms: round3(this.sum), count: seen, buckets };
  }

  summary() {
    const timed = this.min !== Infinity;
    const out = { count: this.count };
    if (this.withErrors) out.errors = this.errors;
    out.status_2xx = this.status[0];
    out.status_3xx = this.status[1];
    out.status_4xx = this.status[2];
    out.status_5xx = this.status[3];
    out.latency_mean_ms = timed ? round3(this.sum / this.count) : null;
    out.latency_p50_ms = this.percentile(0.5);
    out.latency_p90_ms = this.percentile(0.9);
    out.latency_p99_ms = this.percentile(0.99);
    out.latency_max_ms = timed ? round3(this.max) : null;
    out.latency_histogram = timed ? this.histogram() : null;
    return out;
  }
}

// ---------------------------------------------------------------------------------------
// One-shot readings (no state between samples)

function readHeap() {
  const h = v8.getHeapStatistics();
  const m = process.memoryUsage();
  const spaces = {};
  for (const s of v8.getHeapSpaceStatistics()) {
    spaces[s.space_name] = {
      size_bytes: s.space_size,
      used_bytes: s.space_used_size,
      available_bytes: s.space_available_size,
      physical_bytes: s.physical_space_size,
    };
  }
  return {
    used_bytes: h.used_heap_size,
    total_bytes: h.total_heap_size,
    limit_bytes: h.heap_size_limit,
    external_bytes: m.external,
    array_buffers_bytes: m.arrayBuffers,
    malloced_bytes: h.malloced_memory,
    native_contexts: h.number_of_native_contexts,
    detached_contexts: h.number_of_detached_contexts,
    spaces,
  };
}

function readResources() {
  const out = {};
  // getActiveResourcesInfo exists from Node 17.3; older hosts just report nothing.
  if (typeof process.getActiveResourcesInfo !== 'function') return out;
  for (const type of process.getActiveResourcesInfo()) out[type] = (out[type] || 0) + 1;
  return out;
}

// ---------------------------------------------------------------------------------------
// GC

const GC_KINDS = {
  [constants.NODE_PERFORMANCE_GC_MINOR]: 'scavenge',
  [constants.NODE_PERFORMANCE_GC_MAJOR]: 'mark_sweep_compact',
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
  [constants.NODE_PERFORMANCE_GC_WEAKCB]: 'weak_callbacks',
};

function emptyGc() {
  const by_kind = {};
  for (const k of Object.values(GC_KINDS)) by_kind[k] = { count: 0, pause_ms: 0 };
  return { count: 0, pause_ms: 0, pause_max_ms: 0, by_kind };
}

function roundGc(gc) {
  gc.pause_ms = round3(gc.pause_ms);
  gc.pause_max_ms = round3(gc.pause_max_ms);
  for (const k of Object.keys(gc.by_kind)) gc.by_kind[k].pause_ms = round3(gc.by_kind[k].pause_ms);
  return gc;
}

// ---------------------------------------------------------------------------------------
// The collector

function nsToMs(ns) {
  return round3(ns / 1e6);
}

/**
 * @param {{ intervalMs?: number, eldResolutionMs?: number, trackHttp?: boolean }} [options]
 * @returns {{ start(onSample?: (sample: object) => void): void, stop(): void, snapshot(): object }}
 */
function createCollector(options = {}) {
  const intervalMs = positive(options.intervalMs, DEFAULT_INTERVAL_MS);
  const resolutionMs = positive(options.eldResolutionMs, DEFAULT_ELD_RESOLUTION_MS);
  const trackHttp = options.trackHttp !== false;

  const st = {
    running: false,
    timer: null,
    onSample: null,
    errors: 0,
    since: performance.now(),
    eld: null,
    elu: null,
    gcObserver: null,
    gc: emptyGc(),
    subscriptions: [],
    server: new RequestStats(false),
    client: new RequestStats(true),
    undici: new RequestStats(true),
  };

  // Channel handlers: created once per collector, never per request. Each catches
  // everything: a throwing diagnostics_channel subscriber would surface in the host as an
  // uncaught exception.
  const handlers = {
    'http.server.request.start'(msg) {
      try {
        msg.response[kStart] = performance.now();
      } catch {
        st.errors++;
      }
    },
    'http.server.response.finish'(msg) {
      try {
        const res = msg.response;
        const t0 = res[kStart];
        if (t0 !== undefined) st.server.record(performance.now() - t0, res.statusCode);
      } catch {
        st.errors++;
      }
    },
    'http.client.request.start'(msg) {
      try {
        msg.request[kStart] = performance.now();
      } catch {
        st.errors++;
      }
    },
    'http.client.response.finish'(msg) {
      try {
        const t0 = msg.request[kStart];
        if (t0 !== undefined) st.client.record(performance.now() - t0, msg.response.statusCode);
      } catch {
        st.errors++;
      }
    },
    'http.client.request.error'() {
      st.client.errors++;
    },
    'undici:request:create'(msg) {
      try {
        msg.request[kStart] = performance.now();
      } catch {
        st.errors++;
      }
    },
    'undici:request:headers'(msg) {
      try {
        const t0 = msg.request[kStart];
        if (t0 !== undefined) st.undici.record(performance.now() - t0, msg.response.statusCode);
      } catch {
        st.errors++;
      }
    },
    'undici:request:error'() {
      st.undici.errors++;
    },
  };

  function onGc(list) {
    try {
      for (const e of list.getEntries()) {
        const kind = GC_KINDS[e.detail ? e.detail.kind : e.kind];
        st.gc.count++;
        st.gc.pause_ms += e.duration;
        if (e.duration > st.gc.pause_max_ms) st.gc.pause_max_ms = e.duration;
        if (kind) {
          st.gc.by_kind[kind].count++;
          st.gc.by_kind[kind].pause_ms += e.duration;
        }
      }
    } catch {
      st.errors++;
    }
  }

  /** Runs one part of the sample; a failure costs that part, not the sample. */
  function part(fn, fallback) {
    try {
      return fn();
    } catch {
      st.errors++;
      return fallback;
    }
  }

  function readEventLoop() {
    const out = {
      delay_min_ms: null,
      delay_mean_ms: null,
      delay_p50_ms: null,
      delay_p99_ms: null,
      delay_max_ms: null,
      resolution_ms: resolutionMs,
      utilization: null,
    };
    const h = st.eld;
    // No tick in the interval (or not started): min would be 2^63 and mean NaN.
    if (h && h.count !== 0 && h.max > 0) {
      out.delay_min_ms = nsToMs(h.min);
      out.delay_mean_ms = nsToMs(h.mean);
      out.delay_p50_ms = nsToMs(h.percentile(50));
      out.delay_p99_ms = nsToMs(h.percentile(99));
      out.delay_max_ms = nsToMs(h.max);
    }
    if (st.elu) out.utilization = round3(performance.eventLoopUtilization(st.elu).utilization);
    return out;
  }

  /** Builds a sample of the interval so far; `reset` starts the next interval. */
  function build(reset) {
    const now = performance.now();
    const sample = {
      ts: Date.now(),
      interval_ms: round3(now - st.since),
      errors: 0,
      heap: part(readHeap, null),
      event_loop: part(readEventLoop, null),
      gc: part(() => roundGc(JSON.parse(JSON.stringify(st.gc))), emptyGc()),
      resources: part(readResources, {}),
      http_server: part(() => st.server.summary(), null),
      http_client: part(() => st.client.summary(), null),
      undici: part(() => st.undici.summary(), null),
    };
    sample.errors = st.errors;
    if (reset) part(() => resetInterval(now), undefined);
    return sample;
  }

  function resetInterval(now) {
    st.since = now;
    st.errors = 0;
    st.gc = emptyGc();
    st.server.reset();
    st.client.reset();
    st.undici.reset();
    if (st.eld) st.eld.reset();
    if (st.elu) st.elu = performance.eventLoopUtilization();
  }

  function tick() {
    const sample = build(true);
    if (!st.onSample) return;
    try {
      st.onSample(sample);
    } catch {
      st.errors++; // the consumer's bug must not become the host's crash
    }
  }

  function subscribeAll() {
    for (const [name, fn] of Object.entries(handlers)) {
      part(() => {
        // dc.subscribe (Node >= 18.7) holds the channel strongly; with channel().subscribe
        // on older versions the channel object must be kept alive by us.
        if (typeof dc.subscribe === 'function') dc.subscribe(name, fn);
        else dc.channel(name).subscribe(fn);
        st.subscriptions.push([name, fn, dc.channel(name)]);
      }, undefined);
    }
  }

  function unsubscribeAll() {
    for (const [name, fn, ch] of st.subscriptions) {
      part(() => (typeof dc.unsubscribe === 'function' ? dc.unsubscribe(name, fn) : ch.unsubscribe(fn)), undefined);
    }
    st.subscriptions = [];
  }

  function start(onSample) {
    if (st.running) return;
    st.running = true;
    st.onSample = typeof onSample === 'function' ? onSample : null;
    resetInterval(performance.now());
    part(() => {
      st.eld = monitorEventLoopDelay({ resolution: resolutionMs });
      st.eld.enable();
    }, undefined);
    part(() => {
      st.elu = performance.eventLoopUtilization();
    }, undefined);
    part(() => {
      st.gcObserver = new PerformanceObserver(onGc);
      st.gcObserver.observe({ entryTypes: ['gc'] });
    }, undefined);
    if (trackHttp) subscribeAll();
    part(() => {
      st.timer = setInterval(tick, intervalMs);
      st.timer.unref(); // metrics never keep the host alive
    }, undefined);
  }

  function stop() {
    if (!st.running) return;
    st.running = false;
    if (st.timer) clearInterval(st.timer);
    st.timer = null;
    if (st.eld) part(() => st.eld.disable(), undefined);
    st.eld = null;
    st.elu = null;
    if (st.gcObserver) part(() => st.gcObserver.disconnect(), undefined);
    st.gcObserver = null;
    unsubscribeAll();
    st.onSample = null;
  }

  function snapshot() {
    return build(false);
  }

  return { start, stop, snapshot };
}

function positive(v, dflt) {
  return typeof v === 'number' && Number.isFinite(v) && v > 0 ? v : dflt;
}

module.exports = { createCollector, RequestStats, bucketOf, N_BUCKETS, HIST_BOUNDS_MS, histCut };
