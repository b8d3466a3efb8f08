// The agent in its host's life: hub restarts, hub down, process exit, -r register.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startHub, startApp, api, download, hubEnv, processByPid, waitArtifact, waitFor, cleanup, ROOT } from './helpers.mjs';

test('hub killed and restarted mid-session: the agent reconnects, metadata survives, the next snapshot works', async () => {
  let hub = await startHub();
  const dataDir = hub.dataDir;
  const a = await startApp('app.js', { env: hubEnv(hub) });
  try {
    const p = await processByPid(hub, a.child.pid);
    const first = await api(hub, 'POST', `/api/processes/${p.id}/commands`, { kind: 'heap_snapshot' });
    const before = await waitArtifact(hub, first.body.artifact.id);
    assert.equal(before.status, 'ready');
    await hub.stop('SIGKILL');
    hub = await startHub({ dataDir, agentPort: hub.agentPort, httpPort: hub.httpPort });
    const again = await processByPid(hub, a.child.pid, { timeout: 30000 });
    assert.equal(again.id, p.id, 'same process identity after reconnect');
    const kept = await api(hub, 'GET', `/api/artifacts/${before.id}`);
    assert.equal(kept.body.status, 'ready');
    assert.equal((await download(hub, before.id)).length, before.size);
    const res = await api(hub, 'POST', `/api/processes/${p.id}/commands`, { kind: 'heap_snapshot' });
    assert.equal(res.status, 202, JSON.stringify(res.body));
    assert.equal((await waitArtifact(hub, res.body.artifact.id)).status, 'ready');
  } finally {
    await a.kill();
    await hub.stop();
    cleanup(dataDir);
  }
});

test('with the hub down, start() does not throw, the app works, and it exits on its own', async () => {
  const a = await startApp('exits.js', { env: { PERF_AGENT_HUB: '127.0.0.1:1', PERF_AGENT_APP: 'orders', PERF_AGENT_SECRET: 'x-secret-x' }, waitReady: false });
  const { code } = await Promise.race([a.exited, new Promise((r) => setTimeout(() => r({ code: 'hung' }), 10000))]);
  assert.equal(code, 0, a.stderr);
  assert.match(a.stdout, /started true/);
  assert.match(a.stdout, /Connection refused/);
});

test('process.exit() with the agent connected, also right after a heap snapshot, exits cleanly, no debugger message', async () => {
  const hub = await startHub();
  try {
    for (let i = 0; i < 4; i++) {
      const a = await startApp('app.js', { env: hubEnv(hub) });
      if (i % 2 === 1) {
        // The heap snapshot session stays connected (stable object ids): exit must still be clean.
        const p = await processByPid(hub, a.child.pid);
        const res = await api(hub, 'POST', `/api/processes/${p.id}/commands`, { kind: 'heap_snapshot' });
        assert.equal((await waitArtifact(hub, res.body.artifact.id)).status, 'ready');
      }
      a.send('exit');
      const { code } = await Promise.race([a.exited, new Promise((r) => setTimeout(() => r({ code: 'hung' }), 10000))]);
      assert.equal(code, 0);
      assert.doesNotMatch(a.stderr, /Waiting for the debugger/);
    }
  } finally {
    await hub.stop();
    cleanup(hub.dataDir);
  }
});

test('node -r @corp/perf-agent/register starts the agent from PERF_AGENT_* with no code change', async () => {
  const hub = await startHub();
  try {
    const a = await startApp('plain-server.js', { nodeArgs: ['-r', '@corp/perf-agent/register'], env: hubEnv(hub, { PERF_AGENT_LABELS: 'via=register' }) });
    const p = await processByPid(hub, a.child.pid);
    assert.equal(p.labels.via, 'register');
    await a.kill();
  } finally {
    await hub.stop();
    cleanup(hub.dataDir);
  }
});

test('-r register with no configuration warns once and the app still runs', async () => {
  const env = { PERF_AGENT_HUB: '', PERF_AGENT_APP: '', PERF_AGENT_SECRET: '' };
  const a = await startApp('plain-server.js', { nodeArgs: ['-r', '@corp/perf-agent/register'], env });
  assert.match(a.stderr, /\[perf-agent\] not started: .*hub/);
  assert.equal(a.stderr.match(/perf-agent/g).length, 1);
  await a.kill();
});

test('stop() says goodbye: the hub shows the process disconnected at once', async () => {
  const hub = await startHub();
  try {
    const a = await startApp('stop.js', { env: hubEnv(hub), waitReady: true });
    const p = await processByPid(hub, a.child.pid);
    a.send('stop');
    await a.waitLine(/^stopped true/);
    await processByPid(hub, a.child.pid, { connected: false, timeout: 3000 });
    const { code } = await a.exited;
    assert.equal(code, 0);
    const list = await api(hub, 'GET', '/api/processes');
    assert.equal(list.body.find((x) => x.id === p.id).state, 'disconnected');
  } finally {
    await hub.stop();
    cleanup(hub.dataDir);
  }
});
