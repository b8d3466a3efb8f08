// The console's operations in real headless Chromium against a real hub and a real Node app with
// the addon: an operator adds a stall rule with the console's form, the app blocks its loop in a
// named function, and the console shows the blocked process, the CPU profile the rule took
// ("auto · rule NAME", the reason on hover, naming the function) and the rule's last firing; the
// main views are readable at 1024×768; and a viewer or an operator going through every view never
// gets a 401/403 — what their role can't use is disabled or absent and says which role it needs.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startHub, startApp, hubEnv, processByPid, waitArtifact, api, cleanup, TOKEN, createToken, launchChromium } from './helpers.mjs';

const RULE = 'console-stall';
let hub, app, browser;

before(async () => {
  hub = await startHub();
  browser = await launchChromium();
});

after(async () => {
  if (browser) await browser.close();
  if (app) await app.kill();
  if (hub) await hub.stop();
  cleanup(hub && hub.dataDir);
});

const tokenFor = (name, role) => createToken(hub, name, role);

/** A fresh context signed in with `token` at `viewport`; `responses` collects every API answer from the start. */
async function signedIn(token, { viewport = { width: 1280, height: 800 }, ready = '#main:not([hidden])' } = {}) {
  const context = await browser.newContext({ viewport });
  const responses = [];
  context.on('response', (r) => {
    const url = new URL(r.url());
    if (url.pathname.startsWith('/api/') || url.pathname === '/metrics') responses.push({ method: r.request().method(), path: url.pathname + url.search, status: r.status() });
  });
  const page = await context.newPage();
  await page.goto(hub.url('/'));
  await page.fill('#token', token);
  await page.click('#login button[type=submit]');
  await page.waitForSelector(ready);
  return { context, page, responses };
}

/** The stalling app (started by the first test, after its rule exists; by a later one run alone). */
async function ensureApp() {
  if (app) return app;
  app = await startApp('autopilot-app.js', { env: hubEnv(hub, { PERF_AGENT_METRICS_INTERVAL_MS: '500' }) });
  app.proc = await processByPid(hub, app.child.pid);
  return app;
}

async function capture(body) {
  const { status, body: res } = await api(hub, 'POST', `/api/processes/${app.proc.id}/commands`, body);
  assert.equal(status, 202, JSON.stringify(res));
  return waitArtifact(hub, res.artifact.id, { timeout: 60000 });
}

test('rules: an operator adds a stall rule in the console; a stalling process shows blocked, and the CPU profile the rule took is marked with the rule and names the blocking function; the rule shows when it last fired', async () => {
  const operator = tokenFor('ops-operator', 'operator');
  const { context, page } = await signedIn(operator);
  await page.waitForSelector('#processes-empty:has-text("No processes yet")');
  await page.fill('#rule-form [name=rule_name]', RULE);
  await page.selectOption('#rule-form [name=trigger]', 'blocked_ms');
  await page.fill('#rule-form [name=threshold]', '1000');
  await page.selectOption('#rule-form [name=capture]', 'cpu_profile');
  await page.fill('#rule-form [name=rule_seconds]', '2');
  await page.click('#rule-form button[type=submit]');
  const ruleRow = page.locator(`#rules-body tr[data-rule="${RULE}"]`);
  await ruleRow.waitFor();
  assert.match(await ruleRow.textContent(), /event loop blocked ≥ 1000 ms/);
  assert.equal(await ruleRow.locator('[data-last-fired]').textContent(), 'never');

  await ensureApp();
  const procRow = `#processes tr[data-id="${app.proc.id}"]`;
  await page.waitForSelector(procRow);
  app.send('stall 5000');
  // Highlighted while blocked, saying for how long.
  const badge = await page.waitForSelector(`${procRow}.blocked-row .badge.blocked`, { timeout: 20000 });
  assert.match(await badge.textContent(), /^blocked for \d+\.\d s$/);
  assert.match(await badge.getAttribute('title'), /blocked since/);

  const mark = page.locator(`#artifacts .badge.auto[data-rule="${RULE}"]`).first();
  await mark.waitFor({ timeout: 30000 });
  assert.equal(await mark.textContent(), `auto · rule ${RULE}`);
  assert.match(await mark.getAttribute('title'), /blocked/, 'the reason on hover');
  const id = await mark.evaluate((b) => b.closest('tr').dataset.id);
  const art = await waitArtifact(hub, id, { timeout: 30000 });
  assert.equal(art.status, 'ready', art.error);
  assert.equal(art.kind, 'cpu_profile');
  assert.deepEqual([art.trigger.rule, art.requested_by], [RULE, `rule:${RULE}`]);
  await app.waitLine(/^stall-end/);

  // The rule's last firing: relative, the absolute time and reason on hover, and a way to the capture.
  const fired = ruleRow.locator(`[data-last-fired="${art.created_at}"]`);
  await fired.waitFor({ timeout: 20000 });
  assert.match(await fired.locator('time').textContent(), /ago$/);
  assert.match(await fired.getAttribute('title'), /blocked/);
  await fired.locator('button[data-action=show-artifact]').click();
  await page.waitForSelector(`#artifacts tr.flash[data-id="${id}"]`);

  // The profile the rule took names the function that blocked the loop.
  await page.click(`#artifacts tr[data-id="${id}"][data-status=ready] button:has-text("Flame graph")`);
  const frame = await (await page.waitForSelector(`#viewer-frame[src$="/${id}/flamegraph.svg"]`)).contentFrame();
  await frame.waitForSelector('svg #frames');
  assert.match(await frame.content(), /autopilotBlockingFunction/);
  await context.close();
});

test('1024×768: no horizontal page overflow in the main views; the process row, its sparklines and every action are on screen', async () => {
  await ensureApp();
  const profile = await capture({ kind: 'cpu_profile', seconds: 1 });
  const snapshot = await capture({ kind: 'heap_snapshot' });
  const { context, page } = await signedIn(TOKEN, { viewport: { width: 1024, height: 768 }, ready: `#artifacts tr[data-id="${snapshot.id}"]` });
  const procRow = `#processes tr[data-id="${app.proc.id}"]`;
  // Every problem is collected, so one run reports them all.
  const problems = [];
  const fits = async (what) => {
    const [scroll, inner] = await page.evaluate(() => [document.scrollingElement.scrollWidth, innerWidth]);
    if (scroll > inner) problems.push(`${what}: the page is ${scroll} px wide in a ${inner} px window`);
  };
  /** Every button (or link) in `selector` is visible and inside the window. */
  const onScreen = async (selector) => {
    const controls = page.locator(`${selector} button, ${selector} a.button`);
    const n = await controls.count();
    if (n === 0) problems.push(`${selector}: no controls`);
    for (let i = 0; i < n; i++) {
      const c = controls.nth(i);
      const box = (await c.isVisible()) && (await c.boundingBox());
      if (!box || box.x < 0 || box.x + box.width > 1024) problems.push(`${selector}: "${await c.textContent()}" ${box ? `at x ${box.x}+${box.width}` : 'not visible'}`);
    }
  };
  // Once the figures are in (they widen the row).
  await page.waitForFunction((sel) => /%/.test(document.querySelector(`${sel} td:nth-child(5)`)?.textContent || ''), procRow, { timeout: 20000 });
  await fits('processes and artifacts');
  await onScreen(procRow);
  await onScreen(`#artifacts tr[data-id="${profile.id}"]`);
  await onScreen(`#artifacts tr[data-id="${snapshot.id}"]`);
  await onScreen('#rule-form');
  await onScreen('#token-form');

  // From the keyboard: a process row takes the focus and Enter opens its charts.
  await page.focus(procRow);
  await page.keyboard.press('Enter');
  await page.waitForSelector('#charts .uplot');
  await page.waitForSelector(`${procRow}[aria-selected=true]`);
  await fits('metric charts');
  await onScreen('#range-picker');

  await page.click(`#artifacts tr[data-id="${profile.id}"] button:has-text("Flame graph")`);
  await page.waitForSelector('#viewer:not([hidden]) #viewer-frame');
  await fits('flame graph viewer');
  await page.click('#viewer-close');
  await page.click(`#artifacts tr[data-id="${snapshot.id}"] button:has-text("Explore heap")`);
  await page.waitForSelector('#explorer', { timeout: 60000 });
  await fits('heap explorer');
  await page.click('#viewer-close');

  await page.click('#ops-refresh');
  await page.waitForSelector('#audit-body table');
  await fits('operations with the audit trail');
  // Each figure with its sparkline of the last minutes, min–max on hover.
  for (const m of ['CPU', 'Heap', 'ELD p99']) {
    const cell = page.locator(`${procRow} td[data-metric="${m}"]`);
    const title = (await cell.count()) && (await cell.locator('svg.spark polyline').count()) ? await cell.getAttribute('title') : '';
    if (!new RegExp(`^${m}, last 5 min: .+ – .+`).test(title || '')) problems.push(`${m}: no sparkline with its min–max`);
  }
  assert.deepEqual(problems, []);
  await context.close();
});

test('roles: a viewer and an operator go through every view without a 401 or 403; what their role cannot use is disabled or absent and says which role it needs', async () => {
  await ensureApp();
  // Something for every view: two profiles (compare) and a heap snapshot (explorer, analysis).
  const first = await capture({ kind: 'cpu_profile', seconds: 1 });
  const second = await capture({ kind: 'cpu_profile', seconds: 1 });
  const snapshot = await capture({ kind: 'heap_snapshot' });
  for (const a of [first, second, snapshot]) assert.equal(a.status, 'ready', a.error);
  const procRow = `#processes tr[data-id="${app.proc.id}"]`;
  const rowOf = (a) => `#artifacts tr[data-id="${a.id}"]`;

  for (const role of ['viewer', 'operator']) {
    const { context, page, responses } = await signedIn(tokenFor(`walk-${role}`, role), { ready: rowOf(snapshot) });
    // Processes and metrics, with the time-range picker.
    // Signed in, every panel loaded: nothing refused so far.
    await page.click('#ops-refresh');
    await page.waitForSelector('#audit-body :text("The audit trail needs role admin")');
    const early = responses.filter((r) => (r.status === 401 || r.status === 403) && r.path !== '/api/session');
    assert.deepEqual(early, [], `${role}: the panels asked what the role can't have`);
    await page.click(`${procRow} td:first-child`);
    await page.waitForSelector('#charts .uplot');
    await page.selectOption('#range', '60');
    await page.click('#range-earlier');
    await page.waitForSelector('#metrics-range:has-text("samples from")');
    await page.click('#range-now');
    // Every viewer: flame graph, compare, speedscope, analysis, heap explorer.
    await page.click(`${rowOf(first)} button:has-text("Flame graph")`);
    await (await (await page.waitForSelector('#viewer-frame[src$="/flamegraph.svg"]')).contentFrame()).waitForSelector('svg');
    await page.click('#viewer-close');
    await page.click(`${rowOf(second)} button:has-text("Compare with previous")`);
    await page.waitForSelector('#viewer-body table.hotter');
    await page.click('#viewer-close');
    const [speedscope] = await Promise.all([context.waitForEvent('page'), page.click(`${rowOf(second)} a:has-text("Speedscope")`)]);
    await speedscope.waitForSelector('text=Sandwich', { timeout: 30000 });
    await speedscope.close();
    await page.click(`${rowOf(snapshot)} button:has-text("Analysis")`);
    await page.waitForSelector('#viewer-body table', { timeout: 60000 });
    await page.click(`${rowOf(snapshot)} button:has-text("Explore heap")`);
    await page.waitForSelector('#explorer', { timeout: 60000 });
    await page.click('#viewer-close');
    // Operations.
    await page.click('#ops-refresh');
    await page.waitForSelector('#audit-body :text("The audit trail needs role admin")');

    // What the role can't use says why.
    const disabled = await page.locator('#main button[disabled]').evaluateAll((bs) => bs.map((b) => [b.textContent, b.title]));
    assert.ok(disabled.length > 0, role);
    for (const [label, title] of disabled) assert.match(title, /needs role (operator|admin) \(you are \w+\)|not connected/, `${role}: "${label}"`);
    await page.waitForSelector('#tokens-body :text("Managing tokens needs role admin")');
    assert.ok(await page.isHidden('#token-form'));
    const devtools = page.locator(`${rowOf(snapshot)} button:has-text("Open in DevTools")`);
    assert.ok(await devtools.isDisabled());
    const del = page.locator(`${rowOf(snapshot)} button[data-action=delete]`);
    assert.match(await del.getAttribute('title'), /needs role admin/);
    const cpu = page.locator(`${procRow} button[data-kind=cpu_profile]`);
    if (role === 'viewer') {
      assert.ok(await cpu.isDisabled());
      assert.match(await cpu.getAttribute('title'), /needs role operator \(you are viewer\)/);
      assert.ok(await page.isHidden('#rule-form'));
      await page.waitForSelector('#rules-body :text("capture rules needs role operator (you are viewer)")');
    } else {
      assert.ok(await cpu.isEnabled());
      assert.ok(await page.isVisible('#rule-form'));
      await page.waitForSelector('#rules-body table.rules, #rules-body :text("No rules yet")');
    }

    // The only refusal on the way is the page asking whether it already had a session.
    const refused = responses.filter((r) => r.status === 401 || r.status === 403);
    const probe = refused.filter((r) => r.method === 'GET' && r.path === '/api/session');
    assert.ok(probe.length <= 1 && refused.length === probe.length, `${role}: ${JSON.stringify(refused)}`);
    // The sparklines' bounded requests, and the charts' window in the past (Earlier) with its end.
    assert.ok(responses.some((r) => new RegExp(`^/api/processes/${app.proc.id}/metrics\\?since=\\d+&limit=1000$`).test(r.path) && r.status === 200), role);
    assert.ok(responses.some((r) => new RegExp(`^/api/processes/${app.proc.id}/metrics\\?since=\\d+&until=\\d+&step=\\d+`).test(r.path) && r.status === 200), role);
    await context.close();
  }
});
