// A misconfigured plugin never breaks the app: egg-mock's single-process app (agent and
// worker in this test process) starts, serves HTTP, and the Egg logs carry a clear warning.
import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { join, dirname } from 'node:path';
import { readFileSync, rmSync } from 'node:fs';
import { waitFor } from '../../__test__/helpers.mjs';

// What egg-bin test sets: the unittest env (no egg-development file watchers keeping us alive).
process.env.EGG_SERVER_ENV = 'unittest';
process.env.NODE_ENV = 'test';

const require = createRequire(import.meta.url);
const mm = require('egg-mock');
const HERE = dirname(fileURLToPath(import.meta.url));
const BASE_DIR = join(HERE, 'fixtures', 'misconfig-app');
const LOG_DIR = join(BASE_DIR, 'logs', 'perf-misconfig-app');

function readLog(name) {
  try { return readFileSync(join(LOG_DIR, name), 'utf8'); } catch { return ''; }
}

let app;
afterEach(async () => {
  if (app) await app.close();
  app = null;
  mm.restore();
  rmSync(join(BASE_DIR, 'logs'), { recursive: true, force: true });
  rmSync(join(BASE_DIR, 'run'), { recursive: true, force: true });
});

test('no hub configured: the app starts and serves, worker and agent log a clear warning', async () => {
  mm(process.env, 'EGG_PERF_TEST_HUB', '');
  mm(process.env, 'PERF_AGENT_HUB', '');
  mm(process.env, 'EGG_PERF_TEST_SECRET', 'orders-secret-123');
  app = mm.app({ baseDir: BASE_DIR, cache: false });
  await app.ready();
  const res = await app.httpRequest().get('/');
  assert.equal(res.status, 200);
  assert.equal(res.body.pid, process.pid);
  const web = await waitFor('warning in egg-web.log', () => /WARN .*\[egg-perf-agent\] not started in the worker .*missing hub \(config\.perfAgent\.hub \/ PERF_AGENT_HUB\)/.test(readLog('egg-web.log')) && readLog('egg-web.log'), { timeout: 5000 });
  assert.doesNotMatch(web, /secret \(/, 'only what is missing is named');
  await waitFor('warning in egg-agent.log', () => /WARN .*\[egg-perf-agent\] not started in the agent .*missing hub/.test(readLog('egg-agent.log')), { timeout: 5000 });
  assert.equal(require('@corp/perf-agent').status().running, false);
});

test('unreachable hub: the app starts and serves, and warns that it is not connected (and keeps retrying)', async () => {
  mm(process.env, 'EGG_PERF_TEST_HUB', '127.0.0.1:1');
  mm(process.env, 'EGG_PERF_TEST_SECRET', 'orders-secret-123');
  app = mm.app({ baseDir: BASE_DIR, cache: false });
  await app.ready();
  const res = await app.httpRequest().get('/');
  assert.equal(res.status, 200);
  // egg-mock runs agent and worker in one process: one start() wins, the other sees it running.
  const s = require('@corp/perf-agent').status();
  assert.equal(s.running, true);
  assert.equal(s.connected, false);
  await waitFor('not-connected warning', () => {
    const all = readLog('egg-web.log') + readLog('egg-agent.log');
    return /WARN .*\[egg-perf-agent\] the (agent|worker) \(pid \d+\) is not connected to perf-hub 127\.0\.0\.1:1 after 500 ms: .*Connection refused/.test(all) &&
      /already running in this process/.test(all);
  }, { timeout: 5000 });
  await app.close();
  app = null;
  assert.equal(require('@corp/perf-agent').status().running, false, 'beforeClose stopped it');
});
