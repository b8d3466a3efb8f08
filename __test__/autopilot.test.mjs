// Autopilot (issue 13): capture rules that catch a stall or a near-OOM while it happens, with
// their guards, against a real hub and real Node processes with the addon.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startHub, startApp, hubEnv, processByPid, api, waitArtifact, waitFor, download, cleanup, tempDir, createToken, sleep } from './helpers.mjs';

const hubs = [];
const apps = [];
after(async () => {
  for (const a of apps) await a.kill();
  for (const h of hubs) {
    await h.stop();
    cleanup(h.dataDir);
  }
});

async function hubWith(config) {
  const extraArgs = [];
  if (config) {
    const file = join(tempDir('perf-autopilot-config-'), 'hub.json');
    writeFileSync(file, JSON.stringify(config));
    extraArgs.push('--config', file);
  }
  const hub = await startHub({ extraArgs });
  hubs.push(hub);
  return hub;
}

async function app(hub, { env = {}, nodeArgs = [] } = {}) {
  const a = await startApp('autopilot-app.js', { env: hubEnv(hub, { PERF_AGENT_METRICS_INTERVAL_MS: '500', ...env }), nodeArgs });
  apps.push(a);
  a.proc = await processByPid(hub, a.child.pid);
  return a;
}

async function ruleArtifacts(hub, processId, rule) {
  const { body } = await api(hub, 'GET', `/api/artifacts?process_id=${processId}`);
  return body.filter((x) => x.requested_by === `rule:${rule}`);
}

/** Every function name in a .cpuprofile that has samples of its own. */
function sampledFunctions(profile) {
  const hit = new Set(profile.samples);
  return new Set(profile.nodes.filter((n) => hit.has(n.id)).map((n) => n.callFrame.functionName));
}

test('rules CRUD: viewer 403, operator 201/200, app scope, validation 400, audit with the token', async () => {
  const hub = await hubWith();
  const viewer = createToken(hub, 'ana-viewer', 'viewer');
  const operator = createToken(hub, 'otto-operator', 'operator');
  const scoped = createToken(hub, 'sam-scoped', 'operator', '--apps', 'orders');
  const stall = { name: 'stall', when: { blocked_ms: 1000 }, capture: { kind: 'cpu_profile', seconds: 3 } };

  assert.equal((await api(hub, 'GET', '/api/rules', undefined, { token: viewer })).status, 403);
  assert.equal((await api(hub, 'POST', '/api/rules', stall, { token: viewer })).status, 403);
  const created = await api(hub, 'POST', '/api/rules', stall, { token: operator });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  assert.deepEqual(created.body.when, { blocked_ms: 1000 });
  assert.equal(created.body.capture.kind, 'cpu_profile');
  assert.equal(created.body.created_by, 'token:otto-operator');
  assert.equal((await api(hub, 'POST', '/api/rules', stall, { token: operator })).status, 409, 'same name twice');

  for (const bad of [
    { name: 'x', when: {} },
    { name: 'x', when: { heap_used_ratio: 1.5 } },
    { name: 'x', when: { cpu_percent: 90 } },
    { name: 'x y', when: { blocked_ms: 1000 } },
    { name: 'x', when: { blocked_ms: 1000 }, capture: { kind: 'heap_snapshot', force: true } },
    { name: 'x', when: { blocked_ms: 1000 }, surprise: 1 },
  ]) {
    const r = await api(hub, 'POST', '/api/rules', bad, { token: operator });
    assert.equal(r.status, 400, JSON.stringify(bad));
    assert.ok(r.body.error, JSON.stringify(r.body));
  }

  // App scope: the scoped token sees neither the global rule nor another app's; its own rule
  // without `apps` is limited to its apps; a rule for another app is refused.
  const other = await api(hub, 'POST', '/api/rules', { name: 'billing-oom', when: { heap_used_ratio: 0.9 }, apps: ['billing'] }, { token: operator });
  assert.equal(other.status, 201);
  assert.deepEqual((await api(hub, 'GET', '/api/rules', undefined, { token: scoped })).body, []);
  const mine = await api(hub, 'POST', '/api/rules', { name: 'orders-rss', when: { rss_bytes: 2 ** 31 } }, { token: scoped });
  assert.equal(mine.status, 201, JSON.stringify(mine.body));
  assert.deepEqual(mine.body.apps, ['orders']);
  assert.equal((await api(hub, 'POST', '/api/rules', { name: 'sneaky', when: { rss_bytes: 2 ** 31 }, apps: ['billing'] }, { token: scoped })).status, 403);
  assert.deepEqual((await api(hub, 'GET', '/api/rules', undefined, { token: scoped })).body.map((r) => r.name), ['orders-rss']);
  assert.equal((await api(hub, 'DELETE', '/api/rules/billing-oom', undefined, { token: scoped })).status, 404);
  assert.deepEqual((await api(hub, 'GET', '/api/rules', undefined, { token: operator })).body.map((r) => r.name).sort(), ['billing-oom', 'orders-rss', 'stall']);

  const del = await api(hub, 'DELETE', '/api/rules/stall', undefined, { token: operator });
  assert.equal(del.status, 200);
  assert.equal(del.body.deleted.name, 'stall');
  assert.equal((await api(hub, 'DELETE', '/api/rules/stall', undefined, { token: operator })).status, 404);

  // Persisted in hub.db: still there after a restart.
  await hub.stop();
  const again = await startHub({ dataDir: hub.dataDir });
  hubs.push(again);
  assert.deepEqual((await api(again, 'GET', '/api/rules')).body.map((r) => r.name).sort(), ['billing-oom', 'orders-rss']);

  const audit = (await api(again, 'GET', '/api/audit')).body;
  assert.ok(audit.some((e) => e.action === 'rule.create' && e.actor.startsWith('token:otto-operator') && e.target === 'stall'));
  assert.ok(audit.some((e) => e.action === 'rule.delete' && e.actor.startsWith('token:otto-operator') && e.target === 'stall'));
  assert.ok(audit.some((e) => e.action === 'rule.create' && e.actor.startsWith('token:sam-scoped') && /rejected/.test(e.result)));
});

test('a 3 s stall in a named function with a blocked_ms rule: a CPU profile naming it, with no operator command', async () => {
  const hub = await hubWith();
  const rule = { name: 'stall', when: { blocked_ms: 1000 }, capture: { kind: 'cpu_profile', seconds: 2 } };
  assert.equal((await api(hub, 'POST', '/api/rules', rule)).status, 201);
  const a = await app(hub);
  a.send('stall 3000');
  const [art] = await waitFor('a rule capture', () => ruleArtifacts(hub, a.proc.id, 'stall').then((l) => l.length && l), { timeout: 20000 });
  assert.equal(art.requested_by, 'rule:stall');
  assert.equal(art.trigger.rule, 'stall');
  // Started by the agent's own stall watcher (no round trip to the hub), while still blocked.
  assert.match(art.trigger.reason, /blocked for \d+ ms .*the agent started the capture \d+ ms after the threshold/);
  const done = await waitArtifact(hub, art.id);
  assert.equal(done.status, 'ready', done.error);
  assert.deepEqual(done.trigger, art.trigger, 'the single view carries the trigger too');
  const profile = JSON.parse((await download(hub, art.id)).toString());
  assert.ok(sampledFunctions(profile).has('autopilotBlockingFunction'), [...sampledFunctions(profile)].join(', '));
  const audit = (await api(hub, 'GET', '/api/audit')).body;
  const entry = audit.find((e) => e.actor === 'rule:stall' && e.action === 'rule.capture');
  assert.ok(entry, JSON.stringify(audit.slice(0, 5)));
  assert.ok(entry.detail.figures.blocked_ms >= 1000, JSON.stringify(entry));
  assert.equal(entry.detail.agent_initiated, true);
  assert.equal(entry.detail.artifact, art.id);
});

test('a stall rule that asks for a perf flame graph: perf runs during the stall and names the blocking function', async () => {
  const hub = await hubWith();
  const rule = { name: 'stall-perf', when: { blocked_ms: 500 }, capture: { kind: 'perf_flamegraph', seconds: 1 } };
  assert.equal((await api(hub, 'POST', '/api/rules', rule)).status, 201);
  const a = await app(hub, { nodeArgs: ['--perf-basic-prof-only-functions'] });
  assert.ok(a.proc.capabilities.includes('perf_flamegraph'), a.proc.capabilities.join());
  a.send('stall 3000');
  const [art] = await waitFor('a rule capture', () => ruleArtifacts(hub, a.proc.id, 'stall-perf').then((l) => l.length && l), { timeout: 20000 });
  assert.equal(art.kind, 'perf_flamegraph');
  assert.match(art.trigger.reason, /the agent started the capture/);
  const done = await waitArtifact(hub, art.id, { timeout: 60000 });
  assert.equal(done.status, 'ready', done.error);
  assert.match((await download(hub, art.id)).toString(), /autopilotBlockingFunction/);
});

test('a heap that climbs with a heap_used_ratio rule: a heap sampling profile is stored and the process lives', async () => {
  const hub = await hubWith();
  const a = await app(hub, { nodeArgs: ['--max-old-space-size=128'] });
  // V8's heap_size_limit is the old space (128 MB) plus a young-generation reserve that differs
  // between Node lines: pick the ratio at which ~60 MB are used, then climb to 85 MB (below the
  // 128 MB old space, so only an OOM of our own making could kill the app).
  const limit = await waitFor('a sample with the heap limit', async () => {
    const samples = (await api(hub, 'GET', `/api/processes/${a.proc.id}/metrics`)).body;
    return Array.isArray(samples) && samples.map((m) => m.js?.heap?.limit_bytes).find((l) => l > 0);
  });
  const ratio = Math.min(0.9, (60 * 2 ** 20) / limit);
  const rule = { name: 'near-oom', when: { heap_used_ratio: Number(ratio.toFixed(3)) }, capture: { kind: 'heap_sampling', seconds: 2 }, cooldown_secs: 3600 };
  assert.equal((await api(hub, 'POST', '/api/rules', rule)).status, 201);
  a.send('climb 0.5 85');
  const [art] = await waitFor('a rule capture', () => ruleArtifacts(hub, a.proc.id, 'near-oom').then((l) => l.length && l), { timeout: 60000, interval: 200 });
  assert.equal(art.kind, 'heap_sampling');
  assert.match(art.trigger.reason, /heap used/);
  const done = await waitArtifact(hub, art.id);
  assert.equal(done.status, 'ready', done.error);
  const profile = JSON.parse((await download(hub, art.id)).toString());
  assert.match(JSON.stringify(profile.head), /autopilotHeapClimber/);
  await a.waitLine(/^climbed/, 60000);
  await sleep(1000);
  assert.equal(a.child.exitCode, null, 'the capture did not kill the process');
  assert.equal(a.child.signalCode, null);
  assert.equal((await processByPid(hub, a.child.pid)).connected, true);
});

test('the agent\'s own heap snapshot pause never fires a stall rule', async () => {
  const hub = await hubWith();
  assert.equal((await api(hub, 'POST', '/api/rules', { name: 'stall', when: { blocked_ms: 1000 }, capture: { kind: 'cpu_profile', seconds: 1 } })).status, 201);
  const a = await app(hub, { env: { HEAP_MB: '60' } });
  const cmd = await api(hub, 'POST', `/api/processes/${a.proc.id}/commands`, { kind: 'heap_snapshot' });
  assert.equal(cmd.status, 202, JSON.stringify(cmd.body));
  const snap = await waitArtifact(hub, cmd.body.artifact.id, { timeout: 60000 });
  assert.equal(snap.status, 'ready', snap.error);
  const metrics = (await api(hub, 'GET', `/api/processes/${a.proc.id}/metrics`)).body;
  assert.ok(metrics.some((m) => m.state === 'blocked' && m.agent_capture === snap.id), 'the snapshot paused the loop long enough to count as a stall');
  await sleep(1500);
  assert.deepEqual(await ruleArtifacts(hub, a.proc.id, 'stall'), []);
});

test('cooldown: a process that stalls again and again gets one capture per cooldown', async () => {
  const hub = await hubWith();
  const a = await app(hub);
  // Made after the process connected: it reaches the agent pushed down its link.
  const rule = { name: 'once', when: { blocked_ms: 1000 }, capture: { kind: 'cpu_profile', seconds: 1 }, cooldown_secs: 3600 };
  assert.equal((await api(hub, 'POST', '/api/rules', rule)).status, 201);
  a.send('stalls 5 1500 1000');
  await a.waitLine(/^stalls-done/, 60000);
  await sleep(1000);
  const taken = await ruleArtifacts(hub, a.proc.id, 'once');
  assert.equal(taken.length, 1);
  assert.match(taken[0].trigger.reason, /the agent started the capture/);
});

test('a rule never queues behind a capture in flight: the agent refuses its stall capture as busy, the hub skips its own and audits which', async () => {
  const hub = await hubWith();
  const a = await app(hub);
  const manual = await api(hub, 'POST', `/api/processes/${a.proc.id}/commands`, { kind: 'cpu_profile', seconds: 12 });
  assert.equal(manual.status, 202, JSON.stringify(manual.body));
  const busyId = manual.body.artifact.id;
  await waitFor('the operator capture to run', async () => (await api(hub, 'GET', `/api/artifacts/${busyId}`)).body.status === 'running');
  // Agent-side: a stall rule fires during the capture; its artifact says the agent was busy.
  const stall = { name: 'stall-busy', when: { blocked_ms: 500 }, capture: { kind: 'cpu_profile', seconds: 1 } };
  assert.equal((await api(hub, 'POST', '/api/rules', stall)).status, 201);
  await sleep(500); // the rule reaches the agent down its link
  a.send('stall 1500');
  const [refused] = await waitFor('the stall rule artifact', () => ruleArtifacts(hub, a.proc.id, 'stall-busy').then((l) => l.length && l.every((x) => x.status === 'failed') && l));
  assert.match(refused.error, new RegExp(`busy: command ${busyId} is still capturing`));
  // Hub-side: a CPU rule fires during the same capture and is skipped, audited with the command it waited for.
  const hot = { name: 'hot-busy', when: { cpu_percent: 30, for_secs: 1 }, capture: { kind: 'cpu_profile', seconds: 1 } };
  assert.equal((await api(hub, 'POST', '/api/rules', hot)).status, 201);
  a.send('spin 4000');
  const skipped = await waitFor('the skip in the audit', async () =>
    (await api(hub, 'GET', '/api/audit')).body.find((e) => e.actor === 'rule:hot-busy' && /^skipped/.test(e.result)));
  assert.equal(skipped.result, `skipped: cpu_profile ${busyId} is still capturing on this process`);
  assert.deepEqual(await ruleArtifacts(hub, a.proc.id, 'hot-busy'), [], 'nothing queued behind the capture');
  const done = await waitArtifact(hub, busyId, { timeout: 30000 });
  assert.equal(done.status, 'ready', done.error);
});

test('the hourly cap holds across stalls (config-file rule and cap)', async () => {
  const hub = await hubWith({
    autopilot: { max_captures_per_hour: 2 },
    rules: [{ name: 'capped', when: { blocked_ms: 1000 }, capture: { kind: 'cpu_profile', seconds: 1 }, cooldown_secs: 1 }],
  });
  const listed = (await api(hub, 'GET', '/api/rules')).body;
  assert.equal(listed[0].source, 'config');
  assert.equal((await api(hub, 'DELETE', '/api/rules/capped')).status, 409, 'a config-file rule is removed in the file');
  const a = await app(hub);
  a.send('stalls 6 1500 2500');
  await a.waitLine(/^stalls-done/, 90000);
  await sleep(1000);
  assert.equal((await ruleArtifacts(hub, a.proc.id, 'capped')).length, 2);
  const audit = (await api(hub, 'GET', '/api/audit')).body;
  assert.ok(audit.some((e) => e.actor === 'rule:capped' && /hourly cap of 2/.test(e.result)), JSON.stringify(audit.filter((e) => e.actor === 'rule:capped')));
});

/** The newest figure `pick(sample)` of the process's stored samples. */
async function latestFigure(hub, processId, pick) {
  return waitFor('a sample with the figure', async () => {
    const samples = (await api(hub, 'GET', `/api/processes/${processId}/metrics`)).body;
    return Array.isArray(samples) && samples.map(pick).filter((x) => x > 0).pop();
  });
}

test('an rss_bytes rule fires when the process grows past it: a heap sampling profile by default', async () => {
  const hub = await hubWith();
  const a = await app(hub, { nodeArgs: ['--max-old-space-size=256'] });
  const rss = await latestFigure(hub, a.proc.id, (m) => m.native?.process?.rss_bytes);
  const rule = { name: 'big-rss', when: { rss_bytes: rss + 40 * 2 ** 20 }, cooldown_secs: 3600 };
  assert.equal((await api(hub, 'POST', '/api/rules', rule)).status, 201);
  // Nothing fires below the threshold.
  await sleep(1500);
  assert.deepEqual(await ruleArtifacts(hub, a.proc.id, 'big-rss'), []);
  a.send('climb 1 120');
  const [art] = await waitFor('an rss rule capture', () => ruleArtifacts(hub, a.proc.id, 'big-rss').then((l) => l.length && l), { timeout: 60000, interval: 200 });
  assert.equal(art.kind, 'heap_sampling', 'a memory rule samples by default');
  assert.match(art.trigger.reason, /RSS \d+ bytes \(rule: rss_bytes >= \d+\)/);
  const done = await waitArtifact(hub, art.id);
  assert.equal(done.status, 'ready', done.error);
  const audit = (await api(hub, 'GET', '/api/audit')).body;
  const entry = audit.find((e) => e.actor === 'rule:big-rss' && e.action === 'rule.capture');
  assert.ok(entry && entry.detail.figures.rss_bytes >= rule.when.rss_bytes, JSON.stringify(entry));
});

test('a cpu_percent rule fires only after the CPU stayed above it for for_secs, on a busy loop that never stalls', async () => {
  const hub = await hubWith();
  const a = await app(hub);
  const rule = { name: 'hot', when: { cpu_percent: 30, for_secs: 2 }, capture: { kind: 'cpu_profile', seconds: 1 }, cooldown_secs: 3600 };
  assert.equal((await api(hub, 'POST', '/api/rules', rule)).status, 201);
  // A burst shorter than for_secs fires nothing.
  a.send('spin 1000');
  await a.waitLine(/^spun/, 20000);
  await sleep(2000);
  assert.deepEqual(await ruleArtifacts(hub, a.proc.id, 'hot'), [], 'a 1 s burst is shorter than for_secs');
  a.send('spin 15000');
  const [art] = await waitFor('a cpu rule capture', () => ruleArtifacts(hub, a.proc.id, 'hot').then((l) => l.length && l), { timeout: 30000, interval: 200 });
  assert.match(art.trigger.reason, /CPU \d+ % for \d+ s \(rule: cpu_percent > 30 for 2 s\)/);
  const done = await waitArtifact(hub, art.id);
  assert.equal(done.status, 'ready', done.error);
  const profile = JSON.parse((await download(hub, art.id)).toString());
  // The spinning function (V8 may inline the work it calls into it).
  const sampled = sampledFunctions(profile);
  assert.ok(sampled.has('autopilotSpinningFunction') || sampled.has('autopilotBlockingFunction'), [...sampled].join(', '));
  const metrics = (await api(hub, 'GET', `/api/processes/${a.proc.id}/metrics`)).body;
  assert.ok(!metrics.some((m) => m.state === 'blocked'), 'the busy loop never counted as a stall');
});

test('leak hunt: the leaking class is the first suspect, held by the variable that holds it', async () => {
  const hub = await hubWith();
  const a = await app(hub);
  a.send('leak 300');
  await a.waitLine(/^leaking/);
  const bad = await api(hub, 'POST', `/api/processes/${a.proc.id}/commands`, { kind: 'leak_hunt', snapshots: 11, interval_secs: 1 });
  assert.equal(bad.status, 400);
  const cmd = await api(hub, 'POST', `/api/processes/${a.proc.id}/commands`, { kind: 'leak_hunt', snapshots: 3, interval_secs: 2 });
  assert.equal(cmd.status, 202, JSON.stringify(cmd.body));
  const report = cmd.body.artifact;
  assert.equal(report.kind, 'leak_report');
  assert.equal(report.status, 'running');
  const done = await waitArtifact(hub, report.id, { timeout: 120000 });
  assert.equal(done.status, 'ready', done.error);
  const body = JSON.parse((await download(hub, report.id)).toString());
  assert.equal(body.snapshots.length, 3);
  for (const id of body.snapshots) {
    const snap = (await api(hub, 'GET', `/api/artifacts/${id}`)).body;
    assert.equal(snap.kind, 'heap_snapshot');
    assert.equal(snap.status, 'ready');
  }
  const [first] = body.suspects;
  assert.equal(first.name, 'AutopilotLeakyEntry', JSON.stringify(body.suspects.slice(0, 3).map((s) => [s.name, s.counts])));
  assert.equal(first.counts.length, 3);
  assert.ok(first.counts[0] < first.counts[1] && first.counts[1] < first.counts[2], JSON.stringify(first.counts));
  assert.ok(first.retained[0] < first.retained[2]);
  assert.ok(first.retainer_path.some((s) => s.startsWith('autopilotLeakHolder in ')), JSON.stringify(first.retainer_path));
  assert.ok(first.retainer_path.at(-1).startsWith('AutopilotLeakyEntry @'), JSON.stringify(first.retainer_path));
  for (const s of body.suspects) assert.ok(!s.name.startsWith('(') && !s.name.startsWith('system / '), s.name);
  assert.ok(!body.suspects.some((s) => s.name === 'AutopilotChurn'), 'churn is no suspect');
});

test('leak hunt: cancel keeps the snapshots; a disconnect mid-hunt ends the report failed with the snapshots kept', async () => {
  const hub = await hubWith();
  const a = await app(hub);
  const start = () => api(hub, 'POST', `/api/processes/${a.proc.id}/commands`, { kind: 'leak_hunt', snapshots: 5, interval_secs: 30 });
  const snapshotsOf = async (id) => (await api(hub, 'GET', `/api/artifacts/${id}`)).body.progress?.snapshots || [];
  let hunt = (await start()).body.artifact;
  await waitFor('first snapshot', async () => (await snapshotsOf(hunt.id)).length === 1, { timeout: 30000 });
  const cancelled = await api(hub, 'POST', `/api/artifacts/${hunt.id}/cancel`);
  assert.equal(cancelled.status, 200, JSON.stringify(cancelled.body));
  assert.equal(cancelled.body.artifact.status, 'failed');
  assert.match(cancelled.body.artifact.error, /cancelled/);
  assert.equal((await api(hub, 'POST', `/api/artifacts/${hunt.id}/cancel`)).status, 409);
  const [kept] = await snapshotsOf(hunt.id);
  assert.equal((await api(hub, 'GET', `/api/artifacts/${kept}`)).body.status, 'ready');

  hunt = (await start()).body.artifact;
  await waitFor('first snapshot', async () => (await snapshotsOf(hunt.id)).length === 1, { timeout: 30000 });
  await a.kill();
  const failed = await waitArtifact(hub, hunt.id, { timeout: 30000 });
  assert.equal(failed.status, 'failed');
  assert.match(failed.error, /disconnect/);
  const [snap] = failed.progress.snapshots;
  assert.equal((await api(hub, 'GET', `/api/artifacts/${snap}`)).body.status, 'ready', 'the snapshot taken is kept');
});

test('leak hunt: same-named classes from two scripts stay apart, the leaking one with its location', async () => {
  const hub = await hubWith();
  const a = await app(hub);
  a.send('dups 300');
  await a.waitLine(/^leaking/);
  const cmd = await api(hub, 'POST', `/api/processes/${a.proc.id}/commands`, { kind: 'leak_hunt', snapshots: 3, interval_secs: 1 });
  assert.equal(cmd.status, 202, JSON.stringify(cmd.body));
  const done = await waitArtifact(hub, cmd.body.artifact.id, { timeout: 120000 });
  assert.equal(done.status, 'ready', done.error);
  const { suspects } = JSON.parse((await download(hub, done.id)).toString());
  const dups = suspects.filter((s) => s.name === 'AutopilotDup');
  assert.equal(dups.length, 1, 'only the leaking one grows: ' + JSON.stringify(suspects.map((s) => [s.name, s.location, s.counts])));
  const [leak] = dups;
  assert.equal(suspects[0], leak);
  assert.ok(leak.location && leak.location.line === 2 && leak.location.script_id > 0, JSON.stringify(leak.location));
  assert.ok(leak.counts.every((c) => c < 2000 + 10000) && leak.counts[0] < 2000, 'b\'s 2000 instances are not in its counts: ' + JSON.stringify(leak.counts));
});
