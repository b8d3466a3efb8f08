'use strict';
// HTTP server of bench/cpu-profile/run.mjs and bench/metrics/run.mjs: @corp/perf-agent started
// from PERF_AGENT_* env (unless BENCH_NO_AGENT=1), a handler doing a little JSON work. Prints
// `ready PORT` once the agent is connected.
const http = require('node:http');
const noAgent = process.env.BENCH_NO_AGENT === '1';
const agent = noAgent ? { status: () => ({ connected: true }) } : require(process.env.PERF_AGENT_PKG || '@corp/perf-agent');

if (!noAgent) agent.start({});

const catalog = Array.from({ length: 40 }, (_, i) => ({
  sku: `sku-${i}`,
  title: `Item number ${i}`,
  price: Math.round(i * 137.5) / 100,
  tags: ['a', 'b', 'c'].slice(0, (i % 3) + 1),
}));

function handle(req, res) {
  // Parse a small document, filter, aggregate, serialise: ~tens of µs of JS per request.
  const doc = JSON.parse(JSON.stringify({ q: req.url, items: catalog }));
  const picked = doc.items.filter((it) => it.price > 10 && it.tags.length > 1);
  const total = picked.reduce((s, it) => s + it.price, 0);
  const body = JSON.stringify({ url: doc.q, count: picked.length, total, first: picked.slice(0, 5) });
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

const server = http.createServer(handle);
server.keepAliveTimeout = 60000;
server.listen(0, '127.0.0.1', () => {
  const t = setInterval(() => {
    if (agent.status().connected) {
      clearInterval(t);
      console.log(`ready ${server.address().port}`);
    }
  }, 50);
});
process.on('SIGTERM', () => process.exit(0));
