#!/usr/bin/env node
// Heap snapshot cost: our snapshot through perf-hub vs V8's own v8.writeHeapSnapshot(),
// each in a fresh child app holding the same object-dense heap.
//
//   node bench/snapshot/run.mjs [--sizes 100,500] [--repeat N] [--only ours|baseline]
//                               [--baseline-with-agent] [--json out.json]
//
// Needs the release build (`npm run build`): the addon at the repo root and
// target/release/perf-hub (override with PERF_HUB_BIN). See README.md.
import { fork } from 'node:child_process';
import { readFileSync, writeFileSync, statSync, rmSync, mkdirSync, mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir, loadavg, cpus, totalmem } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
const { ROOT, H, opt, onExitCleanup } = await import(join(HERE, '..', 'common.mjs'));
// ---------- options ----------
const SIZES = opt('sizes', '100').split(',').map(Number).filter((n) => n > 0);
const ONLY = opt('only', '');
const JSON_OUT = opt('json', '');
const BASELINE_WITH_AGENT = process.argv.includes('--baseline-with-agent');
const REPEAT = Math.max(1, Number(opt('repeat', '1')));
const SAMPLE_MS = 50;

// ---------- process bookkeeping: everything we start dies with us ----------
const TMP = mkdtempSync(join(tmpdir(), 'perf-snapshot-bench-'));
const children = new Set();
let hub = null;
function killAll() {
  for (const c of children) {
    try { c.kill('SIGKILL'); } catch {}
  }
  if (hub) {
    try { hub.child.kill('SIGKILL'); } catch {}
  }
  rmSync(TMP, { recursive: true, force: true });
}
onExitCleanup(killAll, `stopping children, removing ${TMP}`);

// ---------- /proc sampling ----------
function procStatus(pid) {
  try {
    const s = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (k) => Number((new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(s) || [])[1] || 0);
    return { rss: kb('VmRSS') * 1024, hwm: kb('VmHWM') * 1024, threads: kb('Threads') };
  } catch {
    return null;
  }
}
function cpuSeconds(pid) {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(f[11]) + Number(f[12])) / 100; // utime + stime, USER_HZ = 100
  } catch {
    return NaN;
  }
}
/** Resets VmHWM to the current RSS (Linux ≥ 4.0: write 5 to clear_refs). */
function resetHwm(pid) {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}
/** Bytes in a file, or in all files of a directory (the agent's spool). */
function bytesOf(path) {
  try {
    const st = statSync(path);
    if (!st.isDirectory()) return st.size;
    return readdirSync(path).reduce((n, f) => n + bytesOf(join(path, f)), 0);
  } catch {
    return 0;
  }
}
class Sampler {
  constructor(pid, bytesPath = null) {
    this.pid = pid;
    this.bytesPath = bytesPath;
    this.samples = [];
    this.phase = 'idle';
    this.timer = setInterval(() => this.sample(), SAMPLE_MS);
  }
  sample() {
    const s = procStatus(this.pid);
    if (s) this.samples.push({ t: Date.now(), rss: s.rss, phase: this.phase, bytes: this.bytesPath ? bytesOf(this.bytesPath) : 0 });
  }
  stop() {
    clearInterval(this.timer);
    this.sample();
  }
  peak(from = 0, phase = null) {
    let m = 0;
    for (const s of this.samples) if (s.t >= from && (!phase || s.phase === phase) && s.rss > m) m = s.rss;
    return m;
  }
  /**
   * Splits a capture at the first sample where the output file has bytes: before it V8 builds
   * its snapshot graph (its own cost, the same in both modes), after it the snapshot is
   * serialized and streamed (where a second copy would show up).
   */
  phases(t0, tEnd, preRss) {
    const inCap = this.samples.filter((s) => s.t >= t0 && s.t <= tEnd);
    const i = inCap.findIndex((s) => s.bytes > 0);
    if (i < 0) return null;
    const build = inCap.slice(0, i);
    const ser = inCap.slice(i);
    const max = (xs) => xs.reduce((m, s) => Math.max(m, s.rss), 0);
    return {
      serializeStartS: (inCap[i].t - t0) / 1000,
      buildPeakExtra: max(build) - preRss,
      atSerializeStartExtra: inCap[i].rss - preRss,
      serializePeakExtra: max(ser) - preRss,
      serializeGrowth: max(ser) - inCap[i].rss,
    };
  }
  /** Output bytes at time t (the last sample before it). */
  bytesAt(t) {
    let b = 0;
    for (const s of this.samples) if (s.t <= t) b = s.bytes;
    return b;
  }
}

/** [s since start, extra RSS MiB, phase] every ~0.5 s (for the JSON output). */
function timeline(sampler, t0, preRss) {
  const out = [];
  let next = t0;
  for (const s of sampler.samples) {
    if (s.t < next) continue;
    next = s.t + 500;
    out.push([+((s.t - t0) / 1000).toFixed(2), +((s.rss - preRss) / MB).toFixed(1), s.phase]);
  }
  return out;
}

// ---------- child apps ----------
function startApp(mode, heapMb, { count = null, env = {} } = {}) {
  const maxOld = Math.ceil(heapMb * 2.5 + 512);
  const args = ['--mode', mode, '--heap-mb', String(heapMb)];
  if (count !== null) args.push('--count', String(count));
  const child = fork(join(HERE, 'app.cjs'), args, {
    cwd: ROOT,
    execArgv: ['--expose-gc', `--max-old-space-size=${maxOld}`],
    env: { ...process.env, ...env },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  children.add(child);
  const waiters = [];
  child.on('message', (m) => {
    for (const w of [...waiters]) {
      if (w.type === m.type) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(m);
      }
    }
  });
  const exited = new Promise((r) => child.once('exit', (code, sig) => { children.delete(child); r({ code, sig }); }));
  const next = (type, timeoutMs) =>
    new Promise((resolve, reject) => {
      const w = { type, resolve };
      waiters.push(w);
      const t = setTimeout(() => reject(new Error(`app ${mode}: no '${type}' within ${timeoutMs} ms`)), timeoutMs);
      exited.then(({ code, sig }) => reject(new Error(`app ${mode} exited (${code ?? sig}) waiting for '${type}'`)));
      const r = w.resolve;
      w.resolve = (m) => { clearTimeout(t); r(m); };
    });
  return {
    child, pid: child.pid, exited, next,
    ask(cmd, extra, type, timeoutMs = 60000) {
      const p = next(type, timeoutMs);
      child.send({ cmd, ...extra });
      return p;
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode) return;
      child.kill('SIGKILL');
      await exited;
    },
  };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const MB = 1024 * 1024;
const mb = (b) => (b / MB).toFixed(1);
const capTimeoutMs = (heapMb) => 180000 + heapMb * 600; // ~4–5× the measured 115 ms/MB

/** Lets RSS settle after the build; returns the pre-capture RSS (median of the last second). */
async function settle(app, sampler) {
  await sleep(2000);
  const last = sampler.samples.slice(-20).map((s) => s.rss).sort((a, b) => a - b);
  return last[Math.floor(last.length / 2)];
}

async function runBaseline(heapMb, count) {
  const env = BASELINE_WITH_AGENT ? { ...H.hubEnv(hub), BENCH_START_AGENT: '1', PERF_AGENT_SPOOL_DIR: join(TMP, 'spool') } : {};
  const app = startApp('baseline', heapMb, { count, env });
  const ready = await app.next('ready', 600000);
  const file = join(TMP, `baseline-${heapMb}.heapsnapshot`);
  const sampler = new Sampler(app.pid, file);
  const preRss = await settle(app, sampler);
  const hwmReset = resetHwm(app.pid);
  const cpu0 = cpuSeconds(app.pid);
  const load0 = loadavg()[0];
  await app.ask('mark', {}, 'marked');
  const t0 = Date.now();
  sampler.phase = 'capture';
  const done = await app.ask('snapshot', { file }, 'snapshot-done', capTimeoutMs(heapMb));
  const elapsed = Date.now() - t0;
  const tEnd = Date.now();
  sampler.phase = 'after';
  await sleep(300);
  sampler.stop();
  const lag = await app.ask('report', {}, 'report');
  const st = procStatus(app.pid);
  const cpu1 = cpuSeconds(app.pid);
  const size = statSync(file).size;
  rmSync(file, { force: true });
  await app.stop();
  return {
    kind: 'writeHeapSnapshot', withAgent: BASELINE_WITH_AGENT, heapMb, count: ready.count, heapUsed: ready.heapUsed, buildMs: ready.buildMs,
    wallMs: done.wallMs, elapsedMs: elapsed, pauseMs: lag.maxGapMs, stalledMs: lag.stalledMs, eldMaxMs: lag.eldMaxMs,
    gaps: lag.gaps, preRss, peakRss: sampler.peak(t0), hwm: hwmReset ? st.hwm : null, rssAfter: st.rss,
    phases: sampler.phases(t0, tEnd, preRss),
    size, cpuS: cpu1 - cpu0, load: [load0, loadavg()[0]],
    timeline: timeline(sampler, t0, preRss),
  };
}

async function runOurs(heapMb, count) {
  const spool = join(TMP, 'spool');
  mkdirSync(spool, { recursive: true });
  const app = startApp('agent', heapMb, { count, env: { ...H.hubEnv(hub), PERF_AGENT_SPOOL_DIR: spool } });
  const ready = await app.next('ready', 600000);
  const proc = await H.processByPid(hub, app.pid, { timeout: 30000 });
  const sampler = new Sampler(app.pid, spool);
  const hubSampler = new Sampler(hub.child.pid);
  const preRss = await settle(app, sampler);
  const hubPre = hubSampler.samples.at(-1).rss;
  const hwmReset = resetHwm(app.pid);
  const cpu0 = cpuSeconds(app.pid);
  const load0 = loadavg()[0];
  await app.ask('mark', {}, 'marked');
  sampler.phase = 'pending';
  const t0 = Date.now();
  const r = await H.api(hub, 'POST', `/api/processes/${proc.id}/commands`, { kind: 'heap_snapshot', force: true });
  if (r.status !== 202) throw new Error(`POST command: ${r.status} ${JSON.stringify(r.body)}`);
  const id = r.body.artifact.id;
  const seen = {}; // status -> first time seen (ms since POST)
  let a;
  let uploadedSamples = [];
  const deadline = t0 + capTimeoutMs(heapMb);
  for (;;) {
    a = (await H.api(hub, 'GET', `/api/artifacts/${id}`)).body;
    const now = Date.now();
    if (!(a.status in seen)) seen[a.status] = now - t0;
    sampler.phase = a.status;
    if (a.status === 'uploading') uploadedSamples.push({ t: now, b: a.uploaded_bytes });
    if (a.status === 'ready' || a.status === 'failed') break;
    if (now > deadline) throw new Error(`artifact ${id} still ${a.status} after ${now - t0} ms`);
    await sleep(50);
  }
  const wallMs = Date.now() - t0;
  if (a.status === 'failed') throw new Error(`snapshot failed: ${a.error}`);
  sampler.phase = 'after';
  await sleep(300);
  sampler.stop();
  hubSampler.stop();
  const lag = await app.ask('report', {}, 'report');
  const st = procStatus(app.pid);
  const cpu1 = cpuSeconds(app.pid);
  // Upload time: first poll that saw `uploading` (or the capture end) to the first `ready` poll.
  const upStart = seen.uploading ?? seen.running ?? 0;
  const uploadMs = seen.ready - upStart;
  // Backlog: what the main thread had produced but the worker had not yet written to the spool
  // when the main thread resumed (end of its longest pause, from the app's lag tracker).
  const longest = lag.gaps.reduce((m, g) => (g[1] > (m ? m[1] : 0) ? g : m), null);
  const resumeAt = longest ? t0 + longest[0] + longest[1] : null;
  const backlogAtResume = resumeAt ? a.size - sampler.bytesAt(resumeAt) : null;
  const spoolDoneAt = sampler.samples.find((x) => x.bytes >= a.size - 512 * 1024);
  app.child.send({ cmd: 'exit' }); // agent.stop(): says goodbye to the hub
  await Promise.race([app.exited, sleep(3000)]);
  await app.stop();
  return {
    kind: 'ours (hub)', heapMb, count: ready.count, heapUsed: ready.heapUsed, buildMs: ready.buildMs,
    wallMs, seen, pauseMs: lag.maxGapMs, stalledMs: lag.stalledMs, eldMaxMs: lag.eldMaxMs, gaps: lag.gaps,
    preRss, peakRss: sampler.peak(t0), peakRssRunning: sampler.peak(t0, 'running'), peakRssUploading: sampler.peak(t0, 'uploading'),
    hwm: hwmReset ? st.hwm : null, rssAfter: st.rss, size: a.size, uploadMs, uploadMBps: a.size / MB / (uploadMs / 1000),
    hubPreRss: hubPre, hubPeakRss: hubSampler.peak(t0), estimate: r.body.artifact.estimate, cpuS: cpu1 - cpu0,
    load: [load0, loadavg()[0]], artifactId: id,
    timeline: timeline(sampler, t0, preRss),
    phases: sampler.phases(t0, t0 + (seen.uploading ?? wallMs), preRss),
    backlogAtResume, spoolDoneAfterResumeMs: spoolDoneAt && resumeAt ? spoolDoneAt.t - resumeAt : null,
  };
}

// ---------- report ----------
function table(results) {
  const bySize = new Map();
  for (const r of results) {
    const key = `${r.heapMb}/${r.rep}`;
    if (!bySize.has(key)) bySize.set(key, { heapMb: r.heapMb, rep: r.rep });
    bySize.get(key)[r.kind === 'writeHeapSnapshot' ? 'base' : 'ours'] = r;
  }
  const lines = [];
  for (const { heapMb, rep, base, ours } of bySize.values()) {
    const x = (r, f) => (r ? f(r) : '—');
    const row = (name, f, diff) => {
      const d = base && ours && diff ? diff(ours, base) : '';
      lines.push(`| ${name} | ${x(ours, f)} | ${x(base, f)} | ${d} |`);
    };
    const anyR = ours || base;
    lines.push('');
    lines.push(`### heap target ${heapMb} MiB${REPEAT > 1 ? ` (repetition ${rep})` : ''} — heapUsed ${mb(anyR.heapUsed)} MiB, ${anyR.count.toLocaleString('en')} records`);
    lines.push('');
    lines.push('| metric | ours (hub) | v8.writeHeapSnapshot | ours − baseline |');
    lines.push('|---|---:|---:|---:|');
    row('wall time s (ours: POST → ready; baseline: the call)', (r) => (r.wallMs / 1000).toFixed(1), (o, b) => `${((o.wallMs - b.wallMs) / 1000).toFixed(1)} s`);
    row('  ours: POST → uploading (capture) s', (r) => (r.seen ? ((r.seen.uploading ?? NaN) / 1000).toFixed(1) : '—'));
    row('main thread paused, longest gap s', (r) => (r.pauseMs / 1000).toFixed(2), (o, b) => `${((o.pauseMs - b.pauseMs) / 1000).toFixed(2)} s`);
    row('  total stalled (gaps > 50 ms) s', (r) => (r.stalledMs / 1000).toFixed(2));
    row('RSS before capture MiB', (r) => mb(r.preRss));
    row('**peak extra RSS MiB** (sampled 50 ms)', (r) => `**${mb(r.peakRss - r.preRss)}**`, (o, b) => `**${mb(o.peakRss - o.preRss - (b.peakRss - b.preRss))}**`);
    row('peak extra RSS MiB (VmHWM, reset before)', (r) => (r.hwm ? mb(r.hwm - r.preRss) : 'n/a'), (o, b) => (o.hwm && b.hwm ? mb(o.hwm - o.preRss - (b.hwm - b.preRss)) : ''));
    row('  ours: peak extra while running / uploading MiB', (r) => (r.peakRssRunning ? `${mb(r.peakRssRunning - r.preRss)} / ${r.peakRssUploading ? mb(r.peakRssUploading - r.preRss) : '—'}` : '—'));
    const ph = (r, k) => (r.phases ? mb(r.phases[k]) : 'n/a');
    row('  build phase (V8 graph, before 1st byte): peak extra MiB', (r) => ph(r, 'buildPeakExtra'), (o, b) => (o.phases && b.phases ? mb(o.phases.buildPeakExtra - b.phases.buildPeakExtra) : ''));
    row('  serialize phase: extra at 1st byte → peak MiB', (r) => (r.phases ? `${mb(r.phases.atSerializeStartExtra)} → ${mb(r.phases.serializePeakExtra)}` : 'n/a'));
    row('  **serialize phase: RSS growth while streaming MiB**', (r) => (r.phases ? `**${mb(r.phases.serializeGrowth)}**` : 'n/a'), (o, b) => (o.phases && b.phases ? `**${mb(o.phases.serializeGrowth - b.phases.serializeGrowth)}**` : ''));
    row('  ours: spool backlog when main thread resumed MiB', (r) => (r.backlogAtResume != null ? `${mb(r.backlogAtResume)} (spool done ${(r.spoolDoneAfterResumeMs / 1000).toFixed(1)} s later)` : '—'));
    row('RSS kept after capture MiB (above pre)', (r) => mb(r.rssAfter - r.preRss));
    row('file size MiB', (r) => mb(r.size), (o, b) => `${mb(o.size - b.size)}`);
    row('upload MiB/s (size / uploading time)', (r) => (r.uploadMBps ? `${r.uploadMBps.toFixed(0)} (${(r.uploadMs / 1000).toFixed(1)} s)` : '—'));
    row('app CPU s during capture', (r) => r.cpuS.toFixed(1));
    row('hub RSS before → peak MiB', (r) => (r.hubPreRss ? `${mb(r.hubPreRss)} → ${mb(r.hubPeakRss)}` : '—'));
    row('load average (1 min) start → end', (r) => r.load.map((l) => l.toFixed(2)).join(' → '));
    if (base && ours) {
      const extra = ours.peakRss - ours.preRss - (base.peakRss - base.preRss);
      lines.push('');
      lines.push(`Goal: our peak extra RSS < V8's own + 64 MiB → ${mb(extra)} MiB over baseline: **${extra < 64 * MB ? 'MET' : 'NOT MET'}**`);
      if (ours.phases && base.phases) {
        const g = ours.phases.serializeGrowth - base.phases.serializeGrowth;
        lines.push(`Streaming only (RSS growth after the 1st byte, excludes V8's run-to-run graph-building variance): ours ${mb(ours.phases.serializeGrowth)} vs baseline ${mb(base.phases.serializeGrowth)} MiB → ${mb(g)} MiB: **${g < 64 * MB ? 'MET' : 'NOT MET'}**`);
      }
    }
  }
  if (REPEAT > 1) {
    lines.push('');
    lines.push('### all repetitions');
    lines.push('');
    lines.push('| heap MiB | rep | ours extra RSS MiB | baseline extra RSS MiB | ours − baseline MiB | streaming growth ours / baseline MiB | ours pause s | baseline pause s | load |');
    lines.push('|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const { heapMb, rep, base, ours } of bySize.values()) {
      if (!base || !ours) continue;
      const eo = ours.peakRss - ours.preRss;
      const eb = base.peakRss - base.preRss;
      const gs = (r) => (r.phases ? mb(r.phases.serializeGrowth) : 'n/a');
      lines.push(`| ${heapMb} | ${rep} | ${mb(eo)} | ${mb(eb)} | ${mb(eo - eb)} | ${gs(ours)} / ${gs(base)} | ${(ours.pauseMs / 1000).toFixed(1)} | ${(base.pauseMs / 1000).toFixed(1)} | ${base.load[0].toFixed(1)}–${ours.load[1].toFixed(1)} |`);
    }
  }
  return lines.join('\n');
}

// ---------- main ----------
console.error(`# snapshot bench: sizes ${SIZES.join(',')} MiB, node ${process.version}, ${cpus().length} cpus, ${mb(totalmem())} MiB RAM, load ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
const results = [];
try {
  if (ONLY !== 'baseline' || BASELINE_WITH_AGENT) {
    hub = await H.startHub({ dataDir: join(TMP, 'hub') });
    console.error(`# hub ${hub.agentAddr} / ${hub.httpAddr} (${process.env.PERF_HUB_BIN})`);
  }
  for (const heapMb of SIZES) for (let rep = 1; rep <= REPEAT; rep++) {
    let count = null;
    if (REPEAT > 1) console.error(`# ${heapMb} MiB: repetition ${rep}/${REPEAT}`);
    if (ONLY !== 'ours') {
      console.error(`# ${heapMb} MiB: baseline (v8.writeHeapSnapshot) …`);
      const b = { ...(await runBaseline(heapMb, null)), rep };
      count = b.count;
      results.push(b);
      console.error(`#   ${(b.wallMs / 1000).toFixed(1)} s, extra RSS ${mb(b.peakRss - b.preRss)} MiB, file ${mb(b.size)} MiB`);
    }
    if (ONLY !== 'baseline') {
      console.error(`# ${heapMb} MiB: ours (heap_snapshot via hub) …`);
      const o = { ...(await runOurs(heapMb, count)), rep };
      results.push(o);
      console.error(`#   ${(o.wallMs / 1000).toFixed(1)} s, extra RSS ${mb(o.peakRss - o.preRss)} MiB, file ${mb(o.size)} MiB`);
    }
  }
} catch (err) {
  console.error(`bench failed: ${err.stack || err}`);
  process.exitCode = 1;
} finally {
  if (hub) await hub.stop().catch(() => {});
}
if (results.length) {
  console.log(table(results));
  if (JSON_OUT) writeFileSync(JSON_OUT, JSON.stringify(results, null, 2));
}
