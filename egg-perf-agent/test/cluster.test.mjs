// A real Egg 3 cluster (master + agent + 2 app workers, forked by egg-cluster through
// egg-mock's mm.cluster) with egg-perf-agent enabled against a real perf-hub.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { join, dirname } from 'node:path';
import { rmSync } from 'node:fs';
import {
  startHub, api, download, waitArtifact, waitFor, sleep, APP, SECRET,
} from '../../__test__/helpers.mjs';

const require = createRequire(import.meta.url);
const mm = require('egg-mock');
const HERE = dirname(fileURLToPath(import.meta.url));
const BASE_DIR = join(HERE, 'fixtures', 'cluster-app');
const EGG_APP = 'perf-cluster-app';

let hub;
let app;
const seenPids = new Set();

const alive = (pid) => { try { process.kill(pid, 0); return true; } catch { return false; } };

/** Processes of this Egg app in the hub. */
async function eggProcesses() {
  const { status, body } = await api(hub, 'GET', '/api/processes');
  assert.equal(status, 200);
  const list = body.filter((p) => p.labels && p.labels.egg_app === EGG_APP);
  for (const p of list) seenPids.add(p.pid);
  return list;
}

// egg-cluster's master picks its cluster-client port by binding port 0 and closing it; the agent
// worker binds it a moment later. On a busy machine an outgoing connection can take that
// ephemeral port in between ("create "Watcher" leader failed, the port:N is occupied by
// other"): egg's own race, not the plugin's. The cluster is started again when that happens.
const EGG_PORT_RACE = /leader failed, the port:\d+ is occupied/;

function startEggCluster() {
  return mm.cluster({
    baseDir: BASE_DIR,
    workers: 2,
    // Production mode: egg-cluster only reforks a dead worker outside local/unittest.
    env: 'prod',
    cache: false,
    coverage: false,
    opt: {
      // From Node 24, `node --test` runs each file with every default option spelled out,
      // --inspect-port among them; egg-mock would pass that on and the master would think it
      // is being debugged (and stop the cluster when a worker dies). The cluster gets none.
      execArgv: [],
      env: {
        ...process.env,
        EGG_PERF_TEST_HUB: hub.agentAddr,
        EGG_PERF_TEST_APP: APP,
        EGG_PERF_TEST_SECRET: SECRET,
        PERF_AGENT_LABELS: 'dc=test-dc',
        PERF_AGENT_HUB: '', PERF_AGENT_APP: '', PERF_AGENT_SECRET: '',
      },
    },
  });
}

before(async () => {
  hub = await startHub();
  for (let attempt = 1; ; attempt++) {
    app = startEggCluster();
    await app.ready();
    if (app.code === 0 || app.code === undefined) break;
    const output = `${app.stderr}\n${app.stdout}`;
    if (attempt < 3 && EGG_PORT_RACE.test(output)) {
      console.log(`# egg cluster-client port race on attempt ${attempt}; starting the cluster again`);
      await app.close();
      continue;
    }
    throw new Error(`egg cluster failed to start (code ${app.code}):\n${output}`);
  }
});

after(async () => {
  const masterPid = app && app.process && app.process.pid;
  if (app) await app.close();
  // The master takes its agent and workers down with it; make sure nothing is left behind.
  await waitFor('egg processes to exit', () => [...seenPids].every((pid) => !alive(pid)), { timeout: 15000 }).catch(() => {});
  for (const pid of [masterPid, ...seenPids]) if (pid && alive(pid)) { try { process.kill(pid, 'SIGKILL'); } catch {} }
  if (hub) {
    await hub.stop();
    rmSync(hub.dataDir, { recursive: true, force: true });
  }
  for (const d of ['logs', 'run', '.home']) rmSync(join(BASE_DIR, d), { recursive: true, force: true });
});

let workers;
let agentProc;

/**
 * Sends a command. Right after a process connects, its inspector worker may still be starting
 * (the hub answers 409 "inspector worker is not running"): retry that for a few seconds.
 */
async function command(proc, body) {
  const t0 = Date.now();
  const res = await waitFor(`command ${body.kind} accepted`, async () => {
    const r = await api(hub, 'POST', `/api/processes/${proc.id}/commands`, body);
    if (r.status === 409 && /inspector worker is not running/.test(r.body.error)) return null;
    return r;
  }, { timeout: 10000, interval: 200 });
  if (Date.now() - t0 > 300) console.log(`# ${body.kind} accepted ${Date.now() - t0} ms after the first try`);
  assert.equal(res.status, 202, JSON.stringify(res.body));
  return res;
}

test('the Egg agent and both workers show up in the hub with role, worker id and app name labels', async () => {
  const list = await waitFor('agent + 2 workers connected', async () => {
    const l = (await eggProcesses()).filter((p) => p.connected);
    return l.length >= 3 && l;
  }, { timeout: 30000 });
  assert.equal(list.length, 3, JSON.stringify(list.map((p) => p.labels)));
  for (const p of list) {
    assert.equal(p.app, APP);
    assert.equal(p.state, 'running');
    assert.equal(p.labels.egg_app, EGG_APP);
    assert.equal(p.labels.team, 'checkout', 'config.perfAgent.labels');
    assert.equal(p.labels.dc, 'test-dc', 'PERF_AGENT_LABELS merged in');
    assert.equal(p.node_version, process.version);
    assert.ok(p.capabilities.includes('cpu_profile') && p.capabilities.includes('heap_snapshot'));
  }
  const agents = list.filter((p) => p.labels.role === 'agent');
  workers = list.filter((p) => p.labels.role === 'worker').sort((a, b) => Number(a.labels.worker_id) - Number(b.labels.worker_id));
  assert.equal(agents.length, 1, 'one Egg agent process');
  assert.equal(workers.length, 2, 'two Egg app workers');
  agentProc = agents[0];
  assert.equal(agentProc.labels.worker_id, undefined, 'the agent has no worker id');
  assert.deepEqual(workers.map((w) => w.labels.worker_id), ['1', '2']);
  assert.equal(new Set(list.map((p) => p.pid)).size, 3, 'three distinct pids');
  assert.ok(!list.some((p) => p.pid === app.process.pid), 'the Egg master itself is not an agent');
  // The workers do serve the app.
  const res = await fetch(`${app.url}/`);
  assert.equal(res.status, 200);
  assert.ok(workers.map((w) => w.pid).includes((await res.json()).pid), 'a reporting worker served the request');
});

test('a CPU profile of one worker and a heap snapshot of the other both become ready', async () => {
  assert.ok(workers, 'previous test found the workers');
  const [w1, w2] = workers;
  const cpu = await command(w1, { kind: 'cpu_profile', seconds: 1 });
  const heap = await command(w2, { kind: 'heap_snapshot' });
  const [cpuArt, heapArt] = await Promise.all([
    waitArtifact(hub, cpu.body.artifact.id, { timeout: 60000 }),
    waitArtifact(hub, heap.body.artifact.id, { timeout: 60000 }),
  ]);
  assert.equal(cpuArt.status, 'ready', cpuArt.error);
  assert.equal(heapArt.status, 'ready', heapArt.error);
  const profile = JSON.parse((await download(hub, cpuArt.id)).toString('utf8'));
  assert.ok(Array.isArray(profile.nodes) && Array.isArray(profile.samples), 'a .cpuprofile');
  const snap = await download(hub, heapArt.id);
  assert.equal(snap.length, heapArt.size);
  const parsed = JSON.parse(snap.toString('utf8'));
  assert.ok(parsed.snapshot && Array.isArray(parsed.nodes), 'a .heapsnapshot');
  // Egg code is on the heap of the worker (it really is an Egg app worker).
  assert.ok(parsed.strings.some((s) => typeof s === 'string' && s.includes('egg')), 'snapshot holds Egg strings');
});

test('SIGKILL of a worker: it is marked disconnected and its replacement appears as a new process', async () => {
  assert.ok(workers, 'previous test found the workers');
  const victim = workers[0];
  const survivor = workers[1];
  process.kill(victim.pid, 'SIGKILL');
  const gone = await waitFor('killed worker disconnected', async () => {
    const p = (await eggProcesses()).find((x) => x.id === victim.id);
    return p && !p.connected && p;
  }, { timeout: 20000 });
  assert.equal(gone.state, 'disconnected');
  const fresh = await waitFor('replacement worker connected', async () => {
    const l = await eggProcesses();
    return l.find((p) => p.connected && p.labels.role === 'worker' && p.pid !== victim.pid && p.pid !== survivor.pid);
  }, { timeout: 40000 });
  assert.notEqual(fresh.id, victim.id, 'the replacement is a new process in the hub');
  assert.equal(fresh.labels.egg_app, EGG_APP);
  assert.equal(fresh.labels.worker_id, '3', 'cluster worker id of the refork');
  const now = (await eggProcesses()).filter((p) => p.connected);
  assert.deepEqual(now.map((p) => p.labels.role).sort(), ['agent', 'worker', 'worker']);
  // The replacement is diagnosable too.
  const cpu = await command(fresh, { kind: 'cpu_profile', seconds: 1 });
  assert.equal((await waitArtifact(hub, cpu.body.artifact.id, { timeout: 30000 })).status, 'ready');
});

test('closing the Egg app stops the agent in every process: all show disconnected', async () => {
  const connected = (await eggProcesses()).filter((p) => p.connected);
  assert.equal(connected.length, 3);
  await app.close();
  await waitFor('all Egg processes disconnected', async () => {
    const l = await eggProcesses();
    return connected.every((c) => l.find((p) => p.id === c.id && !p.connected && p.state === 'disconnected'));
  }, { timeout: 20000 });
  await waitFor('Egg processes exited', () => connected.every((p) => !alive(p.pid)), { timeout: 15000 });
});
