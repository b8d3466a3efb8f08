#!/usr/bin/env node
// CPU overhead of an active cpu_profile on a busy HTTP server.
//
//   node bench/cpu-profile/run.mjs [--rounds 3] [--seconds 10] [--warmup 5] [--connections 32]
//                                  [--interval-us U] [--json out.json]
//
// One perf-hub, one server (server.cjs: node:http + @corp/perf-agent, a little JSON work per
// request), wrk (apt-get install -y wrk) as the load generator in its own process. After a
// warm-up, alternating rounds: baseline, profiled (a cpu_profile of the whole round through the
// hub), baseline, … Reports requests/s, p50/p99 latency and the server's CPU time per request.
import { spawn, execFileSync } from 'node:child_process';
import { readFileSync, rmSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir, loadavg, cpus } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
const { ROOT, H, opt, onExitCleanup } = await import(join(HERE, '..', 'common.mjs'));
const ROUNDS = Number(opt('rounds', '3'));
const SECONDS = Number(opt('seconds', '10'));
const CONNS = Number(opt('connections', '32'));
const WARMUP = Number(opt('warmup', '5'));
const INTERVAL_US = opt('interval-us', '') ? Number(opt('interval-us')) : null;
const JSON_OUT = opt('json', '');

try {
  execFileSync('wrk', ['--version'], { stdio: 'ignore' });
} catch (e) {
  if (e.code === 'ENOENT') {
    console.error('wrk not found: apt-get install -y wrk');
    process.exit(2);
  }
}

// ---------- everything we start dies with us ----------
const TMP = mkdtempSync(join(tmpdir(), 'perf-cpuprofile-bench-'));
const children = new Set();
let hub = null;
function killAll() {
  for (const c of children) try { c.kill('SIGKILL'); } catch {}
  if (hub) try { hub.child.kill('SIGKILL'); } catch {}
  rmSync(TMP, { recursive: true, force: true });
}
onExitCleanup(killAll, `stopping children, removing ${TMP}`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** utime + stime of the process (all threads), or of one thread with `tid`. */
function cpuSeconds(pid, tid = null) {
  const f = readFileSync(tid ? `/proc/${pid}/task/${tid}/stat` : `/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

function toMs(v) {
  const m = /^([\d.]+)(us|ms|s|m)$/.exec(v);
  if (!m) return NaN;
  return Number(m[1]) * { us: 0.001, ms: 1, s: 1000, m: 60000 }[m[2]];
}

/** Runs wrk for `seconds`; resolves to {rps, p50, p99, requests, errors}. */
function wrk(port, seconds) {
  return new Promise((resolve, reject) => {
    const c = spawn('wrk', ['-t1', `-c${CONNS}`, `-d${seconds}s`, '--latency', '--timeout', '5s', `http://127.0.0.1:${port}/orders?id=42`], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(c);
    let out = '';
    c.stdout.on('data', (d) => (out += d));
    c.stderr.on('data', (d) => (out += d));
    const kill = setTimeout(() => c.kill('SIGKILL'), (seconds + 15) * 1000);
    c.on('exit', (code) => {
      clearTimeout(kill);
      children.delete(c);
      const rps = /Requests\/sec:\s+([\d.]+)/.exec(out);
      const pct = (p) => toMs((new RegExp(`^\\s+${p}%\\s+(\\S+)`, 'm').exec(out) || [])[1] || '');
      const req = /(\d+) requests in/.exec(out);
      const errs = /Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)/.exec(out);
      if (code !== 0 || !rps) return reject(new Error(`wrk failed (${code}): ${out}`));
      resolve({ rps: Number(rps[1]), p50: pct(50), p99: pct(99), requests: Number(req[1]), errors: errs ? errs[0] : null });
    });
  });
}

async function startServer() {
  const child = spawn(process.execPath, [join(HERE, 'server.cjs')], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, ...H.hubEnv(hub), PERF_AGENT_SPOOL_DIR: join(TMP, 'spool') },
  });
  children.add(child);
  child.on('exit', () => children.delete(child));
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  const m = await H.waitFor('server ready', () => /ready (\d+)/.exec(out), { timeout: 20000 });
  return { child, pid: child.pid, port: Number(m[1]) };
}

async function round(server, proc, mode, i) {
  let id = null;
  let artifact = null;
  if (mode === 'profiled') {
    const cmd = { kind: 'cpu_profile', seconds: SECONDS + 2 };
    if (INTERVAL_US) cmd.interval_us = INTERVAL_US;
    const r = await H.api(hub, 'POST', `/api/processes/${proc.id}/commands`, cmd);
    if (r.status !== 202) throw new Error(`POST cpu_profile: ${r.status} ${JSON.stringify(r.body)}`);
    id = r.body.artifact.id;
    // Start the load once the agent reports the profiler running (profiling progress).
    await H.waitFor('profile running', async () => {
      const a = (await H.api(hub, 'GET', `/api/artifacts/${id}`)).body;
      if (a.status === 'failed') throw new Error(`cpu_profile failed: ${a.error}`);
      return a.status === 'running' && a.progress && a.progress.stage === 'profiling';
    }, { timeout: 10000, interval: 20 });
  }
  const load0 = loadavg()[0];
  const cpu0 = cpuSeconds(server.pid);
  const main0 = cpuSeconds(server.pid, server.pid);
  const w = await wrk(server.port, SECONDS);
  const cpu = cpuSeconds(server.pid) - cpu0;
  const mainCpu = cpuSeconds(server.pid, server.pid) - main0;
  if (id) {
    artifact = await H.waitArtifact(hub, id, { timeout: 30000 });
    if (artifact.status !== 'ready') throw new Error(`cpu_profile ${id}: ${artifact.status} ${artifact.error}`);
  }
  const res = { i, mode, ...w, cpuS: cpu, cpuUsPerReq: (cpu * 1e6) / w.requests, mainCpuS: mainCpu, mainUsPerReq: (mainCpu * 1e6) / w.requests, load: [load0, loadavg()[0]], profileBytes: artifact ? artifact.size : null };
  console.error(`#  ${i} ${mode.padEnd(8)} ${w.rps.toFixed(0)} req/s  p50 ${w.p50.toFixed(2)} ms  p99 ${w.p99.toFixed(2)} ms  cpu ${cpu.toFixed(2)} s (main ${mainCpu.toFixed(2)})  load ${load0.toFixed(2)}${artifact ? `  profile ${artifact.size} B` : ''}${w.errors ? `  ${w.errors}` : ''}`);
  return res;
}

const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
const pctDiff = (a, b) => `${(((a - b) / b) * 100 >= 0 ? '+' : '')}${(((a - b) / b) * 100).toFixed(1)} %`;

function table(results) {
  const L = [];
  L.push('| round | mode | req/s | p50 ms | p99 ms | server CPU s (main thread) | CPU µs/req | main-thread µs/req | load (1 min) |');
  L.push('|---:|---|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of results) L.push(`| ${r.i} | ${r.mode} | ${r.rps.toFixed(0)} | ${r.p50.toFixed(2)} | ${r.p99.toFixed(2)} | ${r.cpuS.toFixed(2)} (${r.mainCpuS.toFixed(2)}) | ${r.cpuUsPerReq.toFixed(1)} | ${r.mainUsPerReq.toFixed(1)} | ${r.load[0].toFixed(2)} |`);
  const b = results.filter((r) => r.mode === 'baseline');
  const p = results.filter((r) => r.mode === 'profiled');
  L.push('');
  L.push('| mean of rounds | baseline | cpu_profile active | difference |');
  L.push('|---|---:|---:|---:|');
  for (const [name, k, f] of [['req/s', 'rps', 0], ['p50 ms', 'p50', 2], ['p99 ms', 'p99', 2], ['server CPU µs/req (all threads)', 'cpuUsPerReq', 1], ['main-thread CPU µs/req', 'mainUsPerReq', 1]]) {
    const mb = mean(b.map((r) => r[k]));
    const mp = mean(p.map((r) => r[k]));
    L.push(`| ${name} | ${mb.toFixed(f)} | ${mp.toFixed(f)} | ${pctDiff(mp, mb)} |`);
  }
  const range = (xs, k) => `${Math.min(...xs.map((r) => r[k])).toFixed(0)}–${Math.max(...xs.map((r) => r[k])).toFixed(0)}`;
  L.push('');
  L.push(`req/s range: baseline ${range(b, 'rps')}, profiled ${range(p, 'rps')}`);
  return L.join('\n');
}

console.error(`# cpu-profile bench: ${ROUNDS}×2 rounds of ${SECONDS} s, wrk -t1 -c${CONNS}, node ${process.version}, ${cpus().length} cpus, load ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
const results = [];
let server = null;
try {
  hub = await H.startHub({ dataDir: join(TMP, 'hub') });
  server = await startServer();
  const proc = await H.processByPid(hub, server.pid, { timeout: 20000 });
  console.error(`# warm-up ${WARMUP} s`);
  await wrk(server.port, WARMUP);
  let i = 0;
  for (let r = 0; r < ROUNDS; r++) {
    for (const mode of ['baseline', 'profiled']) {
      await sleep(1000);
      results.push(await round(server, proc, mode, ++i));
    }
  }
} catch (err) {
  console.error(`bench failed: ${err.stack || err}`);
  process.exitCode = 1;
} finally {
  if (server) server.child.kill('SIGTERM');
  if (hub) await hub.stop().catch(() => {});
}
if (results.some((r) => r.mode === 'baseline') && results.some((r) => r.mode === 'profiled')) {
  console.log(table(results));
  if (JSON_OUT) writeFileSync(JSON_OUT, JSON.stringify(results, null, 2));
}
