// The Egg.js plugin as users install it: `npm pack` of @corp/perf-agent (the repo root) and of
// egg-perf-agent, then a fresh Egg 3 and a fresh Egg 4 app that installs both tarballs next to
// egg from the registry (`npm i egg@3 corp-perf-agent-0.1.0.tgz egg-perf-agent-0.1.0.tgz`),
// enables the plugin by `package: 'egg-perf-agent'` and runs a real cluster
// (`require('egg').startCluster` from a file) against a real perf-hub.
//
// Installs take minutes (network, cold npm cache): each app stays installed under
// .cache/egg-packed/egg<N>/<id>/ and is installed again, from scratch, only when a packed
// tarball's sha256 (or the app's files) change; EGG_PACKED_REINSTALL=1 forces it. Set
// PERF_TEST_NPM to use another npm than `npm` on PATH.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  mkdirSync, writeFileSync, readFileSync, copyFileSync, rmSync, renameSync, existsSync,
  lstatSync, readdirSync, realpathSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { join, basename, sep } from 'node:path';
import {
  ROOT, startHub, api, waitFor, waitArtifact, download, tempDir, cleanup, APP, SECRET,
} from './helpers.mjs';

const CACHE = join(ROOT, '.cache', 'egg-packed');
const NPM = process.env.PERF_TEST_NPM || 'npm';
const EGG_LINES = [
  { major: 3, spec: 'egg@3' },
  // 4.0.10 is the Egg 4 release checked in FIELD-NOTES.md; `egg@4` takes the newest 4.x.
  { major: 4, spec: 'egg@4' },
];
const INSTALL_TIMEOUT = 15 * 60 * 1000;

/**
 * The environment npm and the cluster get: without the variables npm sets for a script it runs
 * (`npm test`, `npm --prefix …`), which would otherwise redirect the install (npm_config_prefix)
 * or leak the repo's package metadata into it.
 */
function cleanEnv(extra = {}) {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^npm_(package|lifecycle)_/i.test(k) || k === 'INIT_CWD') continue;
    if (/^npm_config_(prefix|global|location|local_prefix|workspaces?|include_workspace_root|dry_run|omit|include|production|only|save|package_lock)$/i.test(k)) continue;
    env[k] = v;
  }
  return { ...env, ...extra };
}

/** Runs a command to completion: its stdout; rejects with all its output when it fails. */
function run(cmd, args, { cwd, env = cleanEnv(), timeout = INSTALL_TIMEOUT } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let stdout = '';
    child.stdout.on('data', (d) => { out += d; stdout += d; });
    child.stderr.on('data', (d) => { out += d; });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeout);
    child.once('error', (err) => { clearTimeout(timer); reject(err); });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(stdout);
      else reject(new Error(`${cmd} ${args.join(' ')} (in ${cwd}) failed: ${signal || `exit ${code}`}\n${out}`));
    });
  });
}

const pidAlive = (pid) => { try { process.kill(pid, 0); return true; } catch { return false; } };
const sha256 = (file) => createHash('sha256').update(readFileSync(file)).digest('hex');

/** `npm pack` of the package in `dir` into `dest`; `{ file, sha256, files }`. */
async function pack(dir, dest) {
  const out = await run(NPM, ['pack', '--json', '--pack-destination', dest], { cwd: dir, timeout: 5 * 60 * 1000 });
  const [info] = JSON.parse(out.slice(out.indexOf('[')));
  const file = join(dest, info.filename);
  return { file, sha256: sha256(file), files: info.files.map((f) => f.path) };
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** The app a user writes: plugin enabled by package name, config pointing at the hub, one route. */
function appFiles(name) {
  return {
    'package.json': JSON.stringify({ name, version: '1.0.0', private: true }, null, 2) + '\n',
    'config/plugin.js': `'use strict';
exports.perfAgent = {
  enable: true,
  package: 'egg-perf-agent',
};
`,
    'config/config.default.js': `'use strict';
module.exports = () => ({
  keys: '${name}-keys',
  // The test keeps logs and run files out of this (cached) app dir and out of $HOME.
  logger: { dir: process.env.EGG_PACKED_LOG_DIR },
  rundir: process.env.EGG_PACKED_RUN_DIR,
  perfAgent: {
    hub: process.env.EGG_PACKED_HUB,
    app: process.env.EGG_PACKED_APP,
    secret: process.env.EGG_PACKED_SECRET,
    labels: { installed_from: 'tarball' },
  },
});
`,
    'app/router.js': `'use strict';
module.exports = app => {
  app.router.get('/', app.controller.home.index);
};
`,
    'app/controller/home.js': `'use strict';
const { Controller } = require('egg');

class HomeController extends Controller {
  async index() {
    this.ctx.body = {
      pid: process.pid,
      perfAgent: require.resolve('@corp/perf-agent'),
      plugin: require.resolve('egg-perf-agent/package.json'),
    };
  }
}
module.exports = HomeController;
`,
    // A server entry as users write one (egg-scripts does the same). From a file: with
    // \`node -e\` every forked worker would run the -e code again and become a master.
    'server.js': `'use strict';
require('egg').startCluster({
  baseDir: __dirname,
  workers: Number(process.env.EGG_PACKED_WORKERS || 2),
  port: Number(process.env.EGG_PACKED_PORT),
});
`,
  };
}

function writeFiles(dir, files) {
  for (const [rel, text] of Object.entries(files)) {
    mkdirSync(join(dir, rel, '..'), { recursive: true });
    writeFileSync(join(dir, rel), text);
  }
}

/**
 * The installed app for one Egg line. Each install lives in its own dir, named by what went
 * into it (egg spec, both tarballs' sha256, the app's files): reused when it exists, else made
 * from scratch (a fresh dir, `npm i` exactly as in the README) and moved into place whole.
 * A run marks the dir it uses (`<id>.in-use.<pid>`) and removes every other install of the line
 * that no live run marks, so concurrent runs (another Node line, scripts/test.sh next to a
 * hand-run test) never lose the app under a running cluster.
 */
async function ensureApp(line, corp, plugin) {
  const name = `egg-packed-egg${line.major}`;
  const files = appFiles(name);
  const key = { egg: line.spec, corp: corp.sha256, plugin: plugin.sha256, app: createHash('sha256').update(JSON.stringify(files)).digest('hex') };
  const id = createHash('sha256').update(JSON.stringify(key)).digest('hex').slice(0, 16);
  const base = join(CACHE, `egg${line.major}`);
  const dir = join(base, id);
  mkdirSync(base, { recursive: true });
  const marker = join(base, `${id}.in-use.${process.pid}`);
  writeFileSync(marker, '');
  inUseMarkers.add(marker);
  const stampFile = join(dir, '.installed-from.json');
  let fresh = !existsSync(stampFile) || process.env.EGG_PACKED_REINSTALL === '1';
  let seconds = 0;
  if (fresh) {
    const t0 = Date.now();
    const work = join(base, `${id}.installing-${process.pid}`);
    rmSync(work, { recursive: true, force: true });
    writeFiles(work, files);
    copyFileSync(corp.file, join(work, basename(corp.file)));
    copyFileSync(plugin.file, join(work, basename(plugin.file)));
    try {
      await run(NPM, ['i', '--no-audit', '--no-fund', line.spec, basename(corp.file), basename(plugin.file)], { cwd: work });
      // npm itself must see a complete tree (no missing or invalid dependency anywhere).
      await run(NPM, ['ls', '--all'], { cwd: work, timeout: 5 * 60 * 1000 }).catch((err) => {
        const problems = err.message.split('\n').filter((l) => /invalid|missing|UNMET|extraneous|npm (error|ERR)/i.test(l));
        throw new Error(`npm ls --all of the installed app reports a broken tree:\n${problems.join('\n') || err.message}`);
      });
      writeFileSync(join(work, '.installed-from.json'), JSON.stringify({ key, at: new Date().toISOString() }, null, 2) + '\n');
      if (process.env.EGG_PACKED_REINSTALL === '1') rmSync(dir, { recursive: true, force: true });
      try {
        renameSync(work, dir);
      } catch (err) {
        // A concurrent run installed the same thing first: use its copy.
        if (!existsSync(stampFile)) throw err;
        fresh = false;
      }
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
    seconds = (Date.now() - t0) / 1000;
  }
  // Installs of this line no live run uses (older tarballs), and what dead runs left behind.
  const ents = readdirSync(base);
  const RUN_ENTRY = /^[0-9a-f]+\.(?:in-use\.|installing-)(\d+)$/; // a run's marker or work dir
  const ofLiveRun = (ent) => {
    const m = RUN_ENTRY.exec(ent);
    return Boolean(m) && pidAlive(Number(m[1]));
  };
  for (const ent of ents) {
    if (ent === id) continue;
    const keep = RUN_ENTRY.test(ent) ? ofLiveRun(ent) : ents.some((e) => e.startsWith(`${ent}.`) && ofLiveRun(e));
    if (!keep) rmSync(join(base, ent), { recursive: true, force: true });
  }
  const eggVersion = JSON.parse(readFileSync(join(dir, 'node_modules', 'egg', 'package.json'), 'utf8')).version;
  console.log(`# Egg ${line.major}: ${fresh ? `installed egg ${eggVersion} + both tarballs in ${seconds.toFixed(0)} s` : `egg ${eggVersion}, cached install`} in ${dir}`);
  return { dir, name, eggVersion, installedNow: fresh };
}

/** pids of every process whose process group is `pgid` (Linux /proc). */
function groupMembers(pgid) {
  const pids = [];
  for (const ent of readdirSync('/proc')) {
    if (!/^\d+$/.test(ent)) continue;
    try {
      const stat = readFileSync(`/proc/${ent}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // state ppid pgrp …
      if (Number(fields[2]) === pgid && fields[0] !== 'Z') pids.push(Number(ent));
    } catch {}
  }
  return pids;
}

const killGroup = (pgid) => { try { process.kill(-pgid, 'SIGKILL'); } catch {} };
const liveGroups = new Set();
const inUseMarkers = new Set();
process.once('exit', () => {
  for (const g of liveGroups) killGroup(g);
  for (const m of inUseMarkers) rmSync(m, { force: true });
});

/**
 * The app's cache dir lives inside this repo, so Node's module lookup would walk on from the
 * app's node_modules into the repo's own node_modules and could hide a dependency a user's
 * install lacks. This preload (in the master, the agent and the workers) makes every CommonJS
 * resolution that lands outside the app fail as it would for a user ("Cannot find module"),
 * so optional requires fall back as they would there, and logs it.
 */
function writeResolveGuard(dir, appDir, logFile) {
  const guard = join(dir, 'resolve-guard.cjs');
  writeFileSync(guard, `'use strict';
const Module = require('node:module');
const fs = require('node:fs');
const path = require('node:path');
const root = ${JSON.stringify(realpathSync(appDir) + sep)};
const orig = Module._resolveFilename;
Module._resolveFilename = function (request, parent, ...rest) {
  const r = orig.call(this, request, parent, ...rest);
  if (path.isAbsolute(r) && !r.startsWith(root) && r !== __filename) {
    let real = r;
    try { real = fs.realpathSync(r); } catch {}
    if (!real.startsWith(root)) {
      const from = parent && parent.filename;
      fs.appendFileSync(${JSON.stringify(logFile)}, process.pid + ' ' + request + ' from ' + from + ' -> ' + real + '\\n');
      const err = new Error("Cannot find module '" + request + "' (test guard: it resolves only outside the installed app, to " + real + ')');
      err.code = 'MODULE_NOT_FOUND';
      throw err;
    }
  }
  return r;
};
`);
  return guard;
}

/** `node server.js` in its own process group; `await c.started()` until the master says it started. */
async function startCluster(app, hub, runDir) {
  const port = await freePort();
  const leakLog = join(runDir, 'resolved-outside-app.log');
  writeFileSync(leakLog, '');
  const guard = writeResolveGuard(runDir, app.dir, leakLog);
  const env = cleanEnv({
    EGG_SERVER_ENV: 'prod',
    NODE_ENV: 'production',
    HOME: join(runDir, 'home'),
    NODE_OPTIONS: `${process.env.NODE_OPTIONS || ''} --require ${guard}`.trim(),
    EGG_PACKED_PORT: String(port),
    EGG_PACKED_LOG_DIR: join(runDir, 'logs'),
    EGG_PACKED_RUN_DIR: join(runDir, 'run'),
    EGG_PACKED_HUB: hub.agentAddr,
    EGG_PACKED_APP: APP,
    EGG_PACKED_SECRET: SECRET,
    PERF_AGENT_HUB: '', PERF_AGENT_APP: '', PERF_AGENT_SECRET: '', PERF_AGENT_LABELS: '',
  });
  mkdirSync(env.HOME, { recursive: true });
  const child = spawn(process.execPath, ['server.js'], { cwd: app.dir, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  liveGroups.add(child.pid);
  const c = { child, pid: child.pid, port, url: `http://127.0.0.1:${port}`, out: '', leakLog };
  child.stdout.on('data', (d) => { c.out += d; });
  child.stderr.on('data', (d) => { c.out += d; });
  c.exited = new Promise((r) => child.once('exit', (code, signal) => { c.exit = { code, signal }; r(c.exit); }));
  c.started = async () => {
    await waitFor('egg master to start', () => c.exit || /egg started on http/.test(c.out), { timeout: 180000, interval: 200 });
    if (c.exit) {
      throw new Error(`egg master exited (${c.exit.signal || `code ${c.exit.code}`}) before it started:\n${c.out}\nrequires refused (outside the app):\n${readFileSync(leakLog, 'utf8')}`);
    }
  };
  return c;
}

async function stopCluster(c) {
  if (!c) return;
  if (!c.exit) {
    process.kill(c.pid, 'SIGTERM');
    let timer;
    await Promise.race([c.exited, new Promise((r) => { timer = setTimeout(r, 60000); })]);
    clearTimeout(timer);
  }
  // Agent and workers go with the master; whatever is left of the group is an orphan.
  const left = await waitFor('no process left in the cluster group', () => groupMembers(c.pid).length === 0, { timeout: 30000, interval: 200 })
    .then(() => [], () => groupMembers(c.pid));
  killGroup(c.pid);
  liveGroups.delete(c.pid);
  return left;
}

let hub;
let packDir;
let corp;
let plugin;

before(async () => {
  packDir = tempDir('egg-packed-');
  corp = await pack(ROOT, packDir);
  plugin = await pack(join(ROOT, 'egg-perf-agent'), packDir);
  hub = await startHub();
}, { timeout: 10 * 60 * 1000 });

after(async () => {
  if (hub) {
    await hub.stop();
    cleanup(hub.dataDir);
  }
  if (packDir) cleanup(packDir);
});

test('the packed @corp/perf-agent holds the linux-x64-gnu addon beside index.js; the plugin peers on it', () => {
  assert.ok(corp.files.includes('index.js'), corp.files.join(', '));
  assert.ok(corp.files.includes('perf-agent.linux-x64-gnu.node'), `no linux-x64-gnu .node in ${corp.files.join(', ')}`);
  for (const f of ['binding.js', 'register.js', 'lib/inspector-worker.js']) assert.ok(corp.files.includes(f), f);
  const pj = JSON.parse(readFileSync(join(ROOT, 'egg-perf-agent', 'package.json'), 'utf8'));
  assert.ok(pj.peerDependencies && pj.peerDependencies['@corp/perf-agent'], 'peerDependencies names @corp/perf-agent');
  assert.equal((pj.dependencies || {})['@corp/perf-agent'], undefined, 'not a dependency (a file: spec breaks installs)');
});

for (const line of EGG_LINES) {
  describe(`Egg ${line.major}: installed from the packed tarballs, real cluster`, () => {
    let app;
    let cluster;
    let runDir;
    let procs;

    before(async () => {
      app = await ensureApp(line, corp, plugin);
      // Installed as a user's install: real copies in the app, the peer shared, nothing nested.
      const corpDir = join(app.dir, 'node_modules', '@corp', 'perf-agent');
      assert.ok(!lstatSync(corpDir).isSymbolicLink(), '@corp/perf-agent is a real copy, not a link');
      assert.ok(existsSync(join(corpDir, 'perf-agent.linux-x64-gnu.node')), 'the installed @corp/perf-agent carries the .node');
      assert.ok(!existsSync(join(app.dir, 'node_modules', 'egg-perf-agent', 'node_modules')), 'no copy nested under the plugin');
      // egg-cluster's master picks its cluster-client port by binding port 0 and closing it; on a
      // busy machine an outgoing connection can take it before the agent worker binds it ("the
      // port:N is occupied by other"): egg's own race, so the cluster is started again then.
      for (let attempt = 1; ; attempt++) {
        runDir = tempDir(`egg-packed-run${line.major}-`);
        cluster = await startCluster(app, hub, runDir);
        try {
          await cluster.started();
          break;
        } catch (e) {
          if (attempt >= 3 || !/leader failed, the port:\d+ is occupied/.test(cluster.out)) throw e;
          console.log(`# egg cluster-client port race on attempt ${attempt}; starting the cluster again`);
          await stopCluster(cluster);
          cleanup(runDir);
        }
      }
    }, { timeout: INSTALL_TIMEOUT + 5 * 60 * 1000 });

    after(async () => {
      await stopCluster(cluster);
      if (runDir) cleanup(runDir);
    });

    async function appProcesses() {
      const { status, body } = await api(hub, 'GET', '/api/processes');
      assert.equal(status, 200);
      return body.filter((p) => p.labels && p.labels.egg_app === app.name);
    }

    /** What to look at when the processes don't show up: the master's output, the plugin's log lines, the hub. */
    async function diagnosis() {
      const logs = join(runDir, 'logs');
      let eggLogs = '';
      for (const f of existsSync(logs) ? readdirSync(logs) : []) {
        const lines = readFileSync(join(logs, f), 'utf8').split('\n');
        const keep = f === 'common-error.log' ? lines.slice(-40) : lines.filter((l) => /perf-agent|Error/.test(l)).slice(-20);
        if (keep.join('').trim()) eggLogs += `--- ${f}\n${keep.join('\n')}\n`;
      }
      const { body } = await api(hub, 'GET', '/api/processes').catch((e) => ({ body: String(e) }));
      return `master output (tail):\n${cluster.out.slice(-3000)}\negg logs:\n${eggLogs}\nhub processes: ${JSON.stringify(body)}\nhub log (tail):\n${hub.log().slice(-2000)}`;
    }

    test('the Egg agent and 2 workers show up in the hub with role labels, and the app serves', async () => {
      const list = await waitFor('agent + 2 workers connected', async () => {
        const l = (await appProcesses()).filter((p) => p.connected);
        return l.length >= 3 && l;
      }, { timeout: 60000, interval: 200 }).catch(async (err) => {
        throw new Error(`${err.message}\n${await diagnosis()}`);
      });
      assert.equal(list.length, 3, JSON.stringify(list.map((p) => p.labels)));
      for (const p of list) {
        assert.equal(p.app, APP);
        assert.equal(p.state, 'running');
        assert.equal(p.labels.installed_from, 'tarball', 'config.perfAgent.labels');
        assert.equal(p.node_version, process.version, 'the cluster runs on this test run\'s Node');
        assert.ok(p.capabilities.includes('cpu_profile'), p.capabilities.join(','));
      }
      assert.deepEqual(list.map((p) => p.labels.role).sort(), ['agent', 'worker', 'worker']);
      procs = list;
      const workers = list.filter((p) => p.labels.role === 'worker');
      assert.deepEqual(workers.map((w) => w.labels.worker_id).sort(), ['1', '2']);
      assert.ok(!list.some((p) => p.pid === cluster.pid), 'the master runs no agent');
      const res = await fetch(`${cluster.url}/`);
      assert.equal(res.status, 200, await res.clone().text());
      const body = await res.json();
      assert.ok(workers.some((w) => w.pid === body.pid), 'a reporting worker served the request');
      const nm = join(realpathSync(app.dir), 'node_modules') + sep;
      assert.ok(body.perfAgent.startsWith(nm), `@corp/perf-agent from the app's node_modules: ${body.perfAgent}`);
      assert.ok(body.plugin.startsWith(nm), body.plugin);
    });

    test('a 1 s CPU profile of a worker becomes ready', async () => {
      assert.ok(procs, 'the previous test found the processes');
      const worker = procs.find((p) => p.labels.role === 'worker');
      // Right after connecting the inspector worker may still be starting (409): retry that.
      const res = await waitFor('cpu_profile accepted', async () => {
        const r = await api(hub, 'POST', `/api/processes/${worker.id}/commands`, { kind: 'cpu_profile', seconds: 1 });
        if (r.status === 409 && /inspector worker is not running/.test(r.body.error)) return null;
        return r;
      }, { timeout: 20000, interval: 200 });
      assert.equal(res.status, 202, JSON.stringify(res.body));
      const art = await waitArtifact(hub, res.body.artifact.id, { timeout: 60000 });
      assert.equal(art.status, 'ready', art.error);
      assert.equal(art.process_id, worker.id);
      const profile = JSON.parse((await download(hub, art.id)).toString('utf8'));
      assert.ok(Array.isArray(profile.nodes) && Array.isArray(profile.samples), 'a .cpuprofile');
    });

    test('SIGTERM to the master: every process disconnects and none is left behind', async () => {
      assert.ok(procs, 'the first test found the processes');
      const left = await stopCluster(cluster);
      assert.deepEqual(left, [], `processes left in the cluster's group: ${left.join(', ')}`);
      assert.ok(cluster.exit, 'the master exited');
      const ids = new Set(procs.map((p) => p.id));
      await waitFor('all 3 disconnected', async () => {
        const l = (await appProcesses()).filter((p) => ids.has(p.id));
        return l.length === 3 && l.every((p) => !p.connected && p.state === 'disconnected');
      }, { timeout: 30000, interval: 200 });
      const refused = [...new Set(readFileSync(cluster.leakLog, 'utf8').split('\n').filter(Boolean).map((l) => l.replace(/^\d+ /, '').replace(/ -> .*/, '')))];
      if (refused.length) console.log(`# Egg ${line.major}: requires only the repo's node_modules could serve, refused as in a user's app (optional ones fall back): ${refused.join('; ')}`);
      assert.ok(!/Cannot find module/.test(cluster.out), `${cluster.out}\nrequires refused (outside the app):\n${readFileSync(cluster.leakLog, 'utf8')}`);
    });
  });
}
