// The web console in real headless Chromium against a real hub and a real app: sign in (the
// token is exchanged for an HttpOnly session cookie), see the process, take a CPU profile and a
// heap snapshot with the buttons, open the flame graph, sign out.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, statSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { startHub, startApp, hubEnv, processByPid, tempDir, cleanup, TOKEN, HUB_BIN, launchChromium } from './helpers.mjs';

let hub, app, browser, shots;

before(async () => {
  hub = await startHub();
  app = await startApp('app.js', { env: hubEnv(hub, { LEAK_COUNT: '20000' }) });
  await processByPid(hub, app.child.pid);
  shots = tempDir('perf-console-');
  browser = await launchChromium();
});

after(async () => {
  if (browser) await browser.close();
  if (app) await app.kill();
  if (hub) await hub.stop();
  cleanup(hub && hub.dataDir);
  cleanup(shots);
});

test('console: a wrong token is refused, the right one shows the process', async () => {
  const page = await browser.newPage();
  await page.goto(hub.url('/'));
  await page.fill('#token', 'not-the-token-at-all');
  await page.click('#login button[type=submit]');
  await page.waitForSelector('#toast .error');
  assert.ok(await page.isVisible('#login'));
  await page.fill('#token', TOKEN);
  await page.click('#login button[type=submit]');
  const row = await page.waitForSelector(`#processes tr:has-text("${app.child.pid}")`);
  assert.match(await row.textContent(), /orders/);
  assert.match(await row.textContent(), /running/);
  await page.close();
});

test('console: CPU profile and heap snapshot buttons produce ready artifacts; the flame graph opens', async () => {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  await page.goto(hub.url('/'));
  await page.fill('#token', TOKEN);
  await page.click('#login button[type=submit]');
  const row = `#processes tr:has-text("${app.child.pid}")`;
  await page.waitForSelector(row);
  await page.fill('#seconds', '1');
  await page.click(`${row} button[data-kind=cpu_profile]`);
  await page.waitForSelector('#artifacts tr[data-status=ready]:has-text("cpu_profile")', { timeout: 30000 });
  await page.click(`${row} button[data-kind=heap_snapshot]`);
  await page.waitForSelector('#artifacts tr[data-status=ready]:has-text("heap_snapshot")', { timeout: 30000 });
  await page.click('#artifacts tr[data-status=ready]:has-text("cpu_profile") button:has-text("Flame graph")');
  // The frame loads the hub's SVG itself (the session cookie unlocks it), under the SVG's own
  // sandboxing policy, which lets inferno's inline zoom/search script run.
  const iframe = await page.waitForSelector('#viewer:not([hidden]) #viewer-frame[src$="/flamegraph.svg"]');
  const frame = await iframe.contentFrame();
  assert.ok(frame, 'flame graph frame attached');
  await frame.waitForSelector('svg #frames'); // inferno's flame graph, rendered by the hub
  assert.equal(await frame.evaluate(() => typeof init), 'function', "inferno's script ran");
  // The heap snapshot's analysis (a background job in the hub) renders as tables.
  await page.click('#artifacts tr[data-status=ready]:has-text("heap_snapshot") button:has-text("Analysis")');
  await page.waitForSelector('#viewer-body table th:has-text("Retained")', { timeout: 60000 });
  assert.match(await page.textContent('#viewer-body'), /PerfAgentTestLeak/);
  // Selecting the process shows its metric charts.
  await page.click(`${row} td:first-child`);
  await page.waitForSelector('#charts .uplot');
  const shot = process.env.CONSOLE_SHOT || join(shots, 'console.png');
  await page.screenshot({ path: shot, fullPage: true });
  assert.ok(existsSync(shot) && statSync(shot).size > 10000);
  await page.close();
});

test('console: the session is an HttpOnly SameSite=Strict cookie, no token in storage; sign-out ends it', async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  const problems = [];
  page.on('console', (m) => { if (m.type() === 'error' && /Content Security Policy/.test(m.text())) problems.push(m.text()); });
  await page.goto(hub.url('/'));
  await page.fill('#token', TOKEN);
  await page.click('#login button[type=submit]');
  await page.waitForSelector(`#processes tr:has-text("${app.child.pid}")`);
  assert.match(await page.textContent('#whoami'), /bootstrap \(admin\)/);
  const [cookie] = (await context.cookies()).filter((c) => c.name === 'perf_hub_session');
  assert.ok(cookie, 'session cookie set');
  assert.equal(cookie.httpOnly, true);
  assert.equal(cookie.sameSite, 'Strict');
  assert.equal(cookie.path, '/');
  assert.notEqual(cookie.value, TOKEN);
  const stored = await page.evaluate(() => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }));
  assert.ok(!stored.includes(TOKEN), 'no token in web storage');
  assert.equal(await page.inputValue('#token'), '', 'the token field is cleared');
  assert.equal(await page.evaluate(() => document.cookie), '', 'the page script cannot read the cookie');
  // A reload keeps the session (no sign-in form).
  await page.reload();
  await page.waitForSelector(`#processes tr:has-text("${app.child.pid}")`);
  assert.ok(!(await page.isVisible('#login')));
  await page.click('#logout');
  await page.waitForSelector('#login:not([hidden])');
  // The old session id no longer works, even if replayed.
  const replay = await fetch(hub.url('/api/processes'), { headers: { cookie: `perf_hub_session=${cookie.value}` } });
  assert.equal(replay.status, 401);
  await page.reload();
  await page.waitForSelector('#login:not([hidden])');
  assert.deepEqual(problems, [], 'no CSP violations');
  await context.close();
});

test('console: a viewer token signs in to a read-only console (no capture, no download)', async () => {
  const out = execFileSync(HUB_BIN, ['token', 'create', '--data-dir', hub.dataDir, '--name', 'console-viewer', '--role', 'viewer'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const viewer = out.trim().split(/\s+/).pop();
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(hub.url('/'));
  await page.fill('#token', viewer);
  await page.click('#login button[type=submit]');
  const row = `#processes tr:has-text("${app.child.pid}")`;
  await page.waitForSelector(row);
  assert.match(await page.textContent('#whoami'), /token:console-viewer \(viewer\)/);
  assert.ok(await page.isDisabled(`${row} button[data-kind=cpu_profile]`), 'no captures for a viewer');
  await page.waitForSelector('#artifacts tr[data-status=ready]:has-text("cpu_profile") button:has-text("Flame graph")');
  assert.equal(await page.locator('#artifacts button:has-text("Download")').count(), 0, 'no downloads for a viewer');
  await context.close();
});
