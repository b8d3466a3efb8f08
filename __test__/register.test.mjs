// Zero-code start (`node -r @corp/perf-agent/register`) in more shapes of apps: a node:cluster
// app where every process is its own entry in the hub, and a wrong hub address where the app
// still serves. (Plain -r registration and the no-config warning are in lifecycle.test.mjs.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  startHub, startApp, api, hubEnv, processByPid, waitArtifact, waitFor, cleanup, sleep,
} from './helpers.mjs';

const REGISTER = ['-r', '@corp/perf-agent/register'];
const alive = (pid) => { try { process.kill(pid, 0); return true; } catch { return false; } };

test('-r register in a node:cluster app: the primary and each of its 2 workers are their own process in the hub', async () => {
  const hub = await startHub();
  let a;
  let workerPids = [];
  try {
    a = await startApp('register-cluster.js', { nodeArgs: REGISTER, env: hubEnv(hub, { PERF_AGENT_LABELS: 'via=register,shape=cluster' }) });
    const [, port, ...pids] = a.lines.find((x) => /^ready /.test(x.l)).l.split(' ').map(Number);
    workerPids = pids;
    assert.equal(workerPids.length, 2);
    const procs = [];
    for (const pid of [a.child.pid, ...workerPids]) procs.push(await processByPid(hub, pid));
    assert.equal(new Set(procs.map((p) => p.id)).size, 3, 'three distinct processes');
    for (const p of procs) {
      assert.equal(p.app, 'orders');
      assert.equal(p.state, 'running');
      assert.equal(p.labels.via, 'register');
      assert.equal(p.labels.shape, 'cluster');
    }
    // The workers serve HTTP on their shared port.
    const res = await fetch(`http://127.0.0.1:${port}/`);
    assert.equal(res.status, 200);
    assert.match(await res.text(), /^ok \d+$/);
    // A command reaches exactly the worker it is addressed to.
    const w2 = procs[2];
    const cmd = await waitFor('command accepted', async () => {
      const r = await api(hub, 'POST', `/api/processes/${w2.id}/commands`, { kind: 'cpu_profile', seconds: 1 });
      return r.status === 409 && /inspector worker is not running/.test(r.body.error) ? null : r;
    }, { timeout: 10000, interval: 200 });
    assert.equal(cmd.status, 202, JSON.stringify(cmd.body));
    const art = await waitArtifact(hub, cmd.body.artifact.id);
    assert.equal(art.status, 'ready', art.error);
    assert.equal(art.process_id, w2.id);
    // A worker killed -9 is shown disconnected; its siblings stay connected.
    process.kill(workerPids[0], 'SIGKILL');
    await processByPid(hub, workerPids[0], { connected: false });
    const list = (await api(hub, 'GET', '/api/processes')).body;
    assert.equal(list.find((p) => p.pid === workerPids[0]).state, 'disconnected');
    assert.ok(list.find((p) => p.pid === workerPids[1]).connected);
    assert.ok(list.find((p) => p.pid === a.child.pid).connected);
  } finally {
    if (a) {
      a.child.kill('SIGTERM');
      await Promise.race([a.exited, sleep(5000)]);
      await a.kill('SIGKILL');
    }
    await waitFor('cluster workers exited', () => workerPids.every((pid) => !alive(pid)), { timeout: 5000 }).catch(() => {});
    for (const pid of workerPids) if (alive(pid)) process.kill(pid, 'SIGKILL');
    await hub.stop();
    cleanup(hub.dataDir);
  }
});

test('-r register with a wrong hub address (PERF_AGENT_HUB=127.0.0.1:1): the app serves HTTP as usual', async () => {
  const env = { PERF_AGENT_HUB: '127.0.0.1:1', PERF_AGENT_APP: 'orders', PERF_AGENT_SECRET: 'orders-secret-123' };
  const a = await startApp('register-http.js', { nodeArgs: REGISTER, env });
  try {
    const port = Number(a.lines.find((x) => /^ready /.test(x.l)).l.split(' ')[1]);
    // Serve over a few seconds while the agent keeps failing to connect and backing off.
    const t0 = Date.now();
    let served = 0;
    while (Date.now() - t0 < 3000) {
      const res = await fetch(`http://127.0.0.1:${port}/`);
      assert.equal(res.status, 200);
      assert.equal(await res.text(), `ok ${a.child.pid}`);
      served++;
      await sleep(50);
    }
    assert.ok(served >= 20, `served ${served} requests`);
    assert.equal(a.child.exitCode, null, 'still running');
    // A valid configuration with an unreachable hub is not a startup error.
    assert.doesNotMatch(a.stderr, /not started/);
    assert.doesNotMatch(a.stderr, /Error|panicked/);
  } finally {
    await a.kill('SIGTERM');
  }
});
