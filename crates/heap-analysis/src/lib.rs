//! perf-heap-analysis: analysis of V8 `.heapsnapshot` files for perf-agent's hub.
//!
//! What it computes, with the same rules as Chrome DevTools' heap profiler (so numbers match what
//! operators see when they open the same file in DevTools, and memlab):
//! - a constructor summary (count, shallow size, retained size per class),
//! - the largest objects by retained size with a shortest retainer path from the GC roots,
//! - leak suspects (objects and classes holding an outsize share of the heap),
//! - the diff of two snapshots of one process (per-class deltas, new objects by V8 id).
//!
//! Snapshots are streamed through a hand-written scanner into compact column arrays (see
//! `parser`, `graph`), the big arrays on two threads straight into their columns (see `split`,
//! `column`); dominators are computed without recursion (see `dominators`). The second thread
//! works beside each step: DevTools' owner and shape passes beside the dominator tree (they
//! read the graph only), the retainers beside the DFS numbering, the class table beside the
//! retained sizes, the retainer-path walk beside the classes' retained sizes; a leak hunt reads
//! the next snapshot while it analyses the current one. So a 1 GB snapshot is analysed in about
//! five seconds in little more than its size in memory. `PERF_HEAP_THREADS=1` keeps it on one
//! thread; `PERF_HEAP_PHASES=1` prints how long each step took.
//!
//! Entry points: [`analyze_path`], [`diff_paths`], [`render_analysis_text`], [`render_diff_text`],
//! and [`cli_main`] for `perf-hub analyze` / `perf-hub diff`.

pub mod cli;
mod column;
pub mod diff;
mod dom_state;
pub mod dominators;
pub mod error;
pub mod explorer;
pub mod graph;
mod interfaces;
pub mod leak;
mod parser;
pub mod render;
mod scan;
mod shallow;
mod split;
pub mod summary;

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::time::Instant;

use serde::Serialize;

pub use cli::{cli_main, run as run_cli, Command as CliCommand};
pub use diff::{ClassDelta, Diff};
pub use error::HeapError;
pub use explorer::Explorer;
pub use graph::HeapGraph;
pub use leak::{hunt_paths, LeakReport};
pub use render::{render_analysis_text, render_diff_text};
pub use summary::{Analysis, ClassSummary, LeakSuspect, ObjectReport, PathStep, SnapshotInfo, SuspectKind, Timings};

use dominators::{DominatedNodes, Dominators};
use summary::{ClassTable, Reporter};

/// Whose rules decide which references retain (they differ for Node.js snapshots).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Model {
    /// Chrome DevTools (default): objects reachable from the global object ("page owned") are
    /// only retained through page-owned paths; internal arrays are attributed to their owner;
    /// WeakMap values to their key.
    DevTools,
    /// memlab's `calculateAllNodesRetainedSizes`: "page owned" means reachable from the root's
    /// non-shortcut edges (nearly everything in Node.js), no internal-array attribution, no
    /// WeakMap rule.
    Memlab,
}

/// Tuning of the reports (sizes of the lists, suspect thresholds).
#[derive(Debug, Clone)]
pub struct AnalyzeOptions {
    /// Retention rules (DevTools by default).
    pub model: Model,
    /// Number of largest objects to report.
    pub top_objects: usize,
    /// Maximum number of constructor rows (0: all).
    pub max_classes: usize,
    /// An object retaining at least this share of the heap (percent) may be a suspect.
    pub suspect_object_percent: f64,
    /// A class retaining at least this share of the heap (percent) is a suspect.
    pub suspect_class_percent: f64,
    /// Maximum number of suspects of each kind.
    pub max_suspects: usize,
    /// Number of new objects listed in a diff.
    pub top_new_objects: usize,
    /// Compute retainer paths (one breadth-first search over the graph).
    pub paths: bool,
    /// Longest retainer path reported; the middle of longer ones is left out.
    pub max_path_len: usize,
}

impl Default for AnalyzeOptions {
    fn default() -> Self {
        AnalyzeOptions {
            model: Model::DevTools,
            top_objects: 20,
            max_classes: 0,
            suspect_object_percent: 10.0,
            suspect_class_percent: 25.0,
            max_suspects: 5,
            top_new_objects: 20,
            paths: true,
            max_path_len: 40,
        }
    }
}

/// Stage of the work, for progress reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Reading,
    Dominators,
    Summary,
    Paths,
}

/// A progress report: `done` out of `total` for the stage (bytes while reading, else 0/1).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Progress {
    /// Which snapshot: 0 for `analyze` and the first of a diff, 1 for the second.
    pub snapshot: u8,
    pub stage: Stage,
    pub done: u64,
    pub total: u64,
}

/// Analyses the snapshot at `path`.
pub fn analyze_path(
    path: impl AsRef<Path>,
    opts: &AnalyzeOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<Analysis, HeapError> {
    let path = path.as_ref();
    let (file, size) = open(path)?;
    analyze_reader(file, size, opts, progress).map_err(|e| with_path(e, path))
}

/// Analyses a snapshot read from `reader`; `total` is its size if known (0 otherwise).
pub fn analyze_reader<R: Read>(
    reader: R,
    total: u64,
    opts: &AnalyzeOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<Analysis, HeapError> {
    let loaded = load_with(reader, total, &Load { parents: opts.paths, ..Load::plain(0, opts.model) }, progress)?;
    Ok(loaded.analysis(opts, progress))
}

/// Compares the snapshot at `before` with the one at `after` (same process, taken in that order).
pub fn diff_paths(
    before: impl AsRef<Path>,
    after: impl AsRef<Path>,
    opts: &AnalyzeOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<Diff, HeapError> {
    let (a_path, b_path) = (before.as_ref(), after.as_ref());
    let (fa, sa) = open(a_path)?;
    let (fb, sb) = open(b_path)?;
    // The first snapshot's object shapes name plain objects in both, so rows line up.
    let (side_a, shapes) = {
        let a = load(fa, sa, 0, opts.model, None, progress).map_err(|e| with_path(e, a_path))?;
        (diff::Side::new(&a.graph, &a.table, a.info.clone()), a.shapes)
    };
    let mut b =
        load_with(fb, sb, &Load { shapes: Some(&shapes), parents: opts.paths, ..Load::plain(1, opts.model) }, progress)
            .map_err(|e| with_path(e, b_path))?;
    let parent_edge = b.parent_edge.take();
    let side_b = diff::Side::new(&b.graph, &b.table, b.info.clone());
    progress(Progress { snapshot: 1, stage: Stage::Paths, done: 0, total: 1 });
    let reporter = b.reporter(opts, parent_edge);
    let d = diff::compare(&side_a, &side_b, &b.graph, &b.dom, &reporter, opts.top_new_objects);
    progress(Progress { snapshot: 1, stage: Stage::Paths, done: 1, total: 1 });
    Ok(d)
}

fn open(path: &Path) -> Result<(File, u64), HeapError> {
    let io = |source| HeapError::Io { path: path.to_path_buf(), source };
    let file = File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    Ok((file, size))
}

/// Attaches the file name to bare read errors.
fn with_path(e: HeapError, path: &Path) -> HeapError {
    match e {
        HeapError::Read(source) => HeapError::Io { path: path.to_path_buf(), source },
        other => other,
    }
}

/// A parsed snapshot with its dominator tree and class table.
struct Loaded {
    graph: HeapGraph,
    dom: Dominators,
    dominated: DominatedNodes,
    table: ClassTable,
    info: SnapshotInfo,
    timings: Timings,
    /// Plain-object shapes used for class names.
    shapes: Vec<interfaces::Interface>,
    /// Breadth-first parents for retainer paths, when asked for at load time.
    parent_edge: Option<Vec<u32>>,
}

/// How a snapshot is loaded.
#[derive(Clone, Copy)]
struct Load<'a> {
    /// Its place in a diff or hunt (for progress).
    snapshot: u8,
    model: Model,
    /// Plain-object shapes to name objects by (inferred from this snapshot when None).
    shapes: Option<&'a [interfaces::Interface]>,
    /// Walk the breadth-first parents of the retainer paths too (on a second thread).
    parents: bool,
    /// Move owned internal arrays' sizes into their owners (DevTools' Summary). A leak hunt
    /// leaves this out: it changes only the sizes of V8-internal kinds, which a hunt never
    /// ranks (owners' retained sizes stay the same, see `shallow`).
    owner_sizes: bool,
}

impl Load<'_> {
    fn plain(snapshot: u8, model: Model) -> Load<'static> {
        Load { snapshot, model, shapes: None, parents: false, owner_sizes: true }
    }
}

fn load<R: Read>(
    reader: R,
    total: u64,
    snapshot: u8,
    model: Model,
    shapes: Option<&[interfaces::Interface]>,
    progress: &mut dyn FnMut(Progress),
) -> Result<Loaded, HeapError> {
    load_with(reader, total, &Load { shapes, ..Load::plain(snapshot, model) }, progress)
}

/// Parses and analyses a snapshot as `how` says.
fn load_with<R: Read>(
    reader: R,
    total: u64,
    how: &Load<'_>,
    progress: &mut dyn FnMut(Progress),
) -> Result<Loaded, HeapError> {
    let t0 = Instant::now();
    let graph = parse_graph(reader, total, how.snapshot, progress)?;
    let read_ms = ms(t0);
    let mut loaded = analyse_graph(graph, total, how, progress);
    loaded.timings.read_ms = read_ms;
    Ok(loaded)
}

/// Reads a snapshot into its graph.
fn parse_graph<R: Read>(
    reader: R,
    total: u64,
    snapshot: u8,
    progress: &mut dyn FnMut(Progress),
) -> Result<HeapGraph, HeapError> {
    let graph = {
        let mut on_bytes = |done: u64| progress(Progress { snapshot, stage: Stage::Reading, done, total });
        parser::parse(reader, total, &mut on_bytes)?
    };
    progress(Progress { snapshot, stage: Stage::Reading, done: total, total });
    Ok(graph)
}

/// The dominator tree, retained sizes and class table of a parsed snapshot (and the parents of
/// the retainer paths when `how.parents`).
fn analyse_graph(mut graph: HeapGraph, total: u64, how: &Load<'_>, progress: &mut dyn FnMut(Progress)) -> Loaded {
    let snapshot = how.snapshot;
    let parents = how.parents;
    let mut timings = Timings::default();
    let t1 = Instant::now();
    progress(Progress { snapshot, stage: Stage::Dominators, done: 0, total: 1 });
    let one_thread = one_thread();
    let (tree, shapes_used) = tree_and_devtools_names(&mut graph, how, one_thread);
    // The class table only reads the finished graph (names and sizes are final now), so it is
    // built on a second thread while this one sums the retained sizes and lists the dominator
    // tree's children.
    let dominance = |tree| {
        let dom = dominators::retained_sizes(&graph, tree);
        let dominated = DominatedNodes::build(&dom.idom);
        (dom, dominated)
    };
    let ((dom, dominated), table) = beside(|| dominance(tree), || summary::aggregate(&graph));
    timings.dominators_ms = ms(t1);
    let t2 = Instant::now();
    progress(Progress { snapshot, stage: Stage::Summary, done: 0, total: 1 });
    let (table, parent_edge) = std::thread::scope(|s| {
        let walk = (parents && !one_thread).then(|| s.spawn(|| summary::bfs_parents(&graph)));
        let mut table = table;
        summary::class_retained(&graph, &dom, &dominated, &mut table);
        // A failed walk is walked again by the reporter.
        let parent_edge = walk.and_then(|w| w.join().ok());
        (table, parent_edge)
    });
    timings.summary_ms = ms(t2);
    let info = SnapshotInfo {
        file_size: total,
        node_count: graph.node_count() as u64,
        edge_count: graph.edge_count() as u64,
        string_count: graph.strings.len() as u64,
        total_size: dom.retained[graph::ROOT as usize],
        unreachable_nodes: dom.unreachable,
    };
    Loaded { graph, dom, dominated, table, info, timings, shapes: shapes_used, parent_edge }
}

/// The dominator tree, and for DevTools' model its renames and size moves: the detached DOM
/// state, internal arrays' sizes moved into their owners, plain objects named by their shape
/// (inferred from this snapshot unless `shapes` are given). The tree reads neither sizes nor
/// object names, so the slow read-only halves of the others (finding owners and shapes) run on
/// a second thread beside it, and their results are written once both are done.
fn tree_and_devtools_names(
    graph: &mut HeapGraph,
    how: &Load<'_>,
    one_thread: bool,
) -> (dominators::Tree, Vec<interfaces::Interface>) {
    let (model, shapes) = (how.model, how.shapes);
    if model != Model::DevTools {
        return (dominators::tree(graph, model), Vec::new());
    }
    dom_state::propagate(graph);
    // The sizes are moved on the second thread, in place, as soon as the owners are known (the
    // owners array is gone before the tree's working arrays peak).
    let mut sizes = shallow::Sizes::take(graph);
    let g = &*graph;
    let names = |sizes: &mut shallow::Sizes| {
        if how.owner_sizes {
            sizes.attribute_internal(g);
        }
        let shapes = shapes.map_or_else(|| interfaces::infer(g), <[_]>::to_vec);
        let matches = interfaces::best_matches(g, &shapes);
        (shapes, matches)
    };
    let (tree, (shapes, matches)) = std::thread::scope(|s| {
        if one_thread {
            return (dominators::tree(g, model), names(&mut sizes));
        }
        let side = s.spawn(|| names(&mut sizes));
        let tree = dominators::tree(g, model);
        // The sizes may be half moved: no second try (the caller sees the panic as an error).
        let names = side.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (tree, names)
    });
    let mut t = Instant::now();
    sizes.put_back(graph);
    interfaces::rename(graph, &shapes, matches);
    phase("sizes and names written", &mut t);
    (tree, shapes)
}

impl Loaded {
    /// The reporter; `parent_edge` are the parents walked at load time (walked now if None and
    /// paths are wanted).
    fn reporter(&self, opts: &AnalyzeOptions, parent_edge: Option<Vec<u32>>) -> Reporter<'_> {
        Reporter {
            g: &self.graph,
            d: &self.dom,
            parent_edge: opts.paths.then(|| parent_edge.unwrap_or_else(|| summary::bfs_parents(&self.graph))),
            max_path: opts.max_path_len.max(10),
        }
    }

    fn analysis(mut self, opts: &AnalyzeOptions, progress: &mut dyn FnMut(Progress)) -> Analysis {
        let t = Instant::now();
        progress(Progress { snapshot: 0, stage: Stage::Paths, done: 0, total: 1 });
        let parent_edge = self.parent_edge.take();
        let g = &self.graph;
        let total = self.info.total_size;
        let r = self.reporter(opts, parent_edge);
        let top = summary::top_k(
            g.node_count(),
            opts.top_objects,
            |v| summary::is_reportable(g, v),
            |v| self.dom.retained[v as usize],
        );
        let largest_objects = top.into_iter().map(|v| r.object(v)).collect();
        let leak_suspects = summary::suspects(&r, &self.dominated, &self.table, opts);
        let classes = summary::class_rows(g, &self.table, total, opts.max_classes);
        let mut timings = self.timings.clone();
        timings.paths_ms = ms(t);
        progress(Progress { snapshot: 0, stage: Stage::Paths, done: 1, total: 1 });
        Analysis { snapshot: self.info.clone(), classes, largest_objects, leak_suspects, timings }
    }
}

/// `PERF_HEAP_THREADS=1` keeps the analysis on the calling thread (to compare in benchmarks, or
/// on a host that must leave its other core alone); by default parsing and the side passes use
/// a second thread.
fn one_thread() -> bool {
    std::env::var_os("PERF_HEAP_THREADS").is_some_and(|v| v == "1")
}

/// Runs `main` on this thread and `side` on a second one (both here, one after the other, with
/// `PERF_HEAP_THREADS=1`). A side that panicked is run again here: it only reads.
pub(crate) fn beside<A, B: Send>(main: impl FnOnce() -> A, side: impl Fn() -> B + Sync) -> (A, B) {
    if one_thread() {
        return (main(), side());
    }
    std::thread::scope(|s| {
        let other = s.spawn(&side);
        let a = main();
        (a, other.join().unwrap_or_else(|_| side()))
    })
}

fn ms(t: Instant) -> u64 {
    t.elapsed().as_millis() as u64
}

/// Prints how long each step took to stderr when `PERF_HEAP_PHASES=1` (for tuning).
pub(crate) fn phase(name: &str, t: &mut std::time::Instant) {
    if std::env::var_os("PERF_HEAP_PHASES").is_some_and(|v| v == "1") {
        static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        let at = START.get_or_init(Instant::now).elapsed().as_millis();
        eprintln!("phase {name:<28} {:>6} ms (at {at} ms)", t.elapsed().as_millis());
    }
    *t = std::time::Instant::now();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::tests::snapshot_json;

    fn write_tmp(name: &str, body: &str) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("perf-heap-{}-{name}", std::process::id()));
        std::fs::write(&p, body).expect("write temp file");
        p
    }

    /// root -shortcut-> global (id 3) -p-> Foo (id 5) [-p-> Foo (id 7) when `grown`].
    fn snapshot(grown: bool) -> String {
        let mut nodes = vec![(9, 0, 1, 0, 1), (3, 1, 3, 10, 1 + u32::from(grown)), (3, 2, 5, 20, 0)];
        let mut edges = vec![(5, 0, 1), (2, 3, 2)];
        if grown {
            nodes.push((3, 2, 7, 30, 0));
            edges.push((2, 3, 3));
        }
        snapshot_json(&nodes, &edges, &["", "global", "Foo", "p"])
    }

    #[test]
    fn analyze_and_diff_small_snapshots() {
        let a = write_tmp("a.heapsnapshot", &snapshot(false));
        let b = write_tmp("b.heapsnapshot", &snapshot(true));
        let mut stages = Vec::new();
        let an = analyze_path(&a, &AnalyzeOptions::default(), &mut |p| stages.push(p.stage)).unwrap();
        assert!(stages.contains(&Stage::Reading) && stages.contains(&Stage::Dominators));
        let foo = an.classes.iter().find(|c| c.name == "Foo").unwrap();
        assert_eq!((foo.count, foo.retained_size), (1, 20));
        assert_eq!(an.snapshot.total_size, 30);
        let d = diff_paths(&a, &b, &AnalyzeOptions::default(), &mut |_| {}).unwrap();
        let foo = d.classes.iter().find(|c| c.name == "Foo").unwrap();
        assert_eq!((foo.count_delta, foo.new_count, foo.deleted_count, foo.new_size), (1, 1, 0, 30));
        assert_eq!(d.classes[0].name, "Foo", "what grew most comes first");
        assert_eq!(d.new_objects.iter().map(|o| o.id).collect::<Vec<_>>(), vec![7]);
        assert_eq!(d.total_size_delta, 30);
        let text = render_diff_text(&d);
        assert!(text.contains("Foo"));
        assert!(render_analysis_text(&an).contains("Foo"));
        let missing = std::env::temp_dir().join("perf-heap-definitely-missing.heapsnapshot");
        assert!(matches!(analyze_path(&missing, &AnalyzeOptions::default(), &mut |_| {}), Err(HeapError::Io { .. })));
        let _ = std::fs::remove_file(a);
        let _ = std::fs::remove_file(b);
    }
}
