// Operator side of the demo: finds the demo process in perf-hub, blocks its event loop, takes a
// heap snapshot and a CPU profile while it is blocked, and prints where the results are.
import { parseArgs } from 'node:util';
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';

const { values: o } = parseArgs({
  options: { hub: { type: 'string' }, 'app-url': { type: 'string' }, 'app-pid': { type: 'string' }, 'data-dir': { type: 'string' } },
});
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function api(method, path, body) {
  const res = await fetch(o.hub + path, {
    method,
    headers: { authorization: `Bearer ${process.env.PERF_HUB_TOKEN}`, 'content-type': 'application/json' },
    body: body ? JSON.stringify(body) : undefined,
  });
  const json = await res.json().catch(() => ({}));
  if (res.status >= 400) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

async function until(what, fn, timeoutMs = 60000) {
  const t0 = Date.now();
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch {}
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

async function capture(processId, body) {
  const { artifact } = await api('POST', `/api/processes/${processId}/commands`, body);
  if (artifact.estimate) {
    const e = artifact.estimate;
    console.log(`    estimate: heap ${(e.heap_used_bytes / 1e6).toFixed(1)} MB, pause ~${e.pause_ms} ms, extra memory ~${(e.extra_memory_bytes / 1e6).toFixed(0)} MB`);
  }
  const done = await until(`${body.kind} to finish`, async () => {
    const a = await api('GET', `/api/artifacts/${artifact.id}`);
    return (a.status === 'ready' || a.status === 'failed') && a;
  }, 120000);
  if (done.status !== 'ready') throw new Error(`${body.kind} failed: ${done.error}`);
  return done;
}

const pid = Number(o['app-pid']);
const proc = await until('the demo app to connect', async () => (await api('GET', '/api/processes')).find((p) => p.pid === pid && p.connected));
console.log(`==> demo app connected: process ${proc.id} (pid ${pid}, ${proc.node_version})`);
await until('the demo app to serve', async () => (await fetch(o['app-url'] + '/')).ok);
for (let i = 0; i < 20; i++) await fetch(o['app-url'] + '/');

await fetch(o['app-url'] + '/spin?ms=15000');
await sleep(300);
console.log('==> demo app is now spinning in a 15 s busy loop (event loop blocked)');
const t0 = Date.now();
console.log('==> heap snapshot of the blocked process');
const snap = await capture(proc.id, { kind: 'heap_snapshot' });
console.log(`    ready in ${((Date.now() - t0) / 1000).toFixed(1)} s, ${snap.size} bytes, sha256 ${snap.sha256.slice(0, 16)}…`);
console.log('==> 3 s CPU profile of the blocked process');
const prof = await capture(proc.id, { kind: 'cpu_profile', seconds: 3 });
const results = [snap, prof];
if (proc.capabilities.includes('perf_flamegraph')) {
  console.log('==> 3 s perf flame graph (JS and native frames) of the blocked process');
  results.push(await capture(proc.id, { kind: 'perf_flamegraph', seconds: 3 }));
} else {
  console.log('    (perf not found: no perf flame graph; apt-get install linux-perf)');
}

// Flame graphs rendered by the hub, saved next to the artifacts to open in a browser.
const svgs = [];
for (const a of results.filter((x) => x.kind !== 'heap_snapshot')) {
  const res = await fetch(`${o.hub}/api/artifacts/${a.id}/flamegraph.svg`, { headers: { authorization: `Bearer ${process.env.PERF_HUB_TOKEN}` } });
  if (!res.ok) continue;
  const file = join(o['data-dir'], `flamegraph-${a.kind}.svg`);
  writeFileSync(file, Buffer.from(await res.arrayBuffer()));
  svgs.push(file);
}
console.log('\nResults (stored by perf-hub):');
for (const a of results) {
  console.log(`  ${a.kind.padEnd(14)} ${join(o['data-dir'], 'artifacts', a.file_name)}`);
  console.log(`  ${''.padEnd(14)} ${o.hub}/api/artifacts/${a.id}/download`);
}
console.log('\nFlame graphs (SVG, open in a browser):');
for (const f of svgs) console.log(`  ${f}`);
console.log(`\nConsole:  ${o.hub}/   (token in ${join(o['data-dir'], 'operator-token')})`);
console.log(`API:      curl -H "Authorization: Bearer $(cat ${join(o['data-dir'], 'operator-token')})" ${o.hub}/api/artifacts`);
console.log('Open the .heapsnapshot in Chrome DevTools (Memory tab > Load) and the .cpuprofile in DevTools or speedscope.');
console.log('Stop hub and app: npm run demo:stop');
