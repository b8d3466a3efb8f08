// The console's viewers in real headless Chromium against a real hub and a real app: a CPU
// profile opened in the bundled speedscope (its sandwich table names the hot function), two
// profiles compared (the function that got hotter comes first, on a differential flame graph).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';
import { startHub, startApp, hubEnv, processByPid, waitArtifact, waitFor, api, cleanup, TOKEN } from './helpers.mjs';

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
