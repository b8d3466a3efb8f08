// Tests of lib/metrics.js against real traffic, real GC and a really blocked event loop.
// Run: node --test __test__/metrics-collector.test.mjs   (no flags needed)

import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

const require = createRequire(import.meta.url);
const metricsPath = fileURLToPath(new URL('../lib/metrics.js', import.meta.url));
const { createCollector, RequestStats, N_BUCKETS, HIST_BOUNDS_MS, histCut } = require(metricsPath);

/** A server whose handler answers after 50 ms; /404 and /500 answer at once. */
async function slowServer() {
  const server = http.createServer((req, res) => {
    if (req.url === '/404') return void res.writeHead(404).end();
    if (req.url === '/500') return void res.writeHead(500).end();
    setTimeout(() => res.end('ok'), 50);
  });
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  const url = `http://127.0.0.1:${server.address().port}`;
  const close = () =>
    new Promise((ok) => {
      server.closeAllConnections();
      server.close(ok);
    });
  return { url, close };
}

function httpGet(url) {
  return new Promise((ok, fail) => {
    http
      .get(url, (res) => {
        res.resume();
        res.on('end', () => ok(res.statusCode));
      })
      .on('error', fail);
  });
}

/** A port with nothing listening on it. */
async function closedPort() {
  const s = net.createServer();
  await new Promise((ok) => s.listen(0, '127.0.0.1', ok));
  const { port } = s.address();
  await new Promise((ok) => s.close(ok));
  return port;
}

function withCollector(fn) {
  return async () => {
    const c = createCollector({ intervalMs: 60_000 });
    c.start();
    try {
      await fn(c);
    } finally {
      c.stop();
    }
  };
}

test(
  'http server: count, status classes and latency of a 50 ms handler',
  withCollector(async (c) => {
    const srv = await slowServer();
    try {
      for (let i = 0; i < 10; i++) assert.equal(await httpGet(`${srv.url}/`), 200);
      await httpGet(`${srv.url}/404`);
      await httpGet(`${srv.url}/500`);
      const s = c.snapshot().http_server;
      assert.equal(s.count, 12);
      assert.equal(s.status_2xx, 10);
      assert.equal(s.status_4xx, 1);
      assert.equal(s.status_5xx, 1);
      assert.ok(s.latency_p50_ms >= 45, `p50 ${s.latency_p50_ms}`);
      assert.ok(s.latency_p50_ms < 500, `p50 ${s.latency_p50_ms}`);
      assert.ok(s.latency_max_ms >= s.latency_p99_ms && s.latency_p99_ms >= s.latency_p90_ms);
      assert.equal(s.errors, undefined);
      // The same requests in Prometheus-style buckets: the ten 50 ms ones are above 25 ms.
      const h = s.latency_histogram;
      assert.equal(h.count, 12);
      assert.ok(h.sum_ms >= 10 * 45, `sum ${h.sum_ms}`);
      const at = Object.fromEntries(h.buckets);
      assert.ok(at[25] <= 2, JSON.stringify(h));
      assert.equal(at[10000], 12, JSON.stringify(h));
    } finally {
      await srv.close();
    }
  }),
);

test(
  'outgoing http.get and fetch: counts, latency, errors',
  withCollector(async (c) => {
    const srv = await slowServer();
    const dead = await closedPort();
    try {
      for (let i = 0; i < 5; i++) await httpGet(`${srv.url}/`);
      for (let i = 0; i < 5; i++) await (await fetch(`${srv.url}/`)).text();
      await assert.rejects(httpGet(`http://127.0.0.1:${dead}/`));
      await assert.rejects(fetch(`http://127.0.0.1:${dead}/`));
      const s = c.snapshot();
      assert.equal(s.http_client.count, 5);
      assert.equal(s.http_client.status_2xx, 5);
      assert.equal(s.http_client.errors, 1);
      assert.ok(s.http_client.latency_p50_ms >= 45, `http p50 ${s.http_client.latency_p50_ms}`);
      assert.equal(s.undici.count, 5);
      assert.equal(s.undici.errors, 1);
      assert.ok(s.undici.latency_p50_ms >= 45, `undici p50 ${s.undici.latency_p50_ms}`);
      // The server saw both kinds of client.
      assert.equal(s.http_server.count, 10);
    } finally {
      await srv.close();
    }
  }),
);

test(
  'heap used rises when 50 MB of objects are kept alive',
  withCollector(async (c) => {
    const before = c.snapshot().heap;
    const keep = [];
    for (let i = 0; i < 50 * 1024; i++) keep.push({ i, s: 'x'.repeat(16) + i, a: new Array(100).fill(i) });
    const after = c.snapshot().heap;
    assert.ok(keep.length > 0);
    const rise = after.used_bytes - before.used_bytes;
    assert.ok(rise > 40 * 1024 * 1024, `heap rose only ${rise} bytes`);
    assert.ok(after.limit_bytes > after.total_bytes && after.total_bytes >= after.used_bytes);
    assert.ok(after.spaces.old_space.used_bytes > 0, 'per-space figures');
    assert.equal(typeof after.external_bytes, 'number');
    assert.equal(typeof after.array_buffers_bytes, 'number');
  }),
);

test(
  'GC count and pause by kind',
  withCollector(async (c) => {
    // Churn: short-lived garbage forces scavenges even without --expose-gc.
    // The objects escape into `keep`, so the optimizer cannot elide the allocations.
    let keep = [];
    for (let i = 0; i < 2_000_000; i++) {
      keep.push({ i, s: [i] });
      if (keep.length > 1000) keep = [];
    }
    if (typeof globalThis.gc === 'function') globalThis.gc();
    assert.ok(keep.length > 0);
    await sleep(50); // GC entries reach the observer asynchronously
    const gc = c.snapshot().gc;
    assert.ok(gc.count > 0, 'gc.count');
    assert.ok(gc.by_kind.scavenge.count > 0, 'scavenges');
    assert.ok(gc.pause_ms > 0 && gc.pause_max_ms > 0 && gc.pause_max_ms <= gc.pause_ms);
    const byKind = Object.values(gc.by_kind).reduce((n, k) => n + k.count, 0);
    assert.equal(byKind, gc.count);
  }),
);

test(
  'a 300 ms busy loop shows in event loop delay and utilization',
  withCollector(async (c) => {
    await sleep(30);
    const t = performance.now();
    while (performance.now() - t < 300);
    await sleep(30); // let the delay timer tick once after the block
    const el = c.snapshot().event_loop;
    assert.ok(el.delay_max_ms >= 250, `max ${el.delay_max_ms}`);
    assert.ok(el.delay_min_ms <= el.delay_p50_ms && el.delay_p50_ms <= el.delay_max_ms);
    assert.ok(el.utilization > 0.5 && el.utilization <= 1, `elu ${el.utilization}`);
  }),
);

test(
  'active resources counted by type',
  withCollector(async (c) => {
    const srv = await slowServer();
    const t = setTimeout(() => {}, 10_000);
    try {
      const r = c.snapshot().resources;
      assert.ok(r.TCPServerWrap >= 1, JSON.stringify(r));
      assert.ok(r.Timeout >= 1, JSON.stringify(r));
    } finally {
      clearTimeout(t);
      await srv.close();
    }
  }),
);

test('start(onSample) delivers JSON samples each interval, then resets', async () => {
  const c = createCollector({ intervalMs: 100 });
  const samples = [];
  const srv = await slowServer();
  try {
    c.start((s) => samples.push(s));
    await httpGet(`${srv.url}/`);
    await sleep(350);
  } finally {
    c.stop();
    await srv.close();
  }
  assert.ok(samples.length >= 2, `${samples.length} samples`);
  const total = samples.reduce((n, s) => n + s.http_server.count, 0);
  assert.equal(total, 1, 'each request is in exactly one interval');
  const idle = samples[samples.length - 1];
  assert.equal(idle.http_server.count, 0);
  assert.equal(idle.http_server.latency_p50_ms, null);
  for (const s of samples) {
    assert.deepEqual(JSON.parse(JSON.stringify(s)), s, 'plain JSON');
    assert.ok(s.interval_ms > 50 && s.interval_ms < 1000, `interval ${s.interval_ms}`);
    assert.equal(s.errors, 0);
    for (const k of ['ts', 'heap', 'event_loop', 'gc', 'resources', 'http_server', 'http_client', 'undici']) {
      assert.ok(k in s, `missing ${k}`);
    }
  }
  const n = samples.length;
  await sleep(250);
  assert.equal(samples.length, n, 'no samples after stop()');
});

test('a throwing onSample is counted, not thrown; start/stop are idempotent', async () => {
  const c = createCollector({ intervalMs: 50 });
  let calls = 0;
  let lastErrors = 0;
  c.start((s) => {
    calls++;
    lastErrors = s.errors;
    throw new Error('consumer bug');
  });
  c.start(); // no-op
  await sleep(180);
  c.stop();
  c.stop();
  assert.ok(calls >= 2);
  assert.ok(lastErrors >= 1, 'the previous throw shows as an error');
});

test('stop() removes every subscription (nothing recorded afterwards)', async () => {
  const c = createCollector({ intervalMs: 60_000 });
  c.start();
  c.stop();
  const srv = await slowServer();
  try {
    await httpGet(`${srv.url}/`);
  } finally {
    await srv.close();
  }
  const s = c.snapshot();
  assert.equal(s.http_server.count, 0);
  assert.equal(s.http_client.count, 0);
  assert.equal(s.event_loop.delay_max_ms, null);
});

test('latency histogram: bounded memory and ~5% accuracy', () => {
  const st = new RequestStats(true);
  for (let i = 1; i <= 100_000; i++) st.record(i / 100, 200); // uniform 0.01 .. 1000 ms
  const s = st.summary();
  assert.equal(st.buckets.length, N_BUCKETS);
  assert.ok(N_BUCKETS * 4 < 1024, 'under 1 KB of counters');
  const near = (got, want) => assert.ok(Math.abs(got - want) / want < 0.05, `${got} vs ${want}`);
  near(s.latency_p50_ms, 500);
  near(s.latency_p90_ms, 900);
  near(s.latency_p99_ms, 990);
  assert.equal(s.latency_max_ms, 1000);
  near(s.latency_mean_ms, 500);
  st.record(10 * 3600 * 1000, 503); // 10 h: last bucket, max still exact
  st.record(0, 200);
  st.record(NaN, 200); // counted, not timed
  assert.equal(st.summary().latency_max_ms, 10 * 3600 * 1000);
  assert.equal(st.summary().count, 100_003);
  assert.equal(st.summary().status_5xx, 1);
  st.reset();
  assert.equal(st.summary().latency_p99_ms, null);
});

test('latency histogram for Prometheus: fixed bounds derived exactly from the log buckets', () => {
  // The bounds and cuts the hub expects (LATENCY_BUCKETS_MS / log_bucket_cut in the protocol crate).
  assert.deepEqual(HIST_BOUNDS_MS, [1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000]);
  assert.deepEqual(HIST_BOUNDS_MS.map(histCut), [56, 66, 74, 82, 93, 101, 109, 119, 127, 135, 146, 154, 162]);
  const st = new RequestStats(true);
  assert.equal(st.summary().latency_histogram, null, 'null when nothing was timed, like the quantiles');
  assert.deepEqual(st.histogram(), { sum_ms: 0, count: 0, buckets: HIST_BOUNDS_MS.map((b) => [b, 0]) });
  const values = [];
  for (let i = 1; i <= 200_000; i++) values.push(i / 10); // uniform 0.1 .. 20000 ms
  for (const v of values) st.record(v, 200);
  st.record(NaN, 200); // counted, not timed: not in the histogram
  const h = st.summary().latency_histogram;
  assert.equal(h.count, values.length);
  assert.equal(h.buckets.length, HIST_BOUNDS_MS.length);
  const sum = values.reduce((a, b) => a + b, 0);
  assert.ok(Math.abs(h.sum_ms - sum) < 1, `${h.sum_ms} vs ${sum}`);
  let prev = 0;
  for (const [b, n] of h.buckets) {
    assert.ok(n >= prev && n <= h.count, `cumulative at ${b}`);
    prev = n;
    // Counted under b: every value below the largest log edge <= b, which is < 9% below b.
    const below = (x) => values.filter((v) => v < x).length;
    assert.ok(n <= below(b) + 1 && n >= below(b / 2 ** (1 / 8)), `${b}: ${n} not within one log bucket`);
  }
  assert.deepEqual(JSON.parse(JSON.stringify(h)), h, 'plain JSON');
  st.reset();
  assert.equal(st.summary().latency_histogram, null);
  st.record(0, 200); // 0 ms is timed: under the first bound
  assert.deepEqual(st.summary().latency_histogram.buckets[0], [1, 1]);
});

/** Runs a child Node with the given script; resolves with its exit code or 'timeout'. */
function runChild(script, timeoutMs = 5000) {
  return new Promise((ok) => {
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      ok({ code: 'timeout', out });
    }, timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      ok({ code, out });
    });
  });
}

test('the collector never keeps a process alive (started, and after stop)', async () => {
  const lib = JSON.stringify(metricsPath);
  const running = `
    const c = require(${lib}).createCollector({ intervalMs: 20 });
    c.start(() => {});
    setTimeout(() => console.log('ran'), 100);`;
  const stopped = `
    const http = require('http');
    const c = require(${lib}).createCollector({ intervalMs: 20 });
    c.start(() => {});
    const srv = http.createServer((q, r) => r.end('x')).listen(0, '127.0.0.1', () => {
      http.get('http://127.0.0.1:' + srv.address().port + '/', (res) => {
        res.resume();
        res.on('end', () => { c.stop(); srv.closeAllConnections(); srv.close(); console.log('stopped'); });
      });
    });`;
  const [a, b] = await Promise.all([runChild(running), runChild(stopped)]);
  assert.deepEqual(a, { code: 0, out: 'ran\n' });
  assert.deepEqual(b, { code: 0, out: 'stopped\n' });
});

test('trackHttp: false subscribes to nothing', async () => {
  const c = createCollector({ intervalMs: 60_000, trackHttp: false });
  c.start();
  const srv = await slowServer();
  try {
    await httpGet(`${srv.url}/`);
    const s = c.snapshot();
    assert.equal(s.http_server.count, 0);
    assert.equal(s.http_client.count, 0);
    assert.ok(s.heap.used_bytes > 0);
  } finally {
    c.stop();
    await srv.close();
  }
});
