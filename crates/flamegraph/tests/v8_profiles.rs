//! Real V8 profiles: node writes a .cpuprofile / .heapprofile of a uniquely named function,
//! we fold and render it and look for the name.

use std::path::{Path, PathBuf};
use std::process::Command;

use perf_flamegraph::{fold_file, render_file, InputFormat, RenderOptions};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("flame-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// Runs node with `args`; `None` (test skipped) when node is not installed.
fn node(args: &[&str]) -> Option<()> {
    let run = Command::new("node").args(args).current_dir(std::env::temp_dir()).status();
    match run {
        Ok(status) => {
            assert!(status.success(), "node {args:?} failed: {status}");
            Some(())
        }
        Err(e) => {
            eprintln!("SKIPPED: node not runnable: {e}");
            None
        }
    }
}

fn only_file_with_ext(dir: &Path, ext: &str) -> PathBuf {
    let files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    assert_eq!(files.len(), 1, "expected one .{ext} in {dir:?}: {files:?}");
    files[0].clone()
}

fn check(profile: &Path, dir: &Path, format: InputFormat, name: &str, count_name: &str) {
    let fold = fold_file(profile).expect("fold");
    assert_eq!(fold.format, format);
    let text = String::from_utf8_lossy(&fold.folded);
    assert!(text.contains(name), "{name} not in folded output:\n{text}");
    assert!(!text.contains("(root)"), "(root) kept:\n{text}");
    let svg_path = dir.join("out.svg");
    let stats = render_file(profile, &svg_path, &RenderOptions::default()).expect("render");
    assert_eq!(stats.format, format);
    assert!(stats.total > 0);
    let svg = std::fs::read_to_string(&svg_path).expect("read svg");
    assert!(svg.contains(name), "{name} not in the SVG");
    assert!(svg.contains(count_name), "{count_name} not in the SVG");
}

#[test]
fn real_cpuprofile_names_the_hot_function() {
    let dir = temp_dir("cpuprof");
    let script = "function spinUniqueCpuFrame42() { const end = Date.now() + 1000; let x = 0; \
                  while (Date.now() < end) { x += Math.sqrt(x + 1); } return x; } \
                  spinUniqueCpuFrame42();";
    let prof_dir = format!("--cpu-prof-dir={}", dir.display());
    if node(&["--cpu-prof", &prof_dir, "-e", script]).is_none() {
        return;
    }
    let profile = only_file_with_ext(&dir, "cpuprofile");
    check(&profile, &dir, InputFormat::CpuProfile, "spinUniqueCpuFrame42", "samples");
    let fold = fold_file(&profile).expect("fold");
    let text = String::from_utf8_lossy(&fold.folded);
    let hot: u64 = text
        .lines()
        .filter(|l| l.contains("spinUniqueCpuFrame42"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<u64>().ok())
        .sum();
    assert!(hot * 2 > fold.summary.total, "spin has {hot} of {} samples", fold.summary.total);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn real_heapprofile_names_the_allocating_function() {
    let dir = temp_dir("heapprof");
    let script = "function allocUniqueHeapFrame42() { const keep = []; \
                  for (let i = 0; i < 200000; i++) keep.push({ i, s: 'x' + i }); return keep; } \
                  globalThis.kept = allocUniqueHeapFrame42();";
    let prof_dir = format!("--heap-prof-dir={}", dir.display());
    if node(&["--heap-prof", "--heap-prof-interval=16384", &prof_dir, "-e", script]).is_none() {
        return;
    }
    let profile = only_file_with_ext(&dir, "heapprofile");
    check(&profile, &dir, InputFormat::HeapProfile, "allocUniqueHeapFrame42", "bytes");
    std::fs::remove_dir_all(&dir).ok();
}
