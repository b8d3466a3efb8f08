// How soon after a stall crosses a rule's threshold its capture starts, and whether each capture
// names the blocking function ("N of N runs"). Not a test: run by hand, figures go in the note.
//
//   node bench/autopilot/stall-latency.mjs [--runs 10] [--blocked-ms 1000] [--stall-ms 3000]
//   (PERF_HUB_BIN=target/debug/perf-hub to use the debug hub)
//
// Two figures per run:
// - agent: ms from the threshold to the dispatch of the capture, as the agent's stall watcher
//   reports it in the artifact's trigger reason;
// - profiler: ms from the threshold to the V8 profile's own startTime. The fixture prints the
//   stall's start on process.hrtime (CLOCK_MONOTONIC, ns), V8 stamps profiles with the same clock
//   (µs), so the difference is the whole path: watcher → executor → inspector worker → Profiler.start.
import { opt, H, onExitCleanup } from '../common.mjs';

const runs = Number(opt('runs', 10));
const blockedMs = Number(opt('blocked-ms', 1000));
const stallMs = Number(opt('stall-ms', 3000));

const hub = await H.startHub();
let app;
onExitCleanup(() => {
  if (app) app.child.kill('SIGKILL');
  hub.child.kill('SIGKILL');
  H.cleanup(hub.dataDir);
});
const rule = { name: 'bench-stall', when: { blocked_ms: blockedMs }, capture: { kind: 'cpu_profile', seconds: 2 }, cooldown_secs: 1 };
const created = await H.api(hub, 'POST', '/api/rules', rule);
if (created.status !== 201) throw new Error(`rule: ${created.status} ${JSON.stringify(created.body)}`);
app = await H.startApp('autopilot-app.js', { env: H.hubEnv(hub, { PERF_AGENT_METRICS_INTERVAL_MS: '1000' }) });
const proc = await H.processByPid(hub, app.child.pid);

const seen = new Set();
const agentMs = [];
const profilerMs = [];
let named = 0;
for (let i = 0; i < runs; i++) {
  const before = app.lines.length;
  app.send(`stall ${stallMs}`);
  const start = await H.waitFor('stall start', () => app.lines.slice(before).find((x) => x.l.startsWith('stall-start')));
  const startNs = BigInt(start.l.split(' ')[2]);
  const art = await H.waitFor('rule artifact', async () => {
    const { body } = await H.api(hub, 'GET', `/api/artifacts?process_id=${proc.id}`);
    return body.find((a) => a.requested_by === `rule:${rule.name}` && !seen.has(a.id));
  }, { timeout: 20000, interval: 100 });
  seen.add(art.id);
  const done = await H.waitArtifact(hub, art.id);
  if (done.status !== 'ready') throw new Error(`run ${i + 1}: ${done.status} ${done.error}`);
  const profile = JSON.parse((await H.download(hub, art.id)).toString());
  const thresholdUs = Number(startNs / 1000n) + blockedMs * 1000;
  const late = Number(/started the capture (\d+) ms after/.exec(art.trigger.reason)?.[1]);
  agentMs.push(late);
  profilerMs.push((profile.startTime - thresholdUs) / 1000);
  const hit = new Set(profile.samples);
  const names = profile.nodes.filter((n) => hit.has(n.id)).map((n) => n.callFrame.functionName);
  if (names.includes('autopilotBlockingFunction')) named++;
  console.log(`run ${i + 1}: agent ${late} ms, profiler start ${profilerMs.at(-1).toFixed(1)} ms after the threshold`);
  await H.waitFor('stall end', () => app.lines.slice(before).find((x) => x.l.startsWith('stall-end')));
  await H.sleep(1500); // past the rule's cooldown
}
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
console.log(JSON.stringify({
  runs,
  blocked_ms: blockedMs,
  agent_dispatch_ms: { median: median(agentMs), max: Math.max(...agentMs) },
  profiler_start_ms: { median: +median(profilerMs).toFixed(1), max: +Math.max(...profilerMs).toFixed(1) },
  profiles_naming_the_blocking_function: `${named} of ${runs}`,
}));
process.exit(0);
