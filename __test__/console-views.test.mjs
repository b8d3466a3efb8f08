// The console's viewers in real headless Chromium against a real hub and a real app: a CPU
// profile opened in the bundled speedscope (its sandwich table names the hot function), two
// profiles compared (the function that got hotter comes first, on a differential flame graph), a
// stored heap snapshot opened in Chromium's own DevTools through the hub's one-time bridge URL.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { execFileSync } from 'node:child_process';
import { chromium } from 'playwright-core';
import { startHub, startApp, hubEnv, processByPid, waitArtifact, waitFor, api, cleanup, TOKEN, HUB_BIN } from './helpers.mjs';

const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const HOT = 'perfAgentUniqueSpinner';
let hub, app, browser, idleProfile, hotProfile, snapshot;

async function capture(body) {
  const { status, body: res } = await api(hub, 'POST', `/api/processes/${app.proc.id}/commands`, body);
  assert.equal(status, 202, JSON.stringify(res));
  return waitArtifact(hub, res.artifact.id, { timeout: 60000 });
}

before(async () => {
  hub = await startHub();
  app = await startApp('app.js', { env: hubEnv(hub, { LEAK_COUNT: '2000' }) });
  app.proc = await processByPid(hub, app.child.pid);
  // Before: an idle process. After: the same process spinning in one function.
  idleProfile = await capture({ kind: 'cpu_profile', seconds: 1 });
  app.send('spin 9000');
  await app.waitLine(/^spin-start/);
  // As an operator would: the process shows as blocked, then they take a profile.
  await waitFor('blocked', async () => (await api(hub, 'GET', `/api/processes/${app.proc.id}`)).body.state === 'blocked');
  hotProfile = await capture({ kind: 'cpu_profile', seconds: 2 });
  await app.waitLine(/^spin-end/);
  snapshot = await capture({ kind: 'heap_snapshot' });
  for (const a of [idleProfile, hotProfile, snapshot]) assert.equal(a.status, 'ready', JSON.stringify(a));
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
});

after(async () => {
  if (browser) await browser.close();
  if (app) await app.kill();
  if (hub) await hub.stop();
  cleanup(hub && hub.dataDir);
});

/** A fresh browser context signed in with `token`; resolves once the artifacts are listed. */
async function signedIn(token = TOKEN) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  await page.goto(hub.url('/'));
  await page.fill('#token', token);
  await page.click('#login button[type=submit]');
  await page.waitForSelector(`#artifacts tr[data-id="${hotProfile.id}"]`);
  return { context, page };
}

test('speedscope: a CPU profile opens in the bundled speedscope with the session cookie; its sandwich view names the hot function', async () => {
  const { context, page } = await signedIn();
  const link = page.locator(`#artifacts tr[data-id="${hotProfile.id}"] a:has-text("Speedscope")`);
  const href = await link.getAttribute('href');
  assert.match(href, /^\/speedscope\/index\.html#profileURL=/);
  assert.ok(!href.includes(TOKEN), 'no token in the URL');
  const problems = [];
  context.on('console', (m) => { if (/Content Security Policy|Refused/.test(m.text())) problems.push(m.text()); });
  const [viewer] = await Promise.all([context.waitForEvent('page'), link.click()]);
  viewer.on('console', (m) => { if (/Content Security Policy|Refused/.test(m.text())) problems.push(m.text()); });
  // speedscope draws flame charts on a canvas; its sandwich view is a table of functions.
  await viewer.waitForSelector('text=Sandwich', { timeout: 30000 });
  await viewer.click('text=Sandwich');
  await viewer.waitForSelector(`text=${HOT}`, { timeout: 30000 });
  assert.deepEqual(problems, [], 'speedscope runs under its CSP');
  await context.close();
});

test('speedscope: the profile route serves profiles only, under their own file name', async () => {
  const ok = await fetch(hub.url(`/api/artifacts/${hotProfile.id}/profile/${hotProfile.file_name}`), { headers: { authorization: `Bearer ${TOKEN}` } });
  assert.equal(ok.status, 200);
  assert.ok((await ok.json()).nodes.some((n) => n.callFrame.functionName === HOT));
  const wrongName = await api(hub, 'GET', `/api/artifacts/${hotProfile.id}/profile/other.cpuprofile`);
  assert.equal(wrongName.status, 404);
  const heap = await api(hub, 'GET', `/api/artifacts/${snapshot.id}/profile/${snapshot.file_name}`);
  assert.equal(heap.status, 422, 'a heap snapshot is not a profile (its contents are admin-only)');
  const anon = await fetch(hub.url(`/api/artifacts/${hotProfile.id}/profile/${hotProfile.file_name}`));
  assert.equal(anon.status, 401);
  const page = await fetch(hub.url('/speedscope/index.html'));
  assert.equal(page.status, 200);
  assert.match(page.headers.get('content-security-policy'), /script-src 'self';/);
});

test('compare: two profiles of the same app; the function that got hotter comes first, on a differential flame graph', async () => {
  const { context, page } = await signedIn();
  await page.click(`#artifacts tr[data-id="${hotProfile.id}"] button:has-text("Compare with previous")`);
  const first = await page.waitForSelector('#viewer-body table.hotter tbody tr:first-child', { timeout: 30000 });
  assert.match(await first.textContent(), new RegExp(HOT));
  const iframe = await page.waitForSelector(`#viewer-frame[src$="/diff-flamegraph/${hotProfile.id}.svg"]`);
  const frame = await iframe.contentFrame();
  await frame.waitForSelector('svg #frames');
  assert.match(await frame.content(), new RegExp(HOT));
  // The API says the same, and refuses to compare a profile with a heap snapshot.
  const { status, body } = await api(hub, 'GET', `/api/artifacts/${idleProfile.id}/diff-functions/${hotProfile.id}`);
  assert.equal(status, 200);
  assert.match(body[0].function, new RegExp(HOT));
  assert.ok(body[0].self_after > body[0].self_before);
  const mixed = await api(hub, 'GET', `/api/artifacts/${idleProfile.id}/diff-functions/${snapshot.id}`);
  assert.equal(mixed.status, 422);
  await context.close();
});

/** A token of `role` made with the CLI (prints it as the last word). */
function tokenFor(name, role) {
  const out = execFileSync(HUB_BIN, ['token', 'create', '--data-dir', hub.dataDir, '--name', name, '--role', role], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  return out.trim().split(/\s+/).pop();
}

/** The status a WebSocket upgrade request to `path` gets (101 if the hub accepts it). */
function upgradeStatus(path) {
  return new Promise((resolve, reject) => {
    const req = request(hub.url(path), { headers: { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==' } });
    req.on('upgrade', (res, socket) => { socket.destroy(); resolve(res.statusCode); });
    req.on('response', (res) => { res.resume(); resolve(res.statusCode); });
    req.on('error', reject);
    req.end();
  });
}

test('devtools: an admin gets a one-time URL in the console; Chromium DevTools opened on it shows the stored snapshot in its Summary view', async () => {
  const { context, page } = await signedIn();
  await page.click(`#artifacts tr[data-id="${snapshot.id}"] button:has-text("Open in DevTools")`);
  const url = await (await page.waitForSelector('#devtools-url')).inputValue();
  const m = /^devtools:\/\/devtools\/bundled\/js_app\.html\?ws=([^/]+)(\/devtools\/[0-9a-f]{64})&panel=heap-profiler$/.exec(url);
  assert.ok(m, url);
  assert.equal(m[1], hub.httpAddr);
  // DevTools connects to the hub's WebSocket as to an inspector target; "Take snapshot" loads the stored file.
  const devtools = await context.newPage();
  await devtools.goto(url);
  await devtools.click('text=Take snapshot', { timeout: 30000 });
  const row = await devtools.waitForSelector('text=PerfAgentTestLeak', { timeout: 60000 });
  assert.ok(row);
  assert.match(await devtools.textContent('body'), /×2,000/, 'the Summary counts the test class');
  // The URL worked once.
  assert.equal(await upgradeStatus(m[2]), 404);
  await context.close();
});

test('devtools: the bridge is admin-only and for heap snapshots only; a made-up ticket is refused', async () => {
  const operator = tokenFor('views-operator', 'operator');
  const refused = await api(hub, 'POST', `/api/artifacts/${snapshot.id}/devtools`, undefined, { token: operator });
  assert.equal(refused.status, 403);
  assert.match(refused.body.error, /needs role admin/);
  const profile = await api(hub, 'POST', `/api/artifacts/${hotProfile.id}/devtools`);
  assert.equal(profile.status, 422);
  assert.equal(await upgradeStatus(`/devtools/${'0'.repeat(64)}`), 404);
  const ok = await api(hub, 'POST', `/api/artifacts/${snapshot.id}/devtools`);
  assert.equal(ok.status, 200);
  assert.ok(Date.parse(ok.body.expires_at) > Date.now());
  // The console says why an operator has no DevTools button.
  const { context, page } = await signedIn(operator);
  const button = page.locator(`#artifacts tr[data-id="${snapshot.id}"] button:has-text("Open in DevTools")`);
  assert.ok(await button.isDisabled());
  assert.match(await button.getAttribute('title'), /needs role admin/);
  await context.close();
});
