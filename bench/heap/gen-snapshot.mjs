// Writes object-dense heap snapshots of a chosen size for the heap-analysis benchmark.
//
//   node --max-old-space-size=16384 gen-snapshot.mjs --mb 300 --out /tmp/heap-300.heapsnapshot \
//        [--grow 5 --out2 /tmp/heap-300b.heapsnapshot [--out3 /tmp/heap-300c.heapsnapshot]]
//
// Builds a heap of many small linked records (objects, arrays, strings, Maps, closures: what a
// service's caches look like) until the heap is about mb / 1.7 (a snapshot file is ~1.7x the live
// heap), writes a snapshot, then optionally grows the heap by --grow percent and writes a second
// snapshot of the same process (for the diff benchmark); --out3 grows it by --grow percent again and
// writes a third (three snapshots of a growing process: the leak-hunt benchmark). Cost: ~115 ms of pause per MB of heap
// and ~8x the heap in extra memory while V8 writes (1 GB file: ~2 min, several GB of RAM).
import v8 from 'node:v8';
import fs from 'node:fs';

function arg(name, dflt) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
}
const targetMb = Number(arg('mb', 50));
const out = arg('out', `/tmp/heap-${targetMb}.heapsnapshot`);
const grow = Number(arg('grow', 0));
const out2 = arg('out2', null);
const out3 = arg('out3', null);

class Customer {
  constructor(i) {
    this.id = i;
    this.name = `customer-${i}`;
    this.tags = ['t' + (i % 97), 't' + (i % 89)];
    this.address = { street: `${i} Main St`, zip: 10000 + (i % 90000) };
    this.orders = [];
  }
}
class Order {
  constructor(i, customer) {
    this.id = i;
    this.customer = customer;
    this.total = i * 1.5;
    this.lines = [{ sku: 'sku' + (i % 1000), qty: i % 7 }];
  }
}

const retained = [];
const index = new Map();
let seq = 0;

/** Adds one batch of records (~300 KB of heap). */
function addBatch() {
  const batch = [];
  for (let k = 0; k < 1000; k++) {
    const c = new Customer(seq++);
    for (let j = 0; j < 2; j++) c.orders.push(new Order(seq * 10 + j, c));
    c.format = () => c.name + c.id;
    if (seq % 4 === 0) index.set(c.name, c);
    batch.push(c);
  }
  retained.push(batch);
}

function growTo(heapBytes) {
  while (process.memoryUsage().heapUsed < heapBytes) {
    for (let i = 0; i < 2; i++) addBatch();
  }
}

const t0 = Date.now();
growTo((targetMb * 1024 * 1024) / 1.7);
console.error(`heap ${(process.memoryUsage().heapUsed / 1048576).toFixed(0)} MB, ${seq} customers, writing ${out}`);
v8.writeHeapSnapshot(out);
console.error(`wrote ${(fs.statSync(out).size / 1048576).toFixed(0)} MB in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
/** Grows the heap by --grow percent of the records and writes one more snapshot to `path`. */
function growAndWrite(path) {
  const target = seq * (1 + grow / 100);
  while (seq < target) addBatch();
  const t1 = Date.now();
  v8.writeHeapSnapshot(path);
  console.error(`wrote ${path}: ${(fs.statSync(path).size / 1048576).toFixed(0)} MB in ${((Date.now() - t1) / 1000).toFixed(1)} s`);
}
if (grow > 0) {
  for (const path of [out2, out3]) if (path) growAndWrite(path);
}
