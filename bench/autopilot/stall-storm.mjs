// Cooldown and hourly cap under a stall storm: a process that stalls 1.2 s every second for a
// minute, a stall rule with a 10 s cooldown, a hub capped at 3 automatic captures an hour.
// Counts the rule's artifacts and the audit's held entries. Run by hand; figures go in the note.
//
//   node bench/autopilot/stall-storm.mjs [--seconds 60] [--cooldown 10] [--cap 3]
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { opt, H, onExitCleanup } from '../common.mjs';

const seconds = Number(opt('seconds', 60));
const cooldown = Number(opt('cooldown', 10));
const cap = Number(opt('cap', 3));
const config = join(H.tempDir('perf-storm-'), 'hub.json');
writeFileSync(config, JSON.stringify({ autopilot: { max_captures_per_hour: cap } }));
const hub = await H.startHub({ extraArgs: ['--config', config] });
let app;
onExitCleanup(() => {
  if (app) app.child.kill('SIGKILL');
  hub.child.kill('SIGKILL');
  H.cleanup(hub.dataDir);
});
await H.api(hub, 'POST', '/api/rules', { name: 'storm', when: { blocked_ms: 1000 }, capture: { kind: 'cpu_profile', seconds: 1 }, cooldown_secs: cooldown });
app = await H.startApp('autopilot-app.js', { env: H.hubEnv(hub) });
const proc = await H.processByPid(hub, app.child.pid);
const stalls = Math.floor(seconds / 2.2);
app.send(`stalls ${stalls} 1200 1000`);
await app.waitLine(/^stalls-done/, seconds * 2000);
await H.sleep(3000);
const arts = (await H.api(hub, 'GET', `/api/artifacts?process_id=${proc.id}`)).body.filter((a) => a.requested_by === 'rule:storm');
const audit = (await H.api(hub, 'GET', '/api/audit')).body.filter((e) => e.actor === 'rule:storm');
const firstAt = arts.map((a) => Date.parse(a.created_at)).sort();
console.log(JSON.stringify({
  stalls, cooldown_secs: cooldown, cap,
  captures: arts.length, expected_at_most: Math.min(cap, Math.ceil(seconds / cooldown)),
  gaps_s: firstAt.slice(1).map((t, i) => (t - firstAt[i]) / 1000),
  held_by_cap_audited: audit.filter((e) => /hourly cap/.test(e.result)).length,
  statuses: arts.map((a) => a.status),
}));
process.exit(0);
