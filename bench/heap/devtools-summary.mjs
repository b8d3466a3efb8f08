// Reference timing: DevTools' own heap model (npm heap-snapshot-toolkit): load, dominators,
// retained sizes and the Summary aggregates; with two files, DevTools' Comparison (diff) instead.
//   node --max-old-space-size=16384 devtools-summary.mjs FILE [FILE2]
import fs from 'node:fs';
import { parse, diffFromStreams } from 'heap-snapshot-toolkit';

const [a, b] = process.argv.slice(2);
if (b) {
  let classes = 0;
  for await (const item of diffFromStreams(fs.createReadStream(a), fs.createReadStream(b))) {
    if (item.type === 'diff') classes = Object.keys(item.result).length;
  }
  console.log(JSON.stringify({ diffClasses: classes }));
} else {
  const snap = await parse(fs.createReadStream(a));
  const aggregates = await snap.aggregatesWithFilter({});
  console.log(JSON.stringify({ nodes: snap.nodeCount, classes: Object.keys(aggregates).length }));
}
