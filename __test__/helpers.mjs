// Shared helpers for the Node tests: a real perf-hub process, real Node apps with the addon,
// and the HTTP API over real TCP.
import { spawn, execFileSync } from 'node:child_process';
import { before, after } from 'node:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
export const HUB_BIN = process.env.PERF_HUB_BIN || join(ROOT, 'target', 'debug', 'perf-hub');
export const TOKEN = 'test-operator-token-0123456789';
export const APP = 'orders';
export const SECRET = 'orders-secret-123';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function waitFor(what, fn, { timeout = 15000, interval = 50 } = {}) {
  const t0 = Date.now();
  let last;
  while (Date.now() - t0 < timeout) {
    last = await fn();
    if (last) return last;
    await sleep(interval);
  }
  throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
}

export function tempDir(prefix = 'perf-agent-test-') {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** Starts `perf-hub serve`; ports default to 0 (the hub logs what it bound). */
export async function startHub({ dataDir = tempDir(), agentPort = 0, httpPort = 0, extraArgs = [] } = {}) {
  const args = [
    'serve', '--data-dir', dataDir,
    '--agent-addr', `127.0.0.1:${agentPort}`, '--http-addr', `127.0.0.1:${httpPort}`,
    '--token', TOKEN, '--app', `${APP}:${SECRET}`, ...extraArgs,
  ];
  const child = spawn(HUB_BIN, args, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, NO_COLOR: '1' } });
  let log = '';
  child.stderr.on('data', (d) => { log += d; });
  const line = await waitFor('hub to listen', () => /agent_addr=(\S+) http_addr=(\S+)/.exec(log.replace(/\x1b\[[0-9;]*m/g, '')), { timeout: 20000 });
  const hub = {
    child, dataDir, log: () => log,
    agentAddr: line[1], httpAddr: line[2],
    agentPort: Number(line[1].split(':').pop()), httpPort: Number(line[2].split(':').pop()),
    url: (p) => `http://${line[2]}${p}`,
    async stop(signal = 'SIGTERM') {
      if (child.exitCode !== null || child.signalCode) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill(signal);
      await exited;
    },
  };
  return hub;
}

/** Calls the HTTP API; returns `{ status, body }` (body parsed as JSON when possible). */
/** A token of `role` made with `perf-hub token create` in the hub's data dir (the CLI prints it last). */
export function createToken(hub, name, role, ...extra) {
  const args = ['token', 'create', '--data-dir', hub.dataDir, '--name', name, '--role', role, ...extra];
  const out = execFileSync(HUB_BIN, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  return out.trim().split(/\s+/).pop();
}

export async function api(hub, method, path, body, { token = TOKEN } = {}) {
  const headers = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(hub.url(path), { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  let parsed = text;
  try { parsed = JSON.parse(text); } catch {}
  return { status: res.status, body: parsed, headers: res.headers };
}

export async function download(hub, id) {
  const res = await fetch(hub.url(`/api/artifacts/${id}/download`), { headers: { authorization: `Bearer ${TOKEN}` } });
  if (res.status !== 200) throw new Error(`download ${id}: ${res.status} ${await res.text()}`);
  return Buffer.from(await res.arrayBuffer());
}

/**
 * Starts a fixture app (Node + the addon); resolves once it printed `ready`. `script` overrides
 * the fixture's path, `node` the Node binary, `wrap` prefixes the command (e.g. setpriv).
 */
export async function startApp(fixture, { env = {}, args = [], nodeArgs = [], waitReady = true, script, node = process.execPath, wrap = [], cwd = ROOT } = {}) {
  const argv = [...wrap, node, ...nodeArgs, script || join(ROOT, '__test__', 'fixtures', fixture), ...args];
  const child = spawn(argv[0], argv.slice(1), {
    cwd,
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  const app = { child, stdout: '', stderr: '', lines: [] };
  child.stdout.on('data', (d) => {
    app.stdout += d;
    for (const l of String(d).split('\n')) if (l) app.lines.push({ t: Date.now(), l });
  });
  child.stderr.on('data', (d) => { app.stderr += d; });
  app.exited = new Promise((r) => child.once('exit', (code, signal) => r({ code, signal })));
  app.waitLine = (re, timeout = 20000) => waitFor(`app line ${re}`, () => app.lines.find((x) => re.test(x.l)), { timeout });
  app.send = (cmd) => child.stdin.write(cmd + '\n');
  app.kill = async (signal = 'SIGKILL') => {
    if (child.exitCode === null && !child.signalCode) child.kill(signal);
    return app.exited;
  };
  if (waitReady) await app.waitLine(/^ready/);
  return app;
}

export function hubEnv(hub, extra = {}) {
  return { PERF_AGENT_HUB: hub.agentAddr, PERF_AGENT_APP: APP, PERF_AGENT_SECRET: SECRET, ...extra };
}

/** The hub's record of the process with this pid, once connected. */
export async function processByPid(hub, pid, { connected = true, timeout = 15000 } = {}) {
  return waitFor(`process ${pid} in hub`, async () => {
    const { body } = await api(hub, 'GET', '/api/processes');
    return Array.isArray(body) && body.find((p) => p.pid === pid && p.connected === connected);
  }, { timeout });
}

export async function waitArtifact(hub, id, { timeout = 30000, until = (a) => a.status === 'ready' || a.status === 'failed' } = {}) {
  return waitFor(`artifact ${id}`, async () => {
    const { body } = await api(hub, 'GET', `/api/artifacts/${id}`);
    return until(body) && body;
  }, { timeout, interval: 100 });
}

export function cleanup(dir) {
  try { rmSync(dir, { recursive: true, force: true }); } catch {}
}

/**
 * One hub for a test file, and `app(opts)` to start fixture apps against it; everything is
 * stopped and removed after the file's tests. `baseEnv` is added to every app's environment.
 */
export function hubFixture({ baseEnv = {} } = {}) {
  const ctx = { hub: null, apps: [] };
  before(async () => {
    ctx.hub = await startHub();
  });
  after(async () => {
    for (const a of ctx.apps) await a.kill();
    if (ctx.hub) {
      await ctx.hub.stop();
      cleanup(ctx.hub.dataDir);
    }
  });
  ctx.app = async (opts = {}) => {
    const a = await startApp(opts.fixture || 'app.js', { ...opts, env: hubEnv(ctx.hub, { ...baseEnv, ...opts.env }) });
    ctx.apps.push(a);
    return a;
  };
  return ctx;
}

/** The Debian Chromium, headless, as the console tests and the screenshot script drive it. */
export async function launchChromium() {
  const { chromium } = await import('playwright-core');
  return chromium.launch({
    executablePath: process.env.CHROMIUM_BIN || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
}
