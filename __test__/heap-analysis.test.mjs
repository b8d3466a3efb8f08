// End-to-end tests of the heap snapshot analyser (crates/heap-analysis, bin `heap-analyze`;
// perf-hub's `analyze` / `diff` commands run the same code) on snapshots written by this very
// Node.js during the test, plus agreement with independent references:
// - memlab (`@memlab/core`): retained sizes of the top objects and of a test class, within 1%;
// - DevTools' own heap model (`heap-snapshot-toolkit`), when installed: same checks.
// Both references are optional dev dependencies: install with
//   PUPPETEER_SKIP_DOWNLOAD=1 npm i --ignore-scripts -D @memlab/core@2 heap-snapshot-toolkit
// (without them those tests are skipped, not failed). `HEAP_ANALYZE_BIN` points at a prebuilt
// binary; otherwise the test builds it with cargo and asks cargo where it is.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CRATE = path.join(ROOT, 'crates', 'heap-analysis');
const CLASS = 'HeapAnalysisProbeWidget';
const N = 1500; // instances alive in snapshot A (one chain)
const M = 700; // instances added before snapshot B (a second chain)

let dir;
let bin;
let snapA;
let snapB;

/** Path of the heap-analyze binary: HEAP_ANALYZE_BIN, else built by cargo (any target dir). */
function findBinary() {
  if (process.env.HEAP_ANALYZE_BIN) return process.env.HEAP_ANALYZE_BIN;
  const r = spawnSync(
    'cargo',
    ['build', '--manifest-path', path.join(CRATE, 'Cargo.toml'), '--bin', 'heap-analyze', '--message-format=json'],
    { encoding: 'utf8', maxBuffer: 64 << 20 },
  );
  assert.equal(r.status, 0, `cargo build failed:\n${r.stderr}`);
  for (const line of r.stdout.split('\n')) {
    if (!line.startsWith('{')) continue;
    const msg = JSON.parse(line);
    if (msg.reason === 'compiler-artifact' && msg.executable && msg.target?.name === 'heap-analyze') {
      return msg.executable;
    }
  }
  throw new Error('cargo did not report the heap-analyze executable');
}

function run(args) {
  const r = spawnSync(bin, args, { encoding: 'utf8', maxBuffer: 256 << 20 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function runJson(args) {
  const r = run([...args, '--json']);
  assert.equal(r.status, 0, `heap-analyze ${args.join(' ')} failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

/** Writes snapshot A (N instances in a chain), then B (plus M more in a second chain). */
function writeSnapshots() {
  const script = `
    const v8 = require('node:v8');
    class ${CLASS} {
      constructor(i, next) { this.index = i; this.payload = [i, i + 1, i + 2, i + 3]; this.next = next; }
    }
    let head = null;
    for (let i = 0; i < ${N}; i++) head = new ${CLASS}(i, head);
    globalThis.probeChain = head;
    v8.writeHeapSnapshot(process.argv[1]);
    let head2 = null;
    for (let i = 0; i < ${M}; i++) head2 = new ${CLASS}(i, head2);
    globalThis.probeChain2 = head2;
    v8.writeHeapSnapshot(process.argv[2]);
  `;
  const r = spawnSync(process.execPath, ['-e', script, snapA, snapB], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
}

/** Requires an optional package from the repo root or from bench/heap (where the bench installs it). */
function optionalRequire(name) {
  for (const base of [ROOT, path.join(ROOT, 'bench', 'heap')]) {
    try {
      return createRequire(path.join(base, 'package.json')).resolve(name);
    } catch {}
  }
  return null;
}

function within(actual, expected, rel, what) {
  const diff = Math.abs(actual - expected);
  assert.ok(diff <= rel * Math.max(1, expected), `${what}: ours ${actual}, reference ${expected} (>${rel * 100}% apart)`);
}

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'heap-analysis-test-'));
  snapA = path.join(dir, 'a.heapsnapshot');
  snapB = path.join(dir, 'b.heapsnapshot');
  bin = findBinary();
  writeSnapshots();
});

after(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

test('summary counts the retained instances of a class', () => {
  const a = runJson(['analyze', snapA]);
  const row = a.classes.find((c) => c.name === CLASS);
  assert.ok(row, `no ${CLASS} row`);
  assert.equal(row.count, N);
  // The chain head dominates the whole chain: the class retains at least its instances.
  assert.ok(row.retained_size >= row.shallow_size);
  assert.ok(a.snapshot.node_count > 10000);
  assert.ok(a.snapshot.total_size > row.retained_size);
  const head = a.largest_objects.find((o) => o.class === CLASS);
  assert.ok(head, 'the chain head is among the largest objects');
  assert.ok(head.path.length > 0 && head.path.at(-1).id === head.id, 'retainer path ends at the object');
  assert.ok(head.path.some((s) => s.edge === 'probeChain'), 'path goes through the global variable');
});

test('text output renders the tables', () => {
  const r = run(['analyze', snapA]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /Constructors by retained size/);
  assert.match(r.stdout, new RegExp(CLASS));
  assert.match(r.stderr, /reading/);
});

test('diff reports the added instances as new', () => {
  const d = runJson(['diff', snapA, snapB, '--top', '50']);
  const row = d.classes.find((c) => c.name === CLASS);
  assert.ok(row, `no ${CLASS} row in diff`);
  assert.equal(row.count_before, N);
  assert.equal(row.count_after, N + M);
  assert.equal(row.count_delta, M);
  assert.equal(row.new_count, M);
  assert.equal(row.deleted_count, 0);
  assert.ok(row.retained_delta > 0);
  // What grew most comes first: the probe class is near the top.
  assert.ok(d.classes.findIndex((c) => c.name === CLASS) < 5, 'probe class ranks among what grew');
  const newHead = d.new_objects.find((o) => o.class === CLASS);
  assert.ok(newHead, 'the new chain head is listed as a new object');
  // All listed new objects are absent from A (by id): check against A's own largest objects.
  const a = runJson(['analyze', snapA, '--top', '200']);
  const idsA = new Set(a.largest_objects.map((o) => o.id));
  for (const o of d.new_objects) assert.ok(!idsA.has(o.id), `object ${o.id} is in A`);
  assert.match(run(['diff', snapA, snapB]).stdout, /Classes that changed/);
});

test('truncated, corrupt and foreign inputs give an error, not a crash', () => {
  const bytes = fs.readFileSync(snapA);
  const cut = path.join(dir, 'cut.heapsnapshot');
  fs.writeFileSync(cut, bytes.subarray(0, Math.floor(bytes.length / 2)));
  let r = run(['analyze', cut]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /truncated/i);

  const bad = Buffer.from(bytes);
  const at = bad.indexOf('"edges":[') + 40;
  bad.write('x:{', at);
  const corrupt = path.join(dir, 'corrupt.heapsnapshot');
  fs.writeFileSync(corrupt, bad);
  r = run(['analyze', corrupt]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /corrupt/i);

  const foreign = path.join(dir, 'foreign.json');
  fs.writeFileSync(foreign, '{"hello": [1, 2, 3]}');
  r = run(['analyze', foreign]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /not a V8 heap snapshot/);

  r = run(['diff', snapA, cut]);
  assert.equal(r.status, 1);
  r = run(['analyze', path.join(dir, 'missing.heapsnapshot')]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /missing\.heapsnapshot/);
});

/** Retained size of a class from memlab's per-node retained sizes and dominators: the sum over
 * instances not dominated by another instance (DevTools' rule). memlab hands out a new wrapper
 * object per access, so nodes are compared by id. */
function classRetained(members) {
  const ids = new Set(members.map((n) => n.id));
  let sum = 0;
  for (const n of members) {
    let d = n.dominatorNode;
    let nested = false;
    for (let steps = 0; d && steps < 1e6; steps++) {
      if (ids.has(d.id)) { nested = true; break; }
      const up = d.dominatorNode;
      if (!up || up.id === d.id) break;
      d = up;
    }
    if (!nested) sum += n.retainedSize;
  }
  return sum;
}

test('retained sizes agree with memlab within 1%', async (t) => {
  const memlabPath = optionalRequire('@memlab/core');
  if (!memlabPath) {
    t.skip('@memlab/core not installed (PUPPETEER_SKIP_DOWNLOAD=1 npm i --ignore-scripts -D @memlab/core@2)');
    return;
  }
  const core = createRequire(import.meta.url)(memlabPath);
  const snap = await core.utils.getSnapshotFromFile(snapA, { buildNodeIdIndex: true, verbose: false });
  new core.TraceFinder().calculateAllNodesRetainedSizes(snap);
  const members = [];
  snap.nodes.forEach((n) => { if (n.type === 'object' && n.name === CLASS && n.self_size > 0) members.push(n); });
  assert.equal(members.length, N);
  const memlabClass = classRetained(members);

  // memlab's own rules (`--model memlab`): every top object and the class agree.
  const m = runJson(['analyze', snapA, '--model', 'memlab', '--top', '30']);
  for (const o of m.largest_objects) {
    within(o.retained_size, snap.getNodeById(o.id).retainedSize, 0.01, `retained size of ${o.class} @${o.id}`);
  }
  within(m.classes.find((c) => c.name === CLASS).retained_size, memlabClass, 0.01, `${CLASS} retained (memlab model)`);

  // Default DevTools rules: the class (retained only through the global object) agrees too, and
  // so do the top objects that are not internal arrays (DevTools moves those into their owner).
  const d = runJson(['analyze', snapA, '--top', '30']);
  within(d.classes.find((c) => c.name === CLASS).retained_size, memlabClass, 0.01, `${CLASS} retained (DevTools model)`);
  const head = d.largest_objects.find((o) => o.class === CLASS);
  within(head.retained_size, snap.getNodeById(head.id).retainedSize, 0.01, 'chain head retained size');
});

test('retained sizes and summary agree with DevTools (heap-snapshot-toolkit)', async (t) => {
  const toolkitPath = optionalRequire('heap-snapshot-toolkit');
  if (!toolkitPath) {
    t.skip('heap-snapshot-toolkit not installed');
    return;
  }
  const { parse } = await import(pathToFileURL(toolkitPath).href);
  const snap = await parse(fs.createReadStream(snapA));
  const ordinalOfId = new Map();
  for (let i = 0; i < snap.nodeCount; i++) {
    ordinalOfId.set(snap.nodes.getValue(i * snap.nodeFieldCount + snap.nodeIdOffset), i);
  }
  const ours = runJson(['analyze', snapA, '--top', '30']);
  for (const o of ours.largest_objects) {
    within(o.retained_size, snap.retainedSizes[ordinalOfId.get(o.id)], 0.01, `retained size of ${o.class} @${o.id}`);
  }
  const aggregates = Object.values(await snap.aggregatesWithFilter({}));
  const byName = new Map();
  for (const a of aggregates) {
    const s = byName.get(a.name) ?? { count: 0, self: 0, maxRet: 0 };
    byName.set(a.name, { count: s.count + a.count, self: s.self + a.self, maxRet: s.maxRet + a.maxRet });
  }
  // Every Summary row: class names (incl. plain-object shapes like `{a, b}` and `Detached …`),
  // counts, shallow sizes (after DevTools moves internal arrays into their owners), retained sizes.
  for (const c of ours.classes) {
    const ref = byName.get(c.name);
    assert.ok(ref, `DevTools has no ${c.name} row`);
    assert.equal(c.count, ref.count, `count of ${c.name}`);
    assert.equal(c.shallow_size, ref.self, `shallow size of ${c.name}`);
    within(c.retained_size, ref.maxRet, 0.01, `retained size of ${c.name}`);
  }
});
