// Demo service for perf-agent: an HTTP server that keeps a growing cache of `DemoOrder`
// objects and can be told to block its event loop (GET /spin?ms=N) — the situation where
// in-process diagnostics usually fail and perf-agent still works.
//   node -r @corp/perf-agent/register examples/demo-app.js   (with PERF_AGENT_* set)
const http = require('node:http');

class DemoOrder {
  constructor(id) {
    this.id = id;
    this.items = [{ sku: 'sku-' + (id % 97), qty: 1 + (id % 5) }];
    this.createdAt = Date.now();
  }
}
const cache = new Map();
let nextId = 0;

function busyFibonacci(n) {
  return n < 2 ? n : busyFibonacci(n - 1) + busyFibonacci(n - 2);
}

function spinFor(ms) {
  const end = Date.now() + ms;
  let x = 0;
  while (Date.now() < end) x += busyFibonacci(20);
  return x;
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://localhost');
  if (url.pathname === '/spin') {
    const ms = Math.min(Number(url.searchParams.get('ms') || 10000), 120000);
    res.end(`spinning for ${ms} ms\n`);
    setImmediate(() => spinFor(ms));
    return;
  }
  for (let i = 0; i < 100; i++) cache.set(nextId, new DemoOrder(nextId++));
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify({ orders: cache.size }));
});

server.listen(Number(process.env.PORT || 3000), '127.0.0.1', () => {
  console.log(`demo app listening on http://127.0.0.1:${server.address().port} (pid ${process.pid})`);
});
