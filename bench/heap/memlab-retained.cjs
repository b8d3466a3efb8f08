// Reference timing: memlab's parser + dominators/retained sizes on one snapshot.
//   node --max-old-space-size=16384 memlab-retained.cjs FILE
const core = require('@memlab/core');
(async () => {
  const snap = await core.utils.getSnapshotFromFile(process.argv[2], { buildNodeIdIndex: true, verbose: false });
  new core.TraceFinder().calculateAllNodesRetainedSizes(snap);
  let max = 0;
  snap.nodes.forEach((n) => { if (n.retainedSize > max && n.id !== 0) max = n.retainedSize; });
  console.log(JSON.stringify({ nodes: snap.nodes.length, maxRetained: max }));
})();
