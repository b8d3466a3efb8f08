// The agent's spool as a production host has it: per user, private, never through a symlink,
// swept of dead processes' files, and bounded so captures never fill the app's disk. The
// second-user cases run a real app as uid 65534 (nobody) through setpriv when the tests run as
// root (CI does); they are skipped, with the reason, otherwise.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, writeFileSync, readdirSync, existsSync, rmSync, symlinkSync, chownSync, statSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { hubFixture, api, processByPid, waitArtifact, waitFor, tempDir, cleanup, startApp, hubEnv, ROOT } from './helpers.mjs';

const fx = hubFixture();
const NOBODY = 65534;
const isRoot = process.getuid && process.getuid() === 0;

async function snapshot(app) {
  const p = await processByPid(fx.hub, app.child.pid);
  const res = await api(fx.hub, 'POST', `/api/processes/${p.id}/commands`, { kind: 'heap_snapshot' });
  if (res.status !== 202) return { refused: res.body.error || JSON.stringify(res.body), status: res.status };
  return waitArtifact(fx.hub, res.body.artifact.id);
}

/**
 * A copy of the package that user nobody can read (the checkout may sit under a private
 * directory), and a machine Node binary it can run; null with a reason if there is none.
 */
function packageForNobody() {
  const dir = join(tmpdir(), `perf-agent-nobody-${process.pid}`);
  rmSync(dir, { recursive: true, force: true });
  const pkg = join(dir, 'node_modules', '@corp', 'perf-agent');
  mkdirSync(pkg, { recursive: true });
  for (const f of ['package.json', 'index.js', 'register.js', 'binding.js', 'lib']) cpSync(join(ROOT, f), join(pkg, f), { recursive: true });
  for (const f of readdirSync(ROOT).filter((f) => f.endsWith('.node'))) cpSync(join(ROOT, f), join(pkg, f));
  cpSync(join(ROOT, '__test__', 'fixtures', 'app.js'), join(dir, 'app.js'));
  execFileSync('chmod', ['-R', 'a+rX', dir]);
  const node = ['/usr/bin/node', '/usr/local/bin/node'].find((n) => existsSync(n));
  if (!node) return { skip: 'no system Node binary user nobody can run' };
  try {
    execFileSync('setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', node, '-e', `require(${JSON.stringify(pkg)})`], { cwd: dir });
  } catch (e) {
    return { skip: `user nobody cannot load the addon here: ${e.message}` };
  }
  return { dir, node };
}

function asNobody(env, pkgInfo) {
  return startApp(null, {
    script: join(pkgInfo.dir, 'app.js'), node: pkgInfo.node, cwd: pkgInfo.dir,
    wrap: ['setpriv', `--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups'],
    env: hubEnv(fx.hub, { TMPDIR: '/tmp', HOME: '/tmp', ...env }),
  });
}

test('a second user gets its own spool: a root-owned shared spool dir does not break its captures', { skip: !isRoot && 'needs root to run an app as another user' }, async (t) => {
  const pkgInfo = packageForNobody();
  if (pkgInfo.skip) return t.skip(pkgInfo.skip);
  // What the old shared default looked like, made by another user's agent first.
  mkdirSync('/tmp/perf-agent-spool', { recursive: true, mode: 0o700 });
  rmSync(`/tmp/perf-agent-spool-${NOBODY}`, { recursive: true, force: true });
  const app = await asNobody({}, pkgInfo);
  const art = await snapshot(app);
  assert.equal(art.status, 'ready', art.error || art.refused);
  const own = statSync(`/tmp/perf-agent-spool-${NOBODY}`);
  assert.equal(own.uid, NOBODY);
  assert.equal(own.mode & 0o777, 0o700);
  await app.kill();
  rmSync(pkgInfo.dir, { recursive: true, force: true });
});

test("a spool dir pre-created by another user (a symlink to the attacker's dir) is refused, nothing written there", { skip: !isRoot && 'needs root to act as two users' }, async (t) => {
  const pkgInfo = packageForNobody();
  if (pkgInfo.skip) return t.skip(pkgInfo.skip);
  const loot = tempDir('perf-agent-attacker-');
  chmodSync(loot, 0o777);
  const victimPath = `/tmp/perf-agent-spool-${NOBODY}`;
  rmSync(victimPath, { recursive: true, force: true });
  symlinkSync(loot, victimPath);
  try {
    const app = await asNobody({}, pkgInfo);
    const art = await snapshot(app);
    const reason = art.refused || art.error || '';
    assert.notEqual(art.status, 'ready');
    assert.match(reason, /symlink/);
    assert.deepEqual(readdirSync(loot), [], 'no spool file in the attacker\'s directory');
    await app.kill();
  } finally {
    rmSync(victimPath, { force: true });
    cleanup(loot);
    rmSync(pkgInfo.dir, { recursive: true, force: true });
  }
});

test("another user's directory at the spool path is refused", { skip: !isRoot && 'needs root to give a directory away' }, async () => {
  const spool = join(tempDir('perf-agent-spool-owner-'), 'spool');
  mkdirSync(spool, { mode: 0o700 });
  chownSync(spool, NOBODY, NOBODY);
  const app = await fx.app({ env: { PERF_AGENT_SPOOL_DIR: spool } });
  const art = await snapshot(app);
  assert.match(art.refused || art.error || '', /belongs to uid 65534/);
  await app.kill();
});

test('spool files of a process that died mid-upload are swept when an agent starts', async () => {
  const spool = join(tempDir('perf-agent-sweep-'), 'spool');
  mkdirSync(spool, { mode: 0o700 });
  const dead = 4194305; // above the kernel's pid_max ceiling: never a live process
  writeFileSync(join(spool, `${dead}-a1b2c3d4a1b2c3d4.heapsnapshot`), 'x'.repeat(1000));
  mkdirSync(join(spool, `${dead}-a1b2c3d5a1b2c3d5-perf`));
  writeFileSync(join(spool, `${process.pid}-0123456789abcdef.cpuprofile`), '{}'); // a live process's file
  writeFileSync(join(spool, `${dead}-report.log`), 'a user file, not a spool name');
  const app = await fx.app({ env: { PERF_AGENT_SPOOL_DIR: spool } });
  await waitFor('stale spool files swept', () => !readdirSync(spool).some((f) => f.startsWith(`${dead}-a1b2`)));
  assert.deepEqual(readdirSync(spool).sort(), [`${process.pid}-0123456789abcdef.cpuprofile`, `${dead}-report.log`].sort());
  await app.kill();
});

test('a capture that would exceed the spool cap is refused with the reason, and the app runs on', async () => {
  const spool = join(tempDir('perf-agent-cap-'), 'spool');
  const app = await fx.app({ env: { PERF_AGENT_SPOOL_DIR: spool, PERF_AGENT_SPOOL_MAX_MB: '1', HEAP_MB: '5' } });
  const art = await snapshot(app);
  assert.equal(art.status === 'ready', false);
  assert.match(art.refused || art.error || '', /not enough room to spool/);
  app.send('status');
  await app.waitLine(/^status /);
  // A small capture still fits.
  const p = await processByPid(fx.hub, app.child.pid);
  const res = await api(fx.hub, 'POST', `/api/processes/${p.id}/commands`, { kind: 'cpu_profile', seconds: 1 });
  // 64 MiB are needed before a capture of unknown size: the 1 MiB cap refuses that too.
  assert.equal(res.status, 409);
  assert.match(res.body.error, /not enough room/);
  await app.kill();
});
