// The console's heap views that span snapshots (console/heap.js), in real headless Chromium
// against a real hub and a real app that leaks one class (and a same-named class from two
// scripts, one leaking): two snapshots compared — the leaking class as new with its delta, one
// new instance and its retainer path up to the variable that holds it; a leak hunt's report —
// the leaking class first, its growth per snapshot and a retainer path naming the variable; a
// running hunt's report with Cancel for an operator and the reason it is disabled for a viewer.
// Also the diff's rows on this realistic case: the leaking class first, same-named classes apart.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startHub, startApp, hubEnv, processByPid, waitArtifact, waitFor, api, cleanup, sleep, TOKEN, createToken, launchChromium } from './helpers.mjs';

const LEAK = 'AutopilotLeakyEntry';
let hub, app, browser, before1, after1;

async function command(body) {
  const { status, body: res } = await api(hub, 'POST', `/api/processes/${app.proc.id}/commands`, body);
  assert.equal(status, 202, JSON.stringify(res));
  return res.artifact;
}

before(async () => {
  hub = await startHub();
  app = await startApp('autopilot-app.js', { env: hubEnv(hub) });
  app.proc = await processByPid(hub, app.child.pid);
  app.send('dups 20');
  app.send('leak 200');
  await waitFor('both leaks', () => app.lines.filter((x) => /^leaking/.test(x.l)).length === 2);
  before1 = await waitArtifact(hub, (await command({ kind: 'heap_snapshot' })).id, { timeout: 60000 });
  await sleep(1500); // the leak grows meanwhile
  after1 = await waitArtifact(hub, (await command({ kind: 'heap_snapshot' })).id, { timeout: 60000 });
  for (const a of [before1, after1]) assert.equal(a.status, 'ready', JSON.stringify(a));
  browser = await launchChromium();
});

after(async () => {
  if (browser) await browser.close();
  if (app) await app.kill();
  if (hub) await hub.stop();
  cleanup(hub && hub.dataDir);
});

const tokenFor = (name, role) => createToken(hub, name, role);

/** A fresh browser context signed in with `token`; resolves once artifact `id` is listed. */
async function signedIn(id, token = TOKEN) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  await page.goto(hub.url('/'));
  await page.fill('#token', token);
  await page.click('#login button[type=submit]');
  await page.waitForSelector(`#artifacts tr[data-id="${id}"]`, { timeout: 30000 });
  return { context, page };
}

/** Expands the retainers of tree item `item` nearest-to-root first until a label matches `re`. */
async function retainerChain(item, re, steps = 10) {
  await item.locator(':scope > button.toggle').click();
  let level = item.locator(':scope > ul > li[data-kind=group]').first();
  const chain = [];
  for (let step = 0; step < steps && !chain.some((t) => re.test(t)); step++) {
    const retainer = level.locator(':scope > ul > li[data-kind=retainer]').first();
    await retainer.waitFor({ timeout: 30000 });
    chain.push(await retainer.locator(':scope > .tree-label').textContent());
    await retainer.locator(':scope > button.toggle').click();
    level = retainer.locator(':scope > ul > li[data-kind=group]').first();
  }
  return chain;
}

test('diff: on a leaking app the leaking class comes first; same-named classes from two scripts are two rows with their locations', async () => {
  const d = await waitFor('diff', async () => {
    const r = await api(hub, 'GET', `/api/artifacts/${before1.id}/diff/${after1.id}`);
    return r.status === 200 && r.body;
  }, { timeout: 60000, interval: 200 });
  const top = d.classes.slice(0, 5).map((c) => [c.name, c.count_delta, c.location]);
  assert.equal(d.classes[0].name, LEAK, JSON.stringify(top));
  assert.ok(d.classes[0].count_delta > 0 && d.classes[0].new_count > 0, JSON.stringify(top));
  const dups = d.classes.filter((c) => c.name === 'AutopilotDup');
  assert.ok(dups.length >= 1 && dups.every((c) => c.location && c.location.script_id > 0), JSON.stringify(dups));
  const grown = dups.find((c) => c.count_delta > 0);
  assert.ok(grown && grown.location.line === 2, JSON.stringify(dups));
  // The analysis keeps them apart too: 2000 of b's, the growing a's.
  const an = await waitFor('analysis', async () => {
    const r = await api(hub, 'GET', `/api/artifacts/${after1.id}/analysis`);
    return r.status === 200 && r.body;
  }, { timeout: 60000, interval: 200 });
  const rows = an.classes.filter((c) => c.name === 'AutopilotDup');
  assert.equal(rows.length, 2, JSON.stringify(rows));
  assert.notDeepEqual(rows[0].location, rows[1].location);
  assert.ok(rows.some((c) => c.count === 2000), JSON.stringify(rows));
});

test('compare: a snapshot compared with an earlier one shows the leaking class as new with its delta; a new instance leads up to the variable that holds it', async () => {
  const { context, page } = await signedIn(after1.id);
  await page.click(`#artifacts tr[data-id="${after1.id}"] button:has-text("Compare with…")`);
  // The previous snapshot of the same process is offered first.
  assert.equal(await page.inputValue('#compare-base'), before1.id);
  await page.click('#compare-go');
  const row = page.locator(`#heap-compare > li[data-kind=compare-class][data-name="${LEAK}"]`);
  await row.waitFor({ timeout: 90000 });
  const label = await row.locator(':scope > .tree-label').textContent();
  const m = /new (\d+) .* Δ \+(\d+) · size Δ \+/.exec(label);
  assert.ok(m && Number(m[1]) > 0 && Number(m[2]) > 0, label);
  // Same-named classes of two scripts are two rows, told apart by their location.
  const dupLabels = await page.locator('#heap-compare > li[data-name="AutopilotDup"] > .tree-label').allTextContents();
  assert.ok(dupLabels.length >= 1 && dupLabels.every((t) => /\(script \d+, line \d+, col \d+\)/.test(t)), dupLabels.join(' | '));
  await row.locator(':scope > button.toggle').click();
  const instance = row.locator(':scope > ul > li[data-kind=object]').first();
  await instance.waitFor({ timeout: 30000 });
  assert.match(await instance.locator(':scope > .tree-label').textContent(), new RegExp(`^${LEAK} @\\d+ · `));
  const chain = await retainerChain(instance, /^autopilotLeakHolder /);
  assert.match(chain[0], /^\[\d+\] \(element\) in Array @\d+/, chain.join(' | '));
  assert.ok(chain.some((t) => /^autopilotLeakHolder \(context\) in system \/ Context @\d+/.test(t)), chain.join(' | '));
  await context.close();
});

test('leak report: a hunt of 3 snapshots 1 s apart; its report shows the leaking class first, its growth and a retainer path naming the variable', async () => {
  const report = await command({ kind: 'leak_hunt', snapshots: 3, interval_secs: 1 });
  // Generous: three debug-build analyses on a machine the whole suite shares.
  const done = await waitArtifact(hub, report.id, { timeout: 240000 });
  assert.equal(done.status, 'ready', done.error);
  const { context, page } = await signedIn(report.id);
  await page.click(`#artifacts tr[data-id="${report.id}"] button:has-text("Leak report")`);
  const first = page.locator('#leak-suspects > li.suspect').first();
  await first.waitFor({ timeout: 30000 });
  assert.equal(await page.getAttribute('.leak-state', 'data-state'), 'done');
  assert.equal(await first.getAttribute('data-name'), LEAK, await page.textContent('#leak-suspects'));
  // Growth over the three snapshots: counts and retained sizes, as bars and as figures.
  assert.equal(await first.locator('svg.growth.counts rect').count(), 3);
  assert.equal(await first.locator('svg.growth.retained rect').count(), 3);
  const text = await first.textContent();
  assert.match(text, /\d+ → \d+ → \d+/);
  assert.match(text, /\d+(\.\d+)? (B|KB|MB) → /);
  const path = await first.locator('ol.retainer-path > li').allTextContents();
  assert.ok(path.some((s) => /^autopilotLeakHolder in system \/ Context @\d+/.test(s)), path.join(' | '));
  assert.match(path.at(-1), new RegExp(`^${LEAK} @\\d+$`));
  // Each snapshot opens in the explorer.
  assert.equal(await page.locator('.leak-snapshots button[data-snapshot]').count(), 3);
  await page.locator('.leak-snapshots button[data-snapshot]').last().click();
  await page.locator('#explorer > li[data-kind=class]', { hasText: LEAK }).waitFor({ timeout: 60000 });
  await context.close();
});

test('leak report: a running hunt shows its progress; a viewer sees why it cannot cancel, an operator cancels it', async () => {
  const report = await command({ kind: 'leak_hunt', snapshots: 5, interval_secs: 60 });
  const viewer = tokenFor('heap-viewer', 'viewer');
  let { context, page } = await signedIn(report.id, viewer);
  await page.click(`#artifacts tr[data-id="${report.id}"] button:has-text("Leak report")`);
  await page.waitForSelector('.leak-state[data-state=running]');
  assert.match(await page.textContent('.leak-state'), /of 5 snapshots taken, 60 s apart/);
  const disabled = page.locator('#leak-cancel');
  assert.ok(await disabled.isDisabled());
  assert.match(await disabled.getAttribute('title'), /needs role operator/);
  await context.close();

  ({ context, page } = await signedIn(report.id, tokenFor('heap-operator', 'operator')));
  await page.click(`#artifacts tr[data-id="${report.id}"] button:has-text("Leak report")`);
  await page.click('#leak-cancel');
  await page.waitForSelector('.leak-state[data-state=cancelled]');
  assert.match(await page.textContent('.leak-state'), /^Cancelled by token:heap-operator; the snapshots taken are kept/);
  assert.equal((await api(hub, 'GET', `/api/artifacts/${report.id}`)).body.status, 'failed');
  await context.close();
});
