// Heap analysis through the hub, as an operator uses it: snapshot a real process twice, ask the
// hub for the analysis of one and the diff of both (background jobs, cached results).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { api, processByPid, waitArtifact, waitFor, hubFixture } from './helpers.mjs';

const fx = hubFixture();

async function snapshot(p) {
  const res = await api(fx.hub, 'POST', `/api/processes/${p.id}/commands`, { kind: 'heap_snapshot' });
  assert.equal(res.status, 202, JSON.stringify(res.body));
  const a = await waitArtifact(fx.hub, res.body.artifact.id);
  assert.equal(a.status, 'ready', a.error);
  return a;
}

/** GETs until the background job answers 200; checks that 202s carry a status. */
async function result(path) {
  let sawPending = false;
  const body = await waitFor(`analysis ${path}`, async () => {
    const r = await api(fx.hub, 'GET', path);
    if (r.status === 202) {
      assert.match(r.body.status, /queued|running/);
      sawPending = true;
      return null;
    }
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return r.body;
  }, { timeout: 60000, interval: 100 });
  return { body, sawPending };
}

test('analysis and diff of two snapshots of one process: counts, +M new instances, cached', async () => {
  const app = await fx.app({ env: { LEAK_COUNT: '250' } });
  const p = await processByPid(fx.hub, app.child.pid);
  const before = await snapshot(p);
  // Another command's inspector session coming and going must not reset V8's object ids.
  const prof = await api(fx.hub, 'POST', `/api/processes/${p.id}/commands`, { kind: 'cpu_profile', seconds: 1 });
  assert.equal((await waitArtifact(fx.hub, prof.body.artifact.id)).status, 'ready');
  app.send('leak 120');
  await app.waitLine(/^leaked 370/);
  const after = await snapshot(p);

  const { body: analysis, sawPending } = await result(`/api/artifacts/${before.id}/analysis`);
  assert.ok(sawPending, 'the first request starts a background job (202)');
  const row = analysis.classes.find((c) => c.name === 'PerfAgentTestLeak');
  assert.equal(row.count, 250);
  assert.ok(row.retained_size >= row.shallow_size && row.shallow_size > 0);
  assert.ok(analysis.largest_objects.length > 0);

  const again = await api(fx.hub, 'GET', `/api/artifacts/${before.id}/analysis`);
  assert.equal(again.status, 200, 'cached result is served at once');

  const { body: diff } = await result(`/api/artifacts/${before.id}/diff/${after.id}`);
  const delta = diff.classes.find((c) => c.name === 'PerfAgentTestLeak');
  assert.equal(delta.count_delta, 120);
  assert.equal(delta.new_count, 120);
  assert.ok(diff.new_objects_count >= 120);
});

test('analysis refuses what is not a ready heap snapshot, and diffs across processes', async () => {
  const a1 = await fx.app();
  const a2 = await fx.app();
  const p1 = await processByPid(fx.hub, a1.child.pid);
  const p2 = await processByPid(fx.hub, a2.child.pid);
  const prof = await api(fx.hub, 'POST', `/api/processes/${p1.id}/commands`, { kind: 'cpu_profile', seconds: 1 });
  await waitArtifact(fx.hub, prof.body.artifact.id);
  const r = await api(fx.hub, 'GET', `/api/artifacts/${prof.body.artifact.id}/analysis`);
  assert.equal(r.status, 422);
  assert.match(r.body.error, /not a heap snapshot/);
  const s1 = await snapshot(p1);
  const s2 = await snapshot(p2);
  const cross = await api(fx.hub, 'GET', `/api/artifacts/${s1.id}/diff/${s2.id}`);
  assert.equal(cross.status, 422);
  assert.match(cross.body.error, /different processes/);
  assert.equal((await api(fx.hub, 'GET', `/api/artifacts/${'b'.repeat(32)}/analysis`)).status, 404);
});

test('deleting a snapshot removes its analysis and every diff it is part of', async () => {
  const { existsSync } = await import('node:fs');
  const { join } = await import('node:path');
  const app = await fx.app();
  const p = await processByPid(fx.hub, app.child.pid);
  const [a, b, c] = [await snapshot(p), await snapshot(p), await snapshot(p)];
  await result(`/api/artifacts/${b.id}/analysis`);
  await result(`/api/artifacts/${a.id}/diff/${b.id}`);
  await result(`/api/artifacts/${b.id}/diff/${c.id}`);
  await result(`/api/artifacts/${a.id}/diff/${c.id}`);
  const cache = (name) => join(fx.hub.dataDir, 'artifacts', name);
  for (const name of [`${b.id}.analysis.json`, `diff-${a.id}-${b.id}.json`, `diff-${b.id}-${c.id}.json`, `diff-${a.id}-${c.id}.json`]) {
    assert.ok(existsSync(cache(name)), `${name} cached`);
  }
  const del = await api(fx.hub, 'DELETE', `/api/artifacts/${b.id}`);
  assert.equal(del.status, 200, JSON.stringify(del.body));
  for (const name of [b.file_name, `${b.id}.analysis.json`, `diff-${a.id}-${b.id}.json`, `diff-${b.id}-${c.id}.json`]) {
    assert.ok(!existsSync(cache(name)), `${name} removed with the snapshot`);
  }
  assert.ok(existsSync(cache(`diff-${a.id}-${c.id}.json`)), 'a diff of two other snapshots stays');
});
