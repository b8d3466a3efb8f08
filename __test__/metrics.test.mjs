// Process metrics end to end: real apps send figures through the agent; the hub stores,
// serves and exports them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { startHub, startApp, api, hubEnv, processByPid, waitFor, cleanup, TOKEN, hubFixture } from './helpers.mjs';

const parsePrometheus = createRequire(import.meta.url)('parse-prometheus-text-format');
const FAST = { PERF_AGENT_METRICS_INTERVAL_MS: '1000' };
const fx = hubFixture({ baseEnv: FAST });
const app = (env = {}) => fx.app({ env });

const metrics = async (p, since = 0) => (await api(fx.hub, 'GET', `/api/processes/${p.id}/metrics?since=${since}`)).body;
const withJs = (samples) => samples.filter((s) => s.js);

test('figures arrive and are plausible: heap grows with allocation, HTTP latency reflects a 50 ms handler', async () => {
  const a = await app({ HTTP: '1' });
  const p = await processByPid(fx.hub, a.child.pid);
  const port = Number((await a.waitLine(/^http /)).l.split(' ')[1]);
  const first = await waitFor('a sample with JS figures', async () => withJs(await metrics(p))[0]);
  assert.ok(first.native.process.rss_bytes > 10e6, 'RSS from /proc');
  assert.ok(first.native.host.cpu_count >= 1 && first.native.host.mem_total_bytes > 0);
  assert.ok(first.js.heap.used_bytes > 0 && first.js.heap.limit_bytes > first.js.heap.used_bytes);
  const heapBefore = first.js.heap.used_bytes;

  for (let i = 0; i < 20; i++) assert.equal((await fetch(`http://127.0.0.1:${port}/sleep?ms=50`)).status, 200);
  a.send('grow 30');
  await a.waitLine(/^grown/);
  const after = await waitFor('samples with the traffic and the growth', async () => {
    const s = withJs(await metrics(p));
    const http = s.find((x) => x.js.http_server && x.js.http_server.count > 0);
    const grown = s.find((x) => x.js.heap.used_bytes > heapBefore + 20e6);
    return http && grown && { http, grown };
  });
  assert.ok(after.http.js.http_server.latency_p50_ms >= 45 && after.http.js.http_server.latency_p50_ms < 200, JSON.stringify(after.http.js.http_server));
  assert.ok(after.http.js.http_server.status_2xx > 0);
  assert.ok(after.grown.js.heap.used_bytes > heapBefore + 20e6);
});

test('a process blocked for 3 s shows blocked during and running after, and native figures keep arriving', async () => {
  const a = await app();
  const p = await processByPid(fx.hub, a.child.pid);
  await waitFor('first sample', async () => (await metrics(p)).length > 0);
  a.send('busy 3000');
  const start = await a.waitLine(/^busy-start/);
  const during = await waitFor('blocked state', async () => {
    const r = (await api(fx.hub, 'GET', `/api/processes/${p.id}`)).body;
    return r.state === 'blocked' && r;
  }, { timeout: 3000 });
  assert.ok(during.blocked_ms >= 1000);
  await a.waitLine(/^busy-end/);
  await waitFor('running again', async () => (await api(fx.hub, 'GET', `/api/processes/${p.id}`)).body.state === 'running', { timeout: 3000 });
  const samples = await metrics(p, start.t);
  const blocked = samples.filter((s) => s.state === 'blocked');
  assert.ok(blocked.length >= 1, 'blocked samples stored');
  assert.ok(blocked.every((s) => s.native.process.rss_bytes > 0), 'RSS read while JS was stuck');
  const inLoop = samples.filter((s) => s.ts >= start.t && s.ts <= start.t + 3000);
  assert.ok(inLoop.length >= 2, `native samples kept arriving during the loop: ${inLoop.length}`);
  // The spin shows as CPU time measured while JS was stuck. A share of a core depends on what
  // else the machine runs, so the check is on CPU seconds gained across the loop's samples
  // (an idle process gains ~0; a spinning one, even sharing a loaded 2-core box, far more).
  const cpu = (s) => s.native.process.cpu_user_seconds_total;
  const gained = cpu(inLoop[inLoop.length - 1]) - cpu(inLoop[0]);
  assert.ok(gained >= 0.15, `the busy loop shows as CPU: +${gained.toFixed(2)} s user CPU between the loop's samples`);
});

test('/metrics parses as Prometheus text and carries the app label', async () => {
  const a = await app({ HTTP: '1', PERF_AGENT_LABELS: 'team=checkout' });
  const p = await processByPid(fx.hub, a.child.pid);
  await waitFor('a JS sample', async () => withJs(await metrics(p)).length > 0);
  const res = await fetch(fx.hub.url('/metrics'), { headers: { authorization: `Bearer ${TOKEN}` } });
  assert.equal(res.status, 200);
  const families = parsePrometheus(await res.text());
  const byName = Object.fromEntries(families.map((f) => [f.name, f]));
  for (const name of ['perf_process_up', 'perf_process_resident_memory_bytes', 'perf_process_heap_used_bytes', 'perf_process_cpu_seconds_total', 'perf_host_load1']) {
    assert.ok(byName[name], `${name} exported`);
  }
  const rss = byName.perf_process_resident_memory_bytes.metrics.find((m) => m.labels.pid === String(a.child.pid));
  assert.ok(rss, 'our process is there');
  assert.equal(rss.labels.app, 'orders');
  assert.equal(rss.labels.label_team, 'checkout');
  assert.ok(Number(rss.value) > 10e6);
});

test('metric history survives a fx.hub restart', async () => {
  const h = await startHub();
  const a = await startApp('app.js', { env: hubEnv(h, FAST) });
  try {
    const p = await processByPid(h, a.child.pid);
    const before = await waitFor('3 samples', async () => {
      const s = (await api(h, 'GET', `/api/processes/${p.id}/metrics?since=0`)).body;
      return s.length >= 3 && s;
    });
    await a.kill();
    await h.stop('SIGKILL');
    const h2 = await startHub({ dataDir: h.dataDir });
    try {
      const after = (await api(h2, 'GET', `/api/processes/${p.id}/metrics?since=0`)).body;
      assert.ok(after.length >= before.length, `${after.length} >= ${before.length}`);
      assert.deepEqual(after.slice(0, before.length).map((s) => s.ts), before.map((s) => s.ts));
      const listed = (await api(h2, 'GET', '/api/processes')).body.find((x) => x.id === p.id);
      assert.equal(listed.state, 'disconnected', 'kept, as disconnected');
    } finally {
      await h2.stop();
    }
  } finally {
    await a.kill();
    cleanup(h.dataDir);
  }
});

/** The series of one histogram family in Prometheus text, by process_id: {buckets: [[le, n]...], sum, count}. */
function histograms(text, name) {
  const out = new Map();
  const line = new RegExp(`^${name}_(bucket|sum|count)\\{(.*)\\} (\\S+)$`);
  for (const l of text.split('\n')) {
    const m = line.exec(l);
    if (!m) continue;
    const labels = Object.fromEntries([...m[2].matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1], x[2]]));
    const h = out.get(labels.process_id) || { buckets: [], sum: NaN, count: NaN };
    out.set(labels.process_id, h);
    if (m[1] === 'bucket') h.buckets.push([labels.le, Number(m[3])]);
    else h[m[1]] = Number(m[3]);
  }
  return out;
}

test('/metrics exports HTTP latency as cumulative histograms that add up across the workers of an app', async () => {
  const workers = [await app({ HTTP: '1' }), await app({ HTTP: '1' })];
  const procs = await Promise.all(workers.map((w) => processByPid(fx.hub, w.child.pid)));
  const ports = await Promise.all(workers.map(async (w) => Number((await w.waitLine(/^http /)).l.split(' ')[1])));
  for (const port of ports) {
    for (let i = 0; i < 10; i++) assert.equal((await fetch(`http://127.0.0.1:${port}/sleep?ms=50`)).status, 200);
  }
  // History keeps the quantiles and carries the histogram beside them.
  const hist = await waitFor('a sample with a latency histogram', async () =>
    withJs(await metrics(procs[0])).find((s) => s.js.http_server && s.js.http_server.count > 0));
  assert.ok(hist.js.http_server.latency_p50_ms >= 45, JSON.stringify(hist.js.http_server));
  assert.equal(hist.js.http_server.latency_histogram.buckets.length, 13);
  const name = 'perf_process_http_server_request_duration_seconds';
  const scrape = async () => (await fetch(fx.hub.url('/metrics'), { headers: { authorization: `Bearer ${TOKEN}` } })).text();
  const { text, ours } = await waitFor('both workers\' requests in /metrics', async () => {
    const text = await scrape();
    const ours = procs.map((p) => histograms(text, name).get(p.id));
    return ours.every((h) => h && h.count >= 10) && { text, ours };
  });
  assert.ok(parsePrometheus(text).find((f) => f.name === name && f.type === 'HISTOGRAM'), 'a histogram family');
  assert.ok(!text.includes('perf_process_http_server_latency_seconds'), 'no per-process quantile gauges any more');
  for (const h of ours) {
    assert.equal(h.buckets.length, 14, JSON.stringify(h));
    assert.equal(h.buckets.at(-1)[0], '+Inf');
    assert.equal(h.buckets.at(-1)[1], h.count, '+Inf is _count');
    assert.ok(h.buckets.every(([, n], i) => i === 0 || n >= h.buckets[i - 1][1]), `cumulative: ${JSON.stringify(h.buckets)}`);
    assert.ok(h.sum >= h.count * 0.045, `sum ${h.sum} s of ${h.count} requests of 50 ms`);
  }
  // sum by (le) across the two workers, then histogram_quantile(0.99, …)'s bucket, as PromQL does.
  const total = ours[0].buckets.map(([le], i) => [le, ours[0].buckets[i][1] + ours[1].buckets[i][1]]);
  const count = ours[0].count + ours[1].count;
  assert.equal(total.at(-1)[1], count);
  assert.equal(total.find(([le]) => le === '0.025')[1], 0, 'no request of a 50 ms handler is under 25 ms');
  const p99 = total.find(([, n]) => n >= 0.99 * count)[0];
  assert.ok(Number(p99) >= 0.05, `p99 bucket le=${p99}`);
});
