#!/usr/bin/env node
// Regenerates the console screenshots under docs/console/ (1280×800, headless Chromium) against a
// real hub and a real app: overview, metrics, speedscope, profile comparison, heap explorer,
// DevTools bridge, operations. Run by hand after `cargo build -p perf-hub`:
//   node scripts/screenshots.mjs [OUT_DIR]
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { startHub, startApp, hubEnv, processByPid, waitArtifact, waitFor, api, cleanup, TOKEN, ROOT } from '../__test__/helpers.mjs';

const OUT = process.argv[2] || join(ROOT, 'docs', 'console');
const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
mkdirSync(OUT, { recursive: true });

const hub = await startHub();
// A sample a second: the processes' sparklines have a line after a few seconds.
const app = await startApp('app.js', { env: hubEnv(hub, { LEAK_COUNT: '20000', HTTP: '1', PERF_AGENT_METRICS_INTERVAL_MS: '1000' }) });
const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
});
try {
  const proc = await processByPid(hub, app.child.pid);
  const capture = async (body) => {
    const { body: res } = await api(hub, 'POST', `/api/processes/${proc.id}/commands`, body);
    return waitArtifact(hub, res.artifact.id, { timeout: 60000 });
  };
  const before = await capture({ kind: 'cpu_profile', seconds: 2 });
  app.send('spin 8000');
  await app.waitLine(/^spin-start/);
  await waitFor('blocked', async () => (await api(hub, 'GET', `/api/processes/${proc.id}`)).body.state === 'blocked');
  const after = await capture({ kind: 'cpu_profile', seconds: 3 });
  await app.waitLine(/^spin-end/);
  const snapshot = await capture({ kind: 'heap_snapshot' });
  // A stall rule that fires on a stall: its capture is marked "auto · rule stall", the rule says when it fired.
  await api(hub, 'POST', '/api/rules', { name: 'stall', when: { blocked_ms: 1000 }, capture: { kind: 'cpu_profile', seconds: 2 } });
  app.send('spin 3000');
  const auto = await waitFor('the rule\'s capture', async () => (await api(hub, 'GET', '/api/artifacts')).body.find((a) => a.requested_by === 'rule:stall'), { timeout: 30000 });
  await waitArtifact(hub, auto.id, { timeout: 60000 });
  await app.waitLine(/^spin-end/);

  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  const shot = (name) => page.screenshot({ path: join(OUT, name) });
  await page.goto(hub.url('/'));
  await page.fill('#token', TOKEN);
  await page.click('#login button[type=submit]');
  await page.waitForSelector(`#artifacts tr[data-id="${auto.id}"][data-status=ready]`);
  // Overview while the process is blocked again (highlighted, first, for how long).
  const spins = app.lines.filter((l) => /^spin-end/.test(l.l)).length;
  app.send('spin 6000');
  await page.waitForSelector(`#processes tr[data-id="${proc.id}"].blocked-row td[data-metric=CPU] svg.spark polyline`, { timeout: 20000 });
  await shot('overview.png');
  await waitFor('the spin to end', () => app.lines.filter((l) => /^spin-end/.test(l.l)).length > spins, { timeout: 20000 });

  await page.click(`#processes tr[data-id="${proc.id}"] td:first-child`);
  await page.waitForSelector('#charts .uplot');
  await page.selectOption('#range', '15');
  await page.waitForSelector('#metrics-range:has-text("samples from")');
  await page.locator('#metrics-panel').scrollIntoViewIfNeeded();
  await page.waitForTimeout(300);
  await shot('metrics.png');

  const [viewer] = await Promise.all([context.waitForEvent('page'), page.click(`#artifacts tr[data-id="${after.id}"] a:has-text("Speedscope")`)]);
  await viewer.setViewportSize({ width: 1280, height: 800 });
  await viewer.waitForSelector('text=Sandwich', { timeout: 30000 });
  await viewer.click('text=Sandwich');
  await viewer.waitForSelector('text=perfAgentUniqueSpinner');
  await viewer.screenshot({ path: join(OUT, 'speedscope.png') });
  await viewer.close();

  await page.click(`#artifacts tr[data-id="${after.id}"] button:has-text("Compare with previous")`);
  await page.waitForSelector('#viewer-body table.hotter');
  await page.locator('#viewer').scrollIntoViewIfNeeded();
  await page.waitForTimeout(500);
  await shot('compare.png');
  await page.click('#viewer-close'); // the flame graph's frame would take the next clicks' mousedown

  await page.click(`#artifacts tr[data-id="${snapshot.id}"] button:has-text("Explore heap")`);
  const cls = page.locator('#explorer > li[data-kind=class]', { hasText: 'PerfAgentTestLeak' });
  await cls.waitFor({ timeout: 60000 });
  await cls.locator(':scope > button.toggle').click();
  await expandFirstInstance(cls, 3);
  await cls.scrollIntoViewIfNeeded();
  await shot('heap-explorer.png');

  await page.click(`#artifacts tr[data-id="${snapshot.id}"] button:has-text("Open in DevTools")`);
  const url = await (await page.waitForSelector('#devtools-url')).inputValue();
  await page.locator('#viewer').scrollIntoViewIfNeeded();
  await shot('devtools-url.png');
  const devtools = await context.newPage();
  await devtools.goto(url);
  await devtools.click('text=Take snapshot', { timeout: 30000 });
  await devtools.waitForSelector('text=PerfAgentTestLeak', { timeout: 60000 });
  await devtools.screenshot({ path: join(OUT, 'devtools-summary.png') });
  await devtools.close();

  await page.click('#ops-refresh');
  await page.waitForSelector('#audit-body table');
  await page.waitForSelector('#rules-body [data-last-fired] time');
  await page.locator('#operations').scrollIntoViewIfNeeded();
  await shot('operations.png');
  await context.close();
  await heapViewShots(browser);
  console.log(`screenshots in ${OUT}`);
} finally {
  await browser.close();
  await app.kill();
  await hub.stop();
  cleanup(hub.dataDir);
}

/**
 * console/heap.js's views (HEAP-VIEWS): two heap snapshots compared and a leak hunt's report, on
 * a hub and an app of their own (the autopilot fixture leaking one class amid churn).
 */
/** Opens the first instance under a class row, then its first retainer `steps` times up. */
async function expandFirstInstance(classRow, steps) {
  const instance = classRow.locator(':scope > ul > li[data-kind=object]').first();
  await instance.locator(':scope > button.toggle').click();
  let level = instance.locator(':scope > ul > li[data-kind=group]').first();
  for (let i = 0; i < steps; i++) {
    const r = level.locator(':scope > ul > li[data-kind=retainer]').first();
    await r.waitFor();
    await r.locator(':scope > button.toggle').click();
    level = r.locator(':scope > ul > li[data-kind=group]').first();
  }
  await level.locator(':scope > ul > li').first().waitFor();
}

async function heapViewShots(browser) {
  const hub = await startHub();
  const app = await startApp('autopilot-app.js', { env: hubEnv(hub) });
  try {
    const proc = await processByPid(hub, app.child.pid);
    const command = async (body) => (await api(hub, 'POST', `/api/processes/${proc.id}/commands`, body)).body.artifact;
    app.send('leak 200');
    await app.waitLine(/^leaking/);
    const first = await waitArtifact(hub, (await command({ kind: 'heap_snapshot' })).id, { timeout: 60000 });
    await new Promise((r) => setTimeout(r, 1500));
    const second = await waitArtifact(hub, (await command({ kind: 'heap_snapshot' })).id, { timeout: 60000 });
    const report = await waitArtifact(hub, (await command({ kind: 'leak_hunt', snapshots: 3, interval_secs: 1 })).id, { timeout: 120000 });
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    await page.goto(hub.url('/'));
    await page.fill('#token', TOKEN);
    await page.click('#login button[type=submit]');
    await page.waitForSelector(`#artifacts tr[data-id="${report.id}"]`);

    await page.click(`#artifacts tr[data-id="${second.id}"] button:has-text("Compare with…")`);
    await page.selectOption('#compare-base', first.id);
    await page.click('#compare-go');
    const row = page.locator('#heap-compare > li[data-name="AutopilotLeakyEntry"]');
    await row.waitFor({ timeout: 90000 });
    await row.locator(':scope > button.toggle').click();
    await expandFirstInstance(row, 3);
    const toViewer = () => page.locator('#viewer').evaluate((e) => e.scrollIntoView({ block: 'start' }));
    await toViewer();
    await page.screenshot({ path: join(OUT, 'heap-compare.png') });

    await page.click(`#artifacts tr[data-id="${report.id}"] button:has-text("Leak report")`);
    await page.waitForSelector('#leak-suspects > li.suspect');
    await toViewer();
    await page.screenshot({ path: join(OUT, 'leak-report.png') });
    await context.close();
  } finally {
    await app.kill();
    await hub.stop();
    cleanup(hub.dataDir);
  }
}
