// Operators' access to a real hub with real apps: tokens made by the real `perf-hub token`
// binary (viewer / operator / admin, app scope, revocation on the running hub), the console's
// session cookie over plain HTTP, the failed-login limit, pagination, security headers and
// command parameter bounds.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { startHub, startApp, hubEnv, processByPid, api, waitArtifact, waitFor, cleanup, HUB_BIN, TOKEN, APP, SECRET } from './helpers.mjs';

const OTHER_APP = 'payments';
const OTHER_SECRET = 'payments-secret-456';
let hub, orders, payments, ordersProc, paymentsProc;

/** `perf-hub token …` against the hub's data dir; returns its standard output. */
function tokenCli(...args) {
  return execFileSync(HUB_BIN, ['token', args[0], '--data-dir', hub.dataDir, ...args.slice(1)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Creates a token; the token is the last word of the output. */
function createToken(name, role, ...extra) {
  const out = tokenCli('create', '--name', name, '--role', role, ...extra);
  return out.trim().split(/\s+/).pop();
}

/** A raw request with a chosen source address (the failed-login limit is per source). */
function rawRequest(path, { method = 'GET', headers = {}, body, localAddress = '127.0.0.1' } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(hub.url(path), { method, headers, localAddress }, (res) => {
      let text = '';
      res.on('data', (d) => { text += d; });
      res.on('end', () => {
        let parsed = text;
        try { parsed = JSON.parse(text); } catch {}
        resolve({ status: res.statusCode, headers: res.headers, body: parsed });
      });
    });
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

async function readyArtifact(token, processId, command) {
  const res = await api(hub, 'POST', `/api/processes/${processId}/commands`, command, { token });
  assert.equal(res.status, 202, JSON.stringify(res.body));
  const a = await waitArtifact(hub, res.body.artifact.id);
  assert.equal(a.status, 'ready', a.error);
  return a;
}

before(async () => {
  hub = await startHub({ extraArgs: ['--app', `${OTHER_APP}:${OTHER_SECRET}`] });
  orders = await startApp('app.js', { env: hubEnv(hub) });
  payments = await startApp('app.js', { env: hubEnv(hub, { PERF_AGENT_APP: OTHER_APP, PERF_AGENT_SECRET: OTHER_SECRET }) });
  ordersProc = await processByPid(hub, orders.child.pid);
  paymentsProc = await processByPid(hub, payments.child.pid);
  assert.equal(paymentsProc.app, OTHER_APP);
});

after(async () => {
  for (const a of [orders, payments]) if (a) await a.kill();
  if (hub) {
    await hub.stop();
    cleanup(hub.dataDir);
  }
});

test('roles: viewer reads but may not command or download; operator commands and downloads profiles, not raw heap snapshots; admin does', async () => {
  const viewer = createToken('viewer1', 'viewer');
  const operator = createToken('operator1', 'operator');
  const admin = createToken('admin1', 'admin');
  assert.match(viewer, /^[0-9a-f]{64}$/);

  // Viewer: the read routes work.
  for (const path of ['/api/processes', `/api/processes/${ordersProc.id}`, `/api/processes/${ordersProc.id}/metrics`, '/api/artifacts', '/api/capture-kinds', '/metrics']) {
    assert.equal((await api(hub, 'GET', path, undefined, { token: viewer })).status, 200, path);
  }
  const refused = await api(hub, 'POST', `/api/processes/${ordersProc.id}/commands`, { kind: 'cpu_profile', seconds: 1 }, { token: viewer });
  assert.equal(refused.status, 403);
  assert.match(refused.body.error, /needs role operator/);
  assert.equal((await api(hub, 'GET', '/api/audit', undefined, { token: viewer })).status, 403);

  // Operator: a command is accepted; the profile downloads.
  const profile = await readyArtifact(operator, ordersProc.id, { kind: 'cpu_profile', seconds: 1 });
  assert.equal((await api(hub, 'GET', `/api/artifacts/${profile.id}/download`, undefined, { token: viewer })).status, 403, 'viewer: no downloads');
  const got = await api(hub, 'GET', `/api/artifacts/${profile.id}/download`, undefined, { token: operator });
  assert.equal(got.status, 200);
  assert.ok(Array.isArray(got.body.nodes), 'a .cpuprofile');
  assert.equal((await api(hub, 'GET', `/api/artifacts/${profile.id}/flamegraph.svg`, undefined, { token: viewer })).status, 200, 'viewer: flame graphs');

  // A raw heap snapshot holds secrets: operator 403, admin 200.
  const snap = await readyArtifact(operator, ordersProc.id, { kind: 'heap_snapshot' });
  const opSnap = await api(hub, 'GET', `/api/artifacts/${snap.id}/download`, undefined, { token: operator });
  assert.equal(opSnap.status, 403);
  assert.match(opSnap.body.error, /needs role admin/);
  assert.equal((await api(hub, 'GET', `/api/artifacts/${snap.id}/download`, undefined, { token: viewer })).status, 403);
  const adminSnap = await api(hub, 'GET', `/api/artifacts/${snap.id}/download`, undefined, { token: admin });
  assert.equal(adminSnap.status, 200);
  assert.ok(adminSnap.body.snapshot && adminSnap.body.nodes, 'a .heapsnapshot');

  // Every audit entry names the token that acted.
  const audit = await api(hub, 'GET', '/api/audit', undefined, { token: admin });
  assert.equal(audit.status, 200);
  assert.equal((await api(hub, 'GET', '/api/audit', undefined, { token: operator })).status, 403);
  const cmd = audit.body.find((x) => x.action === 'command.request' && x.detail.artifact === snap.id);
  assert.equal(cmd.actor, 'token:operator1@127.0.0.1');
  assert.ok(audit.body.some((x) => x.action === 'artifact.download' && x.target === snap.id && x.actor === 'token:admin1@127.0.0.1' && x.result === 'ok'));
  assert.ok(audit.body.some((x) => x.action === 'artifact.download' && x.target === snap.id && x.actor === 'token:operator1@127.0.0.1' && x.result === 'forbidden'));

  // The list never shows a token or its hash.
  const list = tokenCli('list');
  assert.match(list, /viewer1\s+viewer/);
  assert.match(list, /operator1\s+operator/);
  for (const t of [viewer, operator, admin]) assert.ok(!list.includes(t));
  assert.ok(!/[0-9a-f]{64}/.test(list), 'no hashes either');
});

test('heap contents are admin-only in analyses: a viewer sees structure and sizes, not string values', async () => {
  const viewer = createToken('viewer-strings', 'viewer');
  const admin = createToken('admin-strings', 'admin');
  const password = 'hunter2-s3cr3t-db-password';
  orders.send(`secret ${password}`);
  await orders.waitLine(/^secret-set/);
  const snap = await readyArtifact(TOKEN, ordersProc.id, { kind: 'heap_snapshot' });
  const analysis = async (token) => waitFor('analysis', async () => {
    const res = await api(hub, 'GET', `/api/artifacts/${snap.id}/analysis`, undefined, { token });
    return res.status === 200 && res;
  }, { timeout: 60000 });
  const asAdmin = await analysis(admin);
  assert.ok(JSON.stringify(asAdmin.body).includes(password), 'the admin sees the string (so the test can fail)');
  const asViewer = await analysis(viewer);
  const text = JSON.stringify(asViewer.body);
  assert.ok(!text.includes(password), 'no string value for a viewer');
  assert.match(text, /string value hidden: needs role admin/);
  assert.equal(asViewer.body.summary?.length ?? asViewer.body.classes?.length, (asAdmin.body.summary ?? asAdmin.body.classes)?.length, 'same structure');
});

test('an app-scoped token: other apps\' processes, artifacts and series do not exist for it', async () => {
  const scoped = createToken('orders-ops', 'operator', '--apps', APP);
  const admin = createToken('admin-scope-check', 'admin');
  const otherArtifact = await readyArtifact(admin, paymentsProc.id, { kind: 'cpu_profile', seconds: 1 });

  const procs = await api(hub, 'GET', '/api/processes', undefined, { token: scoped });
  assert.equal(procs.status, 200);
  assert.ok(procs.body.some((p) => p.id === ordersProc.id));
  assert.ok(procs.body.every((p) => p.app === APP), 'only its app listed');
  for (const path of [`/api/processes/${paymentsProc.id}`, `/api/processes/${paymentsProc.id}/metrics`, `/api/artifacts/${otherArtifact.id}`,
    `/api/artifacts/${otherArtifact.id}/download`, `/api/artifacts/${otherArtifact.id}/flamegraph.svg`]) {
    assert.equal((await api(hub, 'GET', path, undefined, { token: scoped })).status, 404, path);
  }
  const cmd = await api(hub, 'POST', `/api/processes/${paymentsProc.id}/commands`, { kind: 'cpu_profile', seconds: 1 }, { token: scoped });
  assert.equal(cmd.status, 404);
  const arts = await api(hub, 'GET', '/api/artifacts', undefined, { token: scoped });
  assert.ok(!arts.body.some((a) => a.id === otherArtifact.id), 'filtered out of the list');
  const all = await api(hub, 'GET', '/api/artifacts', undefined, { token: admin });
  assert.ok(all.body.some((a) => a.id === otherArtifact.id), 'an unscoped token sees it');
  const prom = await api(hub, 'GET', '/metrics', undefined, { token: scoped });
  assert.equal(prom.status, 200);
  assert.ok(prom.body.includes(`process_id="${ordersProc.id}"`));
  assert.ok(!prom.body.includes(paymentsProc.id) && !prom.body.includes(`app="${OTHER_APP}"`), 'no series of the other app');
  // Its own app works as for any operator.
  await readyArtifact(scoped, ordersProc.id, { kind: 'cpu_profile', seconds: 1 });
});

test('401 vs 403, and a revocation takes effect on the running hub at once', async () => {
  const missing = await api(hub, 'GET', '/api/processes', undefined, { token: null });
  assert.equal(missing.status, 401);
  assert.equal(missing.headers.get('www-authenticate'), 'Bearer');
  assert.match(missing.body.error, /missing, unknown, revoked or expired token/);
  assert.equal((await api(hub, 'GET', '/api/processes', undefined, { token: 'f'.repeat(64) })).status, 401);
  const viewer = createToken('short-lived', 'viewer', '--expires-days', '1');
  assert.equal((await api(hub, 'GET', '/api/processes', undefined, { token: viewer })).status, 200);
  const forbidden = await api(hub, 'GET', '/api/audit', undefined, { token: viewer });
  assert.equal(forbidden.status, 403);
  assert.match(forbidden.body.error, /needs role admin/);
  assert.match(tokenCli('revoke', 'short-lived'), /Revoked/);
  const after = await api(hub, 'GET', '/api/processes', undefined, { token: viewer });
  assert.equal(after.status, 401);
  assert.match(tokenCli('list'), /short-lived\s+viewer\s+\*\s+\S+\s+\S+\s+\d{4}-/, 'listed as revoked');
  // The bootstrap --token stays an admin.
  assert.equal((await api(hub, 'GET', '/api/audit')).status, 200);
  assert.throws(() => tokenCli('revoke', 'nope'), (e) => e.status === 1 && /no token named 'nope'/.test(e.stderr));
});

test('console session: cookie flags, the cookie works for reads, writes need a matching Origin, sign-out ends it', async () => {
  const host = hub.httpAddr;
  const signIn = await rawRequest('/api/session', { method: 'POST', headers: { 'content-type': 'application/json', origin: `http://${host}` }, body: JSON.stringify({ token: TOKEN }) });
  assert.equal(signIn.status, 200, JSON.stringify(signIn.body));
  assert.equal(signIn.body.role, 'admin');
  const setCookie = signIn.headers['set-cookie'][0];
  assert.match(setCookie, /^perf_hub_session=[0-9a-f]{64};/);
  for (const flag of ['HttpOnly', 'SameSite=Strict', 'Path=/']) assert.ok(setCookie.includes(flag), `${flag} in ${setCookie}`);
  assert.ok(!setCookie.includes('Secure'), 'no Secure over plain HTTP');
  const cookie = setCookie.split(';')[0];
  assert.ok(!cookie.includes(TOKEN));

  assert.equal((await rawRequest('/api/processes', { headers: { cookie } })).status, 200, 'cookie works for GET');
  const command = JSON.stringify({ kind: 'cpu_profile', seconds: 1 });
  const path = `/api/processes/${ordersProc.id}/commands`;
  const json = { 'content-type': 'application/json', cookie };
  const noOrigin = await rawRequest(path, { method: 'POST', headers: json, body: command });
  assert.equal(noOrigin.status, 403);
  assert.match(noOrigin.body.error, /Origin/);
  const wrongOrigin = await rawRequest(path, { method: 'POST', headers: { ...json, origin: 'http://evil.example' }, body: command });
  assert.equal(wrongOrigin.status, 403);
  const rightOrigin = await rawRequest(path, { method: 'POST', headers: { ...json, origin: `http://${host}` }, body: command });
  assert.equal(rightOrigin.status, 202, JSON.stringify(rightOrigin.body));
  assert.equal((await waitArtifact(hub, rightOrigin.body.artifact.id)).status, 'ready');
  // A cross-site sign-in attempt is refused too.
  const foreignSignIn = await rawRequest('/api/session', { method: 'POST', headers: { 'content-type': 'application/json', origin: 'http://evil.example' }, body: JSON.stringify({ token: TOKEN }) });
  assert.equal(foreignSignIn.status, 403);

  // A viewer's session has the viewer's role.
  const viewer = createToken('console-viewer', 'viewer');
  const vIn = await rawRequest('/api/session', { method: 'POST', headers: { authorization: `Bearer ${viewer}`, origin: `http://${host}` } });
  assert.equal(vIn.status, 200);
  const vCookie = vIn.headers['set-cookie'][0].split(';')[0];
  const vCmd = await rawRequest(path, { method: 'POST', headers: { 'content-type': 'application/json', cookie: vCookie, origin: `http://${host}` }, body: command });
  assert.equal(vCmd.status, 403);
  assert.match(vCmd.body.error, /needs role operator/);
  // Revoking the token ends its sessions.
  tokenCli('revoke', 'console-viewer');
  assert.equal((await rawRequest('/api/processes', { headers: { cookie: vCookie } })).status, 401);

  // Sign-out (a cookie write: Origin checked) ends the session.
  assert.equal((await rawRequest('/api/session', { method: 'DELETE', headers: { cookie } })).status, 403);
  const out = await rawRequest('/api/session', { method: 'DELETE', headers: { cookie, origin: `http://${host}` } });
  assert.equal(out.status, 204);
  assert.match(out.headers['set-cookie'][0], /perf_hub_session=;.*Max-Age=0/);
  assert.equal((await rawRequest('/api/processes', { headers: { cookie } })).status, 401);
  const audit = await api(hub, 'GET', '/api/audit');
  assert.ok(audit.body.some((x) => x.action === 'session.start' && x.actor === 'bootstrap@127.0.0.1'));
  assert.ok(audit.body.some((x) => x.action === 'session.end'));
});

test('pagination: more items than limit → Link rel="next"; following it returns the rest without duplicates', async () => {
  for (let i = 0; i < 3; i++) await readyArtifact(TOKEN, ordersProc.id, { kind: 'cpu_profile', seconds: 1 });
  const total = (await api(hub, 'GET', '/api/artifacts')).body;
  assert.ok(total.length >= 5, `${total.length} artifacts`);
  assert.equal((await api(hub, 'GET', '/api/artifacts')).headers.get('link'), null, 'no Link when all fit');

  async function follow(first) {
    const seen = [];
    let next = first;
    let pages = 0;
    while (next) {
      const page = await api(hub, 'GET', next);
      assert.equal(page.status, 200, JSON.stringify(page.body));
      assert.ok(Array.isArray(page.body), 'a bare array');
      seen.push(...page.body);
      const link = page.headers.get('link');
      next = link && /^<([^>]+)>; rel="next"$/.exec(link)[1];
      assert.ok(!next || next.includes('cursor='));
      pages += 1;
    }
    return { seen, pages };
  }

  const arts = await follow('/api/artifacts?limit=2');
  assert.ok(arts.pages >= 3);
  assert.deepEqual(arts.seen.map((a) => a.id), total.map((a) => a.id), 'the same artifacts in the same order, none twice');
  const ofProcess = await follow(`/api/artifacts?process_id=${ordersProc.id}&limit=1`);
  assert.ok(ofProcess.seen.length >= 5 && ofProcess.seen.every((a) => a.process_id === ordersProc.id));
  assert.equal(new Set(ofProcess.seen.map((a) => a.id)).size, ofProcess.seen.length);

  const procs = await follow('/api/processes?limit=1');
  assert.equal(procs.pages, 2, 'two processes, one per page; the last page has no Link');
  assert.deepEqual(new Set(procs.seen.map((p) => p.id)), new Set([ordersProc.id, paymentsProc.id]));

  const audit = await follow('/api/audit?limit=3');
  const allAudit = (await api(hub, 'GET', '/api/audit')).body;
  assert.equal(audit.seen.length, allAudit.length);
  assert.deepEqual(audit.seen.map((a) => a.ts + a.action), allAudit.map((a) => a.ts + a.action));

  const samples = await waitFor('metric samples', async () => {
    const all = (await api(hub, 'GET', `/api/processes/${ordersProc.id}/metrics?since=0`)).body;
    return all.length >= 2 && all;
  }, { timeout: 30000 });
  const metrics = await follow(`/api/processes/${ordersProc.id}/metrics?since=0&limit=1`);
  assert.ok(metrics.seen.length >= samples.length);
  assert.deepEqual(metrics.seen.slice(0, samples.length).map((s) => s.ts), samples.map((s) => s.ts));

  const tooBig = await api(hub, 'GET', '/api/artifacts?limit=10001');
  assert.equal(tooBig.status, 400);
  assert.match(tooBig.body.error, /limit must be between 1 and 10000/);
  assert.equal((await api(hub, 'GET', '/api/artifacts?cursor=nothex')).status, 400);
});

test('command parameters are bounded: interval_bytes, interval_us, frequency', async () => {
  const path = `/api/processes/${ordersProc.id}/commands`;
  for (const [body, re] of [
    [{ kind: 'heap_sampling', seconds: 1, interval_bytes: 1 }, /interval_bytes must be between 1024 and 1073741824, got 1/],
    [{ kind: 'cpu_profile', seconds: 1, interval_us: 0 }, /interval_us must be between 10 and 1000000, got 0/],
    [{ kind: 'perf_flamegraph', seconds: 1, frequency: 0 }, /frequency must be between 1 and 10000/],
    [{ kind: 'perf_flamegraph', seconds: 1, frequency: 100000 }, /frequency must be between 1 and 10000/],
  ]) {
    const r = await api(hub, 'POST', path, body);
    assert.equal(r.status, 400, JSON.stringify(body));
    assert.match(r.body.error, re);
  }
  // In range is accepted.
  const ok = await api(hub, 'POST', path, { kind: 'cpu_profile', seconds: 1, interval_us: 500 });
  assert.equal(ok.status, 202, JSON.stringify(ok.body));
  assert.equal((await waitArtifact(hub, ok.body.artifact.id)).status, 'ready');
});

test('security headers on the console and the API', async () => {
  for (const path of ['/', '/console/app.js', '/api/processes']) {
    const res = await fetch(hub.url(path), { headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(res.status, 200, path);
    const csp = res.headers.get('content-security-policy');
    assert.match(csp, /default-src 'none'/, path);
    assert.match(csp, /script-src 'self'(;|$)/, path);
    assert.match(csp, /frame-ancestors 'none'/, path);
    assert.equal(res.headers.get('x-frame-options'), 'DENY', path);
    assert.equal(res.headers.get('x-content-type-options'), 'nosniff', path);
    assert.equal(res.headers.get('referrer-policy'), 'no-referrer', path);
  }
});

// Last: it blocks its source address (127.0.0.3) for the rest of the window.
test('a failed-login flood: 429s after the limit, other sources unaffected, one aggregated audit entry, real entries kept', async () => {
  const flood = '127.0.0.3';
  const statuses = [];
  for (let i = 0; i < 60; i++) {
    statuses.push((await rawRequest('/api/processes', { headers: { authorization: `Bearer wrong-${i}-0123456789abcdef` }, localAddress: flood })).status);
  }
  assert.deepEqual(statuses.slice(0, 20), Array(20).fill(401), 'the first 20 failures are 401s');
  assert.deepEqual(statuses.slice(20), Array(40).fill(429), 'then 429s');
  const blocked = await rawRequest('/api/processes', { headers: { authorization: `Bearer ${TOKEN}` }, localAddress: flood });
  assert.equal(blocked.status, 429, 'the source is refused without looking at tokens');
  assert.ok(Number(blocked.headers['retry-after']) >= 1);
  const signIn = await rawRequest('/api/session', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: TOKEN }), localAddress: flood });
  assert.equal(signIn.status, 429, 'sign-in is limited too');
  // Another source works as before.
  assert.equal((await rawRequest('/api/processes', { headers: { authorization: `Bearer ${TOKEN}` }, localAddress: '127.0.0.2' })).status, 200);
  assert.equal((await api(hub, 'GET', '/api/processes')).status, 200);

  const audit = (await api(hub, 'GET', '/api/audit?limit=10000')).body;
  const of = (action) => audit.filter((x) => x.action === action && x.actor === `unauthenticated@${flood}`);
  assert.equal(of('auth.failed').length, 1, 'one aggregated entry for the failures');
  assert.equal(of('auth.failed')[0].detail.count, 20);
  assert.equal(of('auth.refused').length, 1, 'one aggregated entry for the refusals');
  assert.equal(of('auth.refused')[0].detail.count, 42, JSON.stringify(of('auth.refused')));
  assert.ok(audit.some((x) => x.action === 'command.request' && x.actor === 'token:operator1@127.0.0.1'), 'real entries still listed');
  const logLines = readFileSync(join(hub.dataDir, 'audit.log'), 'utf8').split('\n').filter((l) => l.includes(`unauthenticated@${flood}`));
  assert.ok(logLines.length <= 4, `${logLines.length} audit.log lines for the flood`);
});
