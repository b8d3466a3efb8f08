//! Snapshots written by a real Node.js during the test (skipped when `node` is not on PATH):
//! a uniquely named class with exactly N live instances in a chain is counted N times; a second
//! snapshot of the same process after adding M instances diffs as +M, all new; cut and
//! corrupted copies of the file are errors.

use std::path::{Path, PathBuf};
use std::process::Command;

use perf_heap_analysis::{analyze_path, diff_paths, AnalyzeOptions, HeapError};

const CLASS: &str = "RustProbeChainLink";
const N: u64 = 1234;
const M: u64 = 321;

fn temp_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("perf-heap-real-node-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// Writes the two snapshots; `None` when node is unavailable.
fn write_snapshots(dir: &Path) -> Option<(PathBuf, PathBuf)> {
    let (a, b) = (dir.join("a.heapsnapshot"), dir.join("b.heapsnapshot"));
    let script = format!(
        "const v8 = require('node:v8');
         class {CLASS} {{ constructor(i, next) {{ this.i = i; this.next = next; }} }}
         let h = null; for (let i = 0; i < {N}; i++) h = new {CLASS}(i, h); globalThis.chainA = h;
         v8.writeHeapSnapshot(process.argv[1]);
         let g = null; for (let i = 0; i < {M}; i++) g = new {CLASS}(i, g); globalThis.chainB = g;
         v8.writeHeapSnapshot(process.argv[2]);"
    );
    let status = Command::new("node").arg("-e").arg(script).arg(&a).arg(&b).status().ok()?;
    assert!(status.success(), "node failed to write snapshots");
    Some((a, b))
}

#[test]
fn real_node_snapshots() {
    let dir = temp_dir();
    let Some((a, b)) = write_snapshots(&dir) else {
        eprintln!("node not found: skipping");
        return;
    };
    let opts = AnalyzeOptions::default();
    let an = analyze_path(&a, &opts, &mut |_| {}).expect("analyze A");
    let row = an.classes.iter().find(|c| c.name == CLASS).expect("probe class row");
    assert_eq!(row.count, N);
    assert!(row.retained_size >= row.shallow_size && row.shallow_size > 0);

    let d = diff_paths(&a, &b, &opts, &mut |_| {}).expect("diff");
    let row = d.classes.iter().find(|c| c.name == CLASS).expect("probe class in diff");
    assert_eq!((row.count_before, row.count_after), (N, N + M));
    assert_eq!((row.count_delta, row.new_count, row.deleted_count), (M as i64, M, 0));
    assert!(d.new_objects.iter().any(|o| o.class == CLASS));

    let bytes = std::fs::read(&a).expect("read A");
    let cut = dir.join("cut.heapsnapshot");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).expect("write cut");
    assert!(matches!(analyze_path(&cut, &opts, &mut |_| {}), Err(HeapError::Truncated { .. })));
    let mut bad = bytes.clone();
    let at = bad.windows(9).position(|w| w == b"\"edges\":[").expect("edges section") + 30;
    bad[at] = b'#';
    let corrupt = dir.join("corrupt.heapsnapshot");
    std::fs::write(&corrupt, &bad).expect("write corrupt");
    assert!(matches!(analyze_path(&corrupt, &opts, &mut |_| {}), Err(HeapError::Corrupt { .. })));
    let _ = std::fs::remove_dir_all(&dir);
}
