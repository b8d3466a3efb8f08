// Leak hunt "N of N runs": an app leaking one class amid churn of others — held by an array in
// a module variable (`leak`), or by a Map only a closure holds (`memo`) — hunted with 3 snapshots
// 2 s apart; a run counts when the first suspect is the leaking class and its retainer path names
// the holding variable. Not a test: run by hand, figures go in the note.
//
//   node bench/autopilot/leak-hunt.mjs [--runs 10] [--per-tick 300]
//   (PERF_HUB_BIN=target/debug/perf-hub to use the debug hub)
import { opt, H, onExitCleanup } from '../common.mjs';

const runs = Number(opt('runs', 10));
const perTick = Number(opt('per-tick', 300));
const patterns = [
  { cmd: 'leak', class: 'AutopilotLeakyEntry', variable: 'autopilotLeakHolder' },
  { cmd: 'memo', class: 'AutopilotCachedResult', variable: 'autopilotMemoCache' },
];
const hub = await H.startHub();
let app;
onExitCleanup(() => {
  if (app) app.child.kill('SIGKILL');
  hub.child.kill('SIGKILL');
  H.cleanup(hub.dataDir);
});
const results = {};
for (const p of patterns) {
  let ok = 0;
  const ms = [];
  for (let i = 0; i < runs; i++) {
    app = await H.startApp('autopilot-app.js', { env: H.hubEnv(hub) });
    const proc = await H.processByPid(hub, app.child.pid);
    app.send(`${p.cmd} ${perTick}`);
    await app.waitLine(/^leaking/);
    const t0 = Date.now();
    const cmd = await H.api(hub, 'POST', `/api/processes/${proc.id}/commands`, { kind: 'leak_hunt', snapshots: 3, interval_secs: 2 });
    const done = await H.waitArtifact(hub, cmd.body.artifact.id, { timeout: 120000 });
    ms.push(Date.now() - t0);
    let verdict = `${done.status} ${done.error || ''}`;
    if (done.status === 'ready') {
      const report = JSON.parse((await H.download(hub, done.id)).toString());
      const first = report.suspects[0];
      const good = first && first.name === p.class && first.retainer_path.some((s) => s.startsWith(`${p.variable} in `));
      if (good) ok++;
      verdict = first ? `${first.name} ${JSON.stringify(first.counts)} via ${first.retainer_path.slice(-4).join(' → ')}` : 'no suspect';
    }
    console.log(`${p.cmd} run ${i + 1}: ${verdict}`);
    await app.kill();
    app = null;
  }
  results[p.cmd] = { first_suspect_right_with_variable: `${ok} of ${runs}`, hunt_ms_median: ms.sort((a, b) => a - b)[Math.floor(ms.length / 2)] };
}
console.log(JSON.stringify(results));
process.exit(0);
