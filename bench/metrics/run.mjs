// Cost of the agent and of its metrics on a busy HTTP server, side by side in one run:
// copies of the same server — no agent, agent with metrics off, agent with metrics at the
// default 5 s and at 1 s (5x the default rate) — loaded in turn by wrk for
// several alternating rounds. Prints req/s, p99 and RSS for each, and the differences.
//   node bench/metrics/run.mjs [--rounds 3] [--seconds 8] [--connections 32]
// Needs `npm run build` (release addon + hub) and wrk (apt-get install -y wrk).
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
const { ROOT, H, opt, onExitCleanup } = await import(join(HERE, '..', 'common.mjs'));
const { startHub, hubEnv, cleanup, sleep } = H;
const o = { rounds: opt('rounds', '3'), seconds: opt('seconds', '8'), connections: opt('connections', '32') };

const MODES = {
  'no agent': { BENCH_NO_AGENT: '1' },
  'agent, metrics off': { PERF_AGENT_METRICS: '0' },
  'agent, metrics 5 s': {},
  'agent, metrics 5 s, no HTTP': { PERF_AGENT_METRICS_HTTP: '0' },
  'agent, metrics 1 s': { PERF_AGENT_METRICS_INTERVAL_MS: '1000' },
};
const children = [];
onExitCleanup(() => children.forEach((c) => c.kill('SIGKILL')));

async function startServer(hub, env) {
  const child = spawn(process.execPath, [join(HERE, '..', 'cpu-profile', 'server.cjs')], { cwd: ROOT, env: { ...process.env, ...hubEnv(hub), ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  let out = '';
  child.stdout.on('data', (d) => { out += d; });
  for (let i = 0; i < 200 && !/ready (\d+)/.test(out); i++) await sleep(50);
  const m = /ready (\d+)/.exec(out);
  if (!m) throw new Error('server did not start');
  return { child, port: Number(m[1]) };
}

const rssMb = (pid) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) / 1024;

function wrk(port, seconds) {
  return new Promise((resolve, reject) => {
    const c = spawn('wrk', ['-t1', `-c${o.connections}`, `-d${seconds}s`, '--latency', `http://127.0.0.1:${port}/orders?id=42`]);
    let out = '';
    c.stdout.on('data', (d) => { out += d; });
    c.on('error', reject);
    c.on('exit', () => {
      const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]);
      const p99 = /99%\s+([\d.]+)(us|ms|s)/.exec(out);
      const p99ms = p99 ? Number(p99[1]) * { us: 0.001, ms: 1, s: 1000 }[p99[2]] : NaN;
      resolve({ rps, p99ms });
    });
  });
}

const hub = await startHub();
try {
  const servers = {};
  for (const [mode, env] of Object.entries(MODES)) servers[mode] = await startServer(hub, env);
  for (const s of Object.values(servers)) await wrk(s.port, 3); // warm up the JIT
  const results = Object.fromEntries(Object.keys(MODES).map((m) => [m, []]));
  for (let r = 0; r < Number(o.rounds); r++) {
    for (const [mode, s] of Object.entries(servers)) {
      const w = await wrk(s.port, Number(o.seconds));
      results[mode].push({ ...w, rss: rssMb(s.child.pid) });
      console.error(`# round ${r + 1} ${mode.padEnd(20)} ${w.rps.toFixed(0)} req/s  p99 ${w.p99ms.toFixed(2)} ms  rss ${rssMb(s.child.pid).toFixed(1)} MB`);
    }
  }
  const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const base = results['no agent'];
  console.log(`\n| mode | req/s | vs no agent | p99 ms | RSS MB | vs no agent |\n|---|---:|---:|---:|---:|---:|`);
  for (const [mode, rs] of Object.entries(results)) {
    const rps = mean(rs.map((x) => x.rps));
    const rss = mean(rs.map((x) => x.rss));
    const dr = ((rps / mean(base.map((x) => x.rps)) - 1) * 100).toFixed(1);
    const dm = (rss - mean(base.map((x) => x.rss))).toFixed(1);
    console.log(`| ${mode} | ${rps.toFixed(0)} | ${dr} % | ${mean(rs.map((x) => x.p99ms)).toFixed(2)} | ${rss.toFixed(1)} | +${dm} |`);
  }
} finally {
  children.forEach((c) => c.kill('SIGTERM'));
  await hub.stop();
  cleanup(hub.dataDir);
}
