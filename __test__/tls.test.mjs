// TLS end to end: a real perf-hub with a certificate made here with openssl (a test CA and a
// server certificate for IP:127.0.0.1 / DNS:localhost), real Node apps whose agent trusts that CA
// (PERF_AGENT_TLS_CA), the HTTPS API with the CA, and what must be refused: a plaintext hello on
// the TLS agent port, plaintext HTTP on the HTTPS port, an agent trusting another CA, a public
// plaintext listener. Also secret rotation (two secrets for one app) and --app-secrets-file.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync, writeFileSync, chmodSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import https from 'node:https';
import http from 'node:http';
import net from 'node:net';
import {
  startHub, startApp, api, hubEnv, waitFor, tempDir, cleanup, HUB_BIN, TOKEN, APP, SECRET,
} from './helpers.mjs';

const SECOND_SECRET = 'orders-next-secret-456';

/** A CA, a server certificate it signed for 127.0.0.1/localhost, and an unrelated second CA. */
function makeCerts(dir) {
  const ossl = (...args) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  const caExt = ['-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'];
  for (const name of ['ca', 'other-ca']) {
    ossl('req', '-x509', ...ec, '-keyout', `${name}.key`, '-out', `${name}.pem`, '-days', '2', '-subj', `/CN=perf-agent test ${name}`, ...caExt);
  }
  ossl('req', ...ec, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost');
  writeFileSync(join(dir, 'server.ext'), [
    'basicConstraints=critical,CA:FALSE',
    'keyUsage=critical,digitalSignature',
    'extendedKeyUsage=serverAuth',
    'subjectAltName=IP:127.0.0.1,DNS:localhost',
  ].join('\n') + '\n');
  ossl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial',
    '-out', 'server.pem', '-days', '2', '-extfile', 'server.ext');
  return {
    ca: join(dir, 'ca.pem'), otherCa: join(dir, 'other-ca.pem'),
    cert: join(dir, 'server.pem'), key: join(dir, 'server.key'),
  };
}

/** The HTTP API over HTTPS, trusting `ca`; `{ status, body }`. */
function httpsApi(hub, method, path, body, { ca = certs.ca } = {}) {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = https.request({
      host: '127.0.0.1', port: hub.httpPort, method, path, ca: readFileSync(ca),
      headers: { authorization: `Bearer ${TOKEN}`, ...(payload ? { 'content-type': 'application/json' } : {}) },
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const buf = Buffer.concat(chunks);
        let parsed = buf.toString('utf8');
        try { parsed = JSON.parse(parsed); } catch {}
        resolve({ status: res.statusCode, body: parsed, raw: buf });
      });
    });
    req.on('error', reject);
    req.end(payload);
  });
}

async function processByPidTls(hub, pid) {
  return waitFor(`process ${pid} over https`, async () => {
    const { body } = await httpsApi(hub, 'GET', '/api/processes');
    return Array.isArray(body) && body.find((p) => p.pid === pid && p.connected);
  });
}

/** Everything a socket receives until the peer closes it (or errors). */
function drain(socket) {
  return new Promise((resolve) => {
    const chunks = [];
    socket.on('data', (c) => chunks.push(c));
    const done = () => resolve(Buffer.concat(chunks));
    socket.on('close', done);
    socket.on('error', done);
  });
}

let dir;
let certs;
let hub;
const apps = [];

before(async () => {
  dir = tempDir('perf-agent-tls-');
  certs = makeCerts(dir);
  hub = await startHub({ extraArgs: ['--tls-cert', certs.cert, '--tls-key', certs.key, '--app', `${APP}:${SECOND_SECRET}`] });
});

after(async () => {
  for (const a of apps) await a.kill();
  if (hub) {
    await hub.stop();
    cleanup(hub.dataDir);
  }
  cleanup(dir);
});

async function app(env, opts = {}) {
  const a = await startApp('app.js', { ...opts, env: hubEnv(hub, env) });
  apps.push(a);
  return a;
}

test('an agent trusting the hub CA takes a heap snapshot over TLS; the HTTPS API serves it', async () => {
  const a = await app({ PERF_AGENT_TLS_CA: certs.ca, LEAK_COUNT: '123' });
  const p = await processByPidTls(hub, a.child.pid);
  const res = await httpsApi(hub, 'POST', `/api/processes/${p.id}/commands`, { kind: 'heap_snapshot' });
  assert.equal(res.status, 202, JSON.stringify(res.body));
  const id = res.body.artifact.id;
  const art = await waitFor('snapshot ready', async () => {
    const { body } = await httpsApi(hub, 'GET', `/api/artifacts/${id}`);
    return (body.status === 'ready' || body.status === 'failed') && body;
  }, { timeout: 30000, interval: 100 });
  assert.equal(art.status, 'ready', art.error);
  const dl = await httpsApi(hub, 'GET', `/api/artifacts/${id}/download`);
  assert.equal(dl.status, 200);
  assert.equal(dl.raw.length, art.size);
  assert.equal(createHash('sha256').update(dl.raw).digest('hex'), art.sha256);
  const snap = JSON.parse(dl.raw.toString('utf8'));
  assert.ok(snap.strings.includes('PerfAgentTestLeak'), 'the snapshot holds the app\'s class');
});

test('an app\'s second secret (rotation) connects as well as the first', async () => {
  const a = await app({ PERF_AGENT_TLS_CA: certs.ca, PERF_AGENT_SECRET: SECOND_SECRET });
  const p = await processByPidTls(hub, a.child.pid);
  assert.equal(p.app, APP);
});

test('an agent trusting another CA is refused and says why', async () => {
  const a = await app({ PERF_AGENT_TLS_CA: certs.otherCa, REPORT_ERRORS: '1' }, { waitReady: false });
  const line = await a.waitLine(/^status /);
  const status = JSON.parse(line.l.slice('status '.length));
  assert.equal(status.connected, false);
  assert.match(status.lastError, /TLS handshake.*certificate/i);
  const { body } = await httpsApi(hub, 'GET', '/api/processes');
  assert.ok(!body.some((p) => p.pid === a.child.pid), 'never registered');
});

test('PERF_AGENT_TLS=1 verifies against the system roots, which don\'t hold the test CA', async () => {
  const a = await app({ PERF_AGENT_TLS: '1', REPORT_ERRORS: '1' }, { waitReady: false });
  const line = await a.waitLine(/^status /);
  assert.match(JSON.parse(line.l.slice('status '.length)).lastError, /TLS( handshake.*certificate|: no system root)/);
});

test('a missing CA file is a clear lastError, not a throw, and no plaintext fallback', async () => {
  const missing = join(dir, 'no-such-ca.pem');
  const a = await app({ PERF_AGENT_TLS_CA: missing, REPORT_ERRORS: '1' }, { waitReady: false });
  const line = await a.waitLine(/^status /);
  assert.match(JSON.parse(line.l.slice('status '.length)).lastError, /CA file .*no-such-ca\.pem/);
});

test('a plaintext hello on the TLS agent port gets no challenge and is closed', async () => {
  const hello = JSON.stringify({
    type: 'hello', protocol_version: 1, app: APP, instance_id: 'abcdefabcdefabcd', hostname: 'h', pid: 1,
    node_version: 'v20', agent_version: '0.1.0',
  });
  const payload = Buffer.from(hello);
  const frame = Buffer.alloc(5 + payload.length);
  frame.writeUInt32BE(payload.length + 1, 0);
  frame[4] = 1;
  payload.copy(frame, 5);
  const socket = net.connect(hub.agentPort, '127.0.0.1');
  const received = drain(socket);
  socket.write(frame);
  const bytes = await received;
  assert.ok(!bytes.toString('latin1').includes('challenge'), 'no challenge in plaintext');
});

test('plaintext HTTP on the HTTPS port fails', async () => {
  const attempt = new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: hub.httpPort, path: '/api/processes', headers: { authorization: `Bearer ${TOKEN}` } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    });
    req.on('error', reject);
    req.end();
  });
  await assert.rejects(attempt, /socket hang up|ECONNRESET|Parse Error/);
});

test('stalled TLS handshakes on both ports hold up nobody else', async () => {
  // Connected, never sending a byte: each sits in its own handshake task until its deadline.
  const stalled = [];
  for (let i = 0; i < 20; i++) {
    for (const port of [hub.agentPort, hub.httpPort]) {
      const s = net.connect(port, '127.0.0.1');
      s.on('error', () => {});
      stalled.push(s);
    }
  }
  try {
    await Promise.all(stalled.map((s) => new Promise((r) => (s.connecting ? s.once('connect', r) : r()))));
    const res = await httpsApi(hub, 'GET', '/api/processes');
    assert.equal(res.status, 200);
    const a = await app({ PERF_AGENT_TLS_CA: certs.ca });
    await processByPidTls(hub, a.child.pid);
  } finally {
    for (const s of stalled) s.destroy();
  }
});

test('an HTTPS client that does not trust the hub CA is refused', async () => {
  await assert.rejects(httpsApi(hub, 'GET', '/api/processes', undefined, { ca: certs.otherCa }), /certificate/i);
});

test('without TLS, a non-loopback listener is refused unless --insecure-plaintext', async () => {
  const data = tempDir('perf-agent-tls-refuse-');
  try {
    const run = (extra) => new Promise((resolve) => {
      const child = spawn(HUB_BIN, ['serve', '--data-dir', data, '--agent-addr', '0.0.0.0:0', '--http-addr', '127.0.0.1:0', '--token', TOKEN, ...extra],
        { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, NO_COLOR: '1' } });
      let stderr = '';
      child.stderr.on('data', (d) => {
        stderr += d;
        if (/perf-hub listening/.test(stderr)) child.kill('SIGTERM');
      });
      child.once('exit', (code) => resolve({ code, stderr }));
    });
    const refused = await run([]);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /refusing to listen on 0\.0\.0\.0:0 .*without TLS/);
    assert.match(refused.stderr, /--tls-cert/);
    assert.match(refused.stderr, /--insecure-plaintext/);
    const allowed = await run(['--insecure-plaintext']);
    assert.match(allowed.stderr, /perf-hub listening/, 'told to, it listens');
  } finally {
    cleanup(data);
  }
});

test('--app-secrets-file: its apps connect, a group-readable file is warned about; a TLS agent never talks plaintext', async () => {
  const file = join(dir, 'apps.secrets');
  writeFileSync(file, '# name:secret, one a line\nbilling:billing-secret-1\n');
  chmodSync(file, 0o644);
  const plain = await startHub({ extraArgs: ['--app-secrets-file', file] });
  try {
    assert.match(plain.log(), /readable by group or others/);
    const a = await startApp('app.js', { env: { ...hubEnv(plain), PERF_AGENT_APP: 'billing', PERF_AGENT_SECRET: 'billing-secret-1' } });
    apps.push(a);
    assert.equal(JSON.parse(a.lines.find((x) => /^ready/.test(x.l)).l.slice('ready '.length)).connected, true);
    // An agent configured for TLS never falls back to plaintext with a plaintext hub.
    const tlsAgent = await startApp('app.js', {
      env: { ...hubEnv(plain), PERF_AGENT_TLS_CA: certs.ca, REPORT_ERRORS: '1' }, waitReady: false,
    });
    apps.push(tlsAgent);
    const line = await tlsAgent.waitLine(/^status /);
    assert.match(JSON.parse(line.l.slice('status '.length)).lastError, /TLS handshake/);
    const { body } = await api(plain, 'GET', '/api/processes');
    assert.ok(!body.some((p) => p.pid === tlsAgent.child.pid), 'the TLS agent never registered in plaintext');
  } finally {
    await plain.stop();
    cleanup(plain.dataDir);
  }
});
