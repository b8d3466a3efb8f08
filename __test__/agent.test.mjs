// End-to-end tests of the foundation: real perf-hub process, real Node apps with the addon,
// real TCP, the HTTP API as operators use it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import {
  startHub, startApp, api, download, hubEnv, processByPid, waitArtifact, waitFor, tempDir, cleanup, sleep, TOKEN,
  hubFixture,
} from './helpers.mjs';

const fx = hubFixture();
const app = fx.app;

function parseSnapshot(buf) {
  const snap = JSON.parse(buf.toString('utf8'));
  assert.ok(snap.snapshot && snap.snapshot.meta && Array.isArray(snap.nodes) && Array.isArray(snap.strings), 'heap snapshot shape');
  return snap;
}

/** Count of nodes whose name is `name` (object nodes of class `name`). */
function countByName(snap, name) {
  const f = snap.snapshot.meta.node_fields;
  const nameIdx = f.indexOf('name');
  const typeIdx = f.indexOf('type');
  const objType = snap.snapshot.meta.node_types[typeIdx].indexOf('object');
  const strIdx = snap.strings.indexOf(name);
  let n = 0;
  for (let i = 0; i < snap.nodes.length; i += f.length) {
    if (snap.nodes[i + nameIdx] === strIdx && snap.nodes[i + typeIdx] === objType) n++;
  }
  return n;
}

// The estimate's measured peak-memory factor for this Node line (crates/agent-core/src/headroom.rs).
const SNAPSHOT_MEMORY_FACTOR = Number(process.versions.node.split('.')[0]) >= 22 ? 13 : 14;

test('a started process registers with its app, labels, pid, node version and capabilities', async () => {
  const a = await app({ env: { PERF_AGENT_LABELS: 'zone=eu,tier=gold' } });
  const p = await processByPid(fx.hub, a.child.pid);
  assert.equal(p.app, 'orders');
  assert.equal(p.labels.role, 'web');
  assert.equal(p.labels.zone, 'eu');
  assert.equal(p.node_version, process.version);
  assert.equal(p.state, 'running');
  assert.ok(p.capabilities.includes('heap_snapshot'));
  assert.match(p.hostname, /.+/);
  const one = await api(fx.hub, 'GET', `/api/processes/${p.id}`);
  assert.equal(one.body.pid, a.child.pid);
});

test('heap snapshot of an idle process: ready, checksummed, parses, holds the class', async () => {
  const a = await app({ env: { LEAK_COUNT: '321' } });
  const p = await processByPid(fx.hub, a.child.pid);
  const res = await api(fx.hub, 'POST', `/api/processes/${p.id}/commands`, { kind: 'heap_snapshot' });
  assert.equal(res.status, 202, JSON.stringify(res.body));
  const est = res.body.artifact.estimate;
  assert.ok(est && est.heap_used_bytes > 0 && est.extra_memory_bytes === est.heap_used_bytes * SNAPSHOT_MEMORY_FACTOR, 'estimate shown with this line\'s factor');
  const art = await waitArtifact(fx.hub, res.body.artifact.id);
  assert.equal(art.status, 'ready', art.error);
  const buf = await download(fx.hub, art.id);
  assert.equal(buf.length, art.size);
  assert.equal(createHash('sha256').update(buf).digest('hex'), art.sha256);
  const snap = parseSnapshot(buf);
  assert.equal(countByName(snap, 'PerfAgentTestLeak'), 321);
});

test('heap snapshot of a process stuck in a 20 s busy loop is ready before the loop ends', async () => {
  const a = await app();
  const p = await processByPid(fx.hub, a.child.pid);
  a.send('busy 20000');
  const started = await a.waitLine(/^busy-start/);
  await sleep(500);
  const res = await api(fx.hub, 'POST', `/api/processes/${p.id}/commands`, { kind: 'heap_snapshot' });
  assert.equal(res.status, 202, JSON.stringify(res.body));
  const art = await waitArtifact(fx.hub, res.body.artifact.id, { timeout: 19000 });
  assert.equal(art.status, 'ready', art.error);
  const readyAt = Date.now();
  assert.ok(!a.lines.some((x) => /^busy-end/.test(x.l)), 'the loop was still running when the snapshot was ready');
  assert.ok(readyAt - started.t < 20000);
  assert.ok(countByName(parseSnapshot(await download(fx.hub, art.id)), 'PerfAgentTestLeak') > 0);
  await a.kill();
});

test('the snapshot hook is no enumerable global and writes only for a waiting command', async () => {
  const a = await app();
  a.send('globals');
  const g = JSON.parse((await a.waitLine(/^globals /)).l.slice('globals '.length));
  const plain = JSON.parse(execFileSync(process.execPath, ['-e', 'console.log(JSON.stringify(Object.keys(globalThis)))'], { encoding: 'utf8' }));
  const fixtureOwn = ['__leaks', '__ballast'];
  assert.deepEqual(g.keys.filter((k) => !plain.includes(k) && !fixtureOwn.includes(k)), [], 'no new enumerable globals');
  assert.deepEqual(g.forIn.filter((k) => !plain.includes(k) && !fixtureOwn.includes(k)), []);
  assert.deepEqual(g.hook, { enumerable: false, writable: false, type: 'function' });
  assert.equal(g.hookWithBadId.ok, false);
  assert.match(g.hookWithBadId.error, /no such command/);
  await a.kill();
});

test('a second heavy command while one is capturing gets a clear busy error', async () => {
  const a = await app({ env: { HEAP_MB: '30' } });
  const p = await processByPid(fx.hub, a.child.pid);
  const first = await api(fx.hub, 'POST', `/api/processes/${p.id}/commands`, { kind: 'heap_snapshot' });
  assert.equal(first.status, 202);
  const second = await api(fx.hub, 'POST', `/api/processes/${p.id}/commands`, { kind: 'cpu_profile', seconds: 1 });
  assert.equal(second.status, 409, JSON.stringify(second.body));
  assert.match(second.body.error, /busy/);
  assert.equal(second.body.artifact.status, 'failed');
  assert.equal((await waitArtifact(fx.hub, first.body.artifact.id, { timeout: 60000 })).status, 'ready');
});

test('kill -9 of the app mid-snapshot marks the artifact failed; the fx.hub is unaffected', async () => {
  const a = await app({ env: { HEAP_MB: '40' } });
  const p = await processByPid(fx.hub, a.child.pid);
  const res = await api(fx.hub, 'POST', `/api/processes/${p.id}/commands`, { kind: 'heap_snapshot' });
  assert.equal(res.status, 202);
  await waitArtifact(fx.hub, res.body.artifact.id, { until: (x) => x.status === 'running' && x.progress });
  await a.kill('SIGKILL');
  const art = await waitArtifact(fx.hub, res.body.artifact.id);
  assert.equal(art.status, 'failed');
  assert.match(art.error, /disconnected/);
  const list = await api(fx.hub, 'GET', '/api/processes');
  assert.equal(list.status, 200);
  assert.equal(list.body.find((x) => x.id === p.id).state, 'disconnected');
});

test('a wrong app secret is rejected and audited', async () => {
  const a = await startApp('app.js', { env: { ...hubEnv(fx.hub), PERF_AGENT_SECRET: 'not-the-secret', REPORT_ERRORS: '1' }, waitReady: false });
  fx.apps.push(a);
  const line = await a.waitLine(/^status .*AuthFailed/);
  assert.match(line.l, /authentication failed/);
  const list = await api(fx.hub, 'GET', '/api/processes');
  assert.ok(!list.body.some((x) => x.pid === a.child.pid));
  const audit = await api(fx.hub, 'GET', '/api/audit');
  assert.ok(audit.body.some((x) => x.action === 'agent.auth_failed'));
  // The app itself keeps running.
  a.send('status');
  await a.waitLine(/"running":true/);
});

test('the API needs the bearer token; the console page does not', async () => {
  for (const path of ['/api/processes', '/api/artifacts', '/api/audit', '/metrics']) {
    assert.equal((await api(fx.hub, 'GET', path, undefined, { token: null })).status, 401, path);
    assert.equal((await api(fx.hub, 'GET', path, undefined, { token: 'wrong-token-wrong-token' })).status, 401, path);
  }
  const res = await api(fx.hub, 'GET', '/api/processes', undefined, { token: TOKEN });
  assert.equal(res.status, 200);
  const page = await fetch(fx.hub.url('/'));
  assert.equal(page.status, 200);
});

test('bad commands get clear errors', async () => {
  const a = await app();
  const p = await processByPid(fx.hub, a.child.pid);
  const bad = [
    [{ kind: 'cpu_profile', seconds: 0 }, 400, /between 1 and 600/],
    [{ kind: 'cpu_profile', seconds: 601 }, 400, /between 1 and 600/],
    [{ kind: 'format_disk' }, 400, /unknown command kind/],
    [{ kind: 'heap_snapshot', bogus: 1 }, 400, /unknown field/],
  ];
  for (const [body, status, re] of bad) {
    const r = await api(fx.hub, 'POST', `/api/processes/${p.id}/commands`, body);
    assert.equal(r.status, status, JSON.stringify(r.body));
    assert.match(r.body.error, re);
  }
  assert.equal((await api(fx.hub, 'POST', `/api/processes/${'0'.repeat(32)}/commands`, { kind: 'heap_snapshot' })).status, 404);
  assert.equal((await api(fx.hub, 'GET', '/api/artifacts/..%2F..%2Fetc')).status, 400);
  const audit = await api(fx.hub, 'GET', '/api/audit');
  assert.ok(audit.body.some((x) => x.action === 'command.request' && x.target === p.id && /^rejected: seconds must be/.test(x.result)));
});

test('every command is on the audit trail with who, what and when', async () => {
  const a = await app();
  const p = await processByPid(fx.hub, a.child.pid);
  const res = await api(fx.hub, 'POST', `/api/processes/${p.id}/commands`, { kind: 'cpu_profile', seconds: 1 });
  assert.equal(res.status, 202);
  const art = await waitArtifact(fx.hub, res.body.artifact.id);
  assert.equal(art.status, 'ready', art.error);
  const profile = JSON.parse((await download(fx.hub, art.id)).toString());
  assert.ok(Array.isArray(profile.nodes) && Array.isArray(profile.samples), 'a .cpuprofile');
  const audit = (await api(fx.hub, 'GET', '/api/audit')).body;
  const entry = audit.find((x) => x.action === 'command.request' && x.detail.artifact === art.id);
  assert.ok(entry, 'command audited');
  assert.match(entry.actor, /^bootstrap@127\.0\.0\.1/);
  assert.match(entry.ts, /^\d{4}-\d\d-\d\dT/);
  assert.ok(audit.some((x) => x.action === 'artifact.download' && x.target === art.id));
});
