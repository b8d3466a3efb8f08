// Busy node workload for the flame graph benchmark: a few named hot paths of varying depth
// (recursion, JSON, regex, sort, Buffer/crypto natives) so `perf script` has varied stacks.
'use strict';
const crypto = require('crypto');
const seconds = Number(process.argv[2] || 10);
const end = Date.now() + seconds * 1000;

function recurse(n, acc) { return n === 0 ? hashSome(acc) : recurse(n - 1, acc + n); }
function hashSome(x) { return crypto.createHash('sha256').update(String(x)).digest('hex'); }
function jsonRoundTrip(i) { return JSON.parse(JSON.stringify({ i, list: [i, i + 1, { s: 'x'.repeat(i % 50) }] })); }
function regexWork(i) { return /(\d+)-(\w+)-(\d+)/.exec(`${i}-abc${i}-${i * 7}`); }
function sortWork(i) { const a = []; for (let k = 0; k < 200; k++) a.push((k * 7919 + i) % 1000); return a.sort((x, y) => x - y); }
function mathWork() { let x = 0; for (let k = 0; k < 5000; k++) x += Math.sqrt(k) * Math.sin(k); return x; }

function mainLoop() {
  let i = 0;
  while (Date.now() < end) {
    switch (i++ % 5) {
      case 0: recurse(5 + (i % 40), i); break;
      case 1: jsonRoundTrip(i); break;
      case 2: regexWork(i); break;
      case 3: sortWork(i); break;
      default: mathWork();
    }
  }
}
mainLoop();
