// CPU profiles, heap sampling and perf flame graphs of real processes, as operators take them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { api, download, processByPid, waitArtifact, waitFor, sleep, ROOT, TOKEN, hubFixture } from './helpers.mjs';

const fx = hubFixture();
const app = fx.app;

async function svgOf(id) {
  const res = await fetch(fx.hub.url(`/api/artifacts/${id}/flamegraph.svg`), { headers: { authorization: `Bearer ${TOKEN}` } });
  assert.equal(res.status, 200, await res.clone().text());
  assert.match(res.headers.get('content-type'), /svg/);
  return res.text();
}

async function command(p, body, expect = 202) {
  const res = await api(fx.hub, 'POST', `/api/processes/${p.id}/commands`, body);
  assert.equal(res.status, expect, JSON.stringify(res.body));
  return res.body.artifact;
}

test('cpu_profile of a process spinning for 20 s: ready before the loop ends, names the function, renders an SVG', async () => {
  const a = await app();
  const p = await processByPid(fx.hub, a.child.pid);
  a.send('spin 20000');
  await a.waitLine(/^spin-start/);
  // As an operator would: the process shows as blocked, then they take a profile.
  await waitFor('blocked', async () => (await api(fx.hub, 'GET', `/api/processes/${p.id}`)).body.state === 'blocked');
  const art = await waitArtifact(fx.hub, (await command(p, { kind: 'cpu_profile', seconds: 3 })).id, { timeout: 16000 });
  assert.equal(art.status, 'ready', art.error);
  assert.ok(!a.lines.some((x) => /^spin-end/.test(x.l)), 'still spinning when the profile was ready');
  const profile = JSON.parse((await download(fx.hub, art.id)).toString());
  assert.ok(profile.nodes.some((n) => n.callFrame.functionName === 'perfAgentUniqueSpinner'));
  assert.match(await svgOf(art.id), /perfAgentUniqueSpinner/);
  await a.kill();
});

test('heap_sampling of an allocating process names the allocating function', async () => {
  const a = await app();
  const p = await processByPid(fx.hub, a.child.pid);
  const started = await command(p, { kind: 'heap_sampling', seconds: 3 });
  await sleep(300);
  a.send('alloc 1500');
  const art = await waitArtifact(fx.hub, started.id);
  assert.equal(art.status, 'ready', art.error);
  const profile = JSON.parse((await download(fx.hub, art.id)).toString());
  assert.ok(profile.head, 'a .heapprofile');
  assert.match(JSON.stringify(profile), /perfAgentUniqueAllocator/);
  assert.match(await svgOf(art.id), /perfAgentUniqueAllocator/);
});

test('perf_flamegraph of a process with --perf-basic-prof-only-functions shows the JS function and native frames', async () => {
  const a = await app({ nodeArgs: ['--perf-basic-prof-only-functions'] });
  const p = await processByPid(fx.hub, a.child.pid);
  assert.ok(p.capabilities.includes('perf_flamegraph') && p.capabilities.includes('perf_js_symbols'), p.capabilities.join());
  a.send('spin 15000');
  await a.waitLine(/^spin-start/);
  const art = await waitArtifact(fx.hub, (await command(p, { kind: 'perf_flamegraph', seconds: 2 })).id, { timeout: 60000 });
  assert.equal(art.status, 'ready', art.error);
  const folded = (await download(fx.hub, art.id)).toString();
  assert.match(folded, /perfAgentUniqueSpinner/);
  assert.match(folded, /\[(node|libc[^\]]*|unknown)\]|node::|v8::|libc/, 'native frames present');
  assert.match(await svgOf(art.id), /perfAgentUniqueSpinner/);
  await a.kill();
});

test('perf not permitted → failed artifact with a readable reason; the app is unaffected', async () => {
  const fake = join(ROOT, '__test__', 'fixtures', 'fake-perf-denied.sh');
  const a = await app({ env: { PERF_AGENT_PERF_BIN: fake } });
  const p = await processByPid(fx.hub, a.child.pid);
  const art = await waitArtifact(fx.hub, (await command(p, { kind: 'perf_flamegraph', seconds: 1 })).id, { timeout: 30000 });
  assert.equal(art.status, 'failed');
  assert.match(art.error, /perf_event_paranoid|not permitted/i);
  a.send('status');
  await a.waitLine(/^status .*"connected":true/);
});

test('a process without perf does not offer perf_flamegraph and the fx.hub says so', async () => {
  const a = await app({ env: { PERF_AGENT_PERF_BIN: '/nonexistent/perf' } });
  const p = await processByPid(fx.hub, a.child.pid);
  assert.ok(!p.capabilities.includes('perf_flamegraph'));
  const res = await api(fx.hub, 'POST', `/api/processes/${p.id}/commands`, { kind: 'perf_flamegraph', seconds: 1 });
  assert.equal(res.status, 422);
  assert.match(res.body.error, /does not support perf_flamegraph/);
});

test('a heap snapshot has no flame graph; unknown artifacts 404', async () => {
  const a = await app();
  const p = await processByPid(fx.hub, a.child.pid);
  const art = await waitArtifact(fx.hub, (await command(p, { kind: 'heap_snapshot' })).id);
  const res = await fetch(fx.hub.url(`/api/artifacts/${art.id}/flamegraph.svg`), { headers: { authorization: `Bearer ${TOKEN}` } });
  assert.equal(res.status, 422);
  const missing = await fetch(fx.hub.url(`/api/artifacts/${'a'.repeat(32)}/flamegraph.svg`), { headers: { authorization: `Bearer ${TOKEN}` } });
  assert.equal(missing.status, 404);
});
