//! Leak hunt: N snapshots of one process, taken in order, reduced to the classes that grew at
//! *every* step — in count and in retained size — ranked steadiest first, each with the retainer
//! path of one of its new objects (present in the last snapshot, not in the first, by V8 id).
//!
//! What is left out of the ranking, and why:
//! - V8-internal node kinds (`(string)`, `(concatenated string)`, `(array)`, `(system)`,
//!   `(compiled code)`, `(object shape)`…, and `system / …` objects): they belong to the objects
//!   that hold them — a leaked object's own strings grow with it;
//! - a class whose count does not grow (the container holding the leak): it is not a new object
//!   of its own, it shows up on the suspects' retainer paths;
//! - a class that grew in one step and fell in another (churn, a cache that is trimmed).
//!
//! Memory: one snapshot analysed at a time while the next one is read (two graphs); of the
//! earlier ones only class totals are kept, and of the first its object ids (a bit per id).

use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;

use crate::diff::Side;
use crate::dominators::Bits;
use crate::graph::HeapGraph;
use crate::summary::Reporter;
use crate::{AnalyzeOptions, HeapError, Progress};

/// Most suspects reported.
pub const MAX_SUSPECTS: usize = 20;

/// Where a class's constructor was defined (1-based line and column, as DevTools shows them).
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Location {
    pub script_id: u32,
    pub line: u32,
    pub column: u32,
}

/// Per class of one snapshot: (count, retained).
type Totals = HashMap<(String, Option<Location>), (u64, u64)>;
/// Per class: counts and retained sizes across the snapshots.
type Rows = HashMap<(String, Option<Location>), (Vec<u64>, Vec<u64>)>;

/// One class that grew at every step.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LeakSuspect {
    /// The bare constructor name, as DevTools shows it.
    pub name: String,
    /// Set when constructors of this name were defined in more than one place: which one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// Instances in each snapshot, in order.
    pub counts: Vec<u64>,
    /// Retained size of the class in each snapshot (DevTools' model).
    pub retained: Vec<u64>,
    /// Objects of the class in the last snapshot that were not in the first.
    pub new_objects: u64,
    /// From a GC root down to a representative new object, each step as DevTools' Retainers view
    /// names it: `EDGE in CLASS @ID` (the holder of the edge), the object itself last.
    pub retainer_path: Vec<String>,
}

/// The answer of a hunt (the hub adds the snapshots' artifact ids).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LeakReport {
    /// Steadiest grower first.
    pub suspects: Vec<LeakSuspect>,
    /// Total reachable heap size in each snapshot.
    pub total_sizes: Vec<u64>,
}

/// V8's own node kinds, never a suspect of their own.
pub fn is_internal(name: &str) -> bool {
    name.starts_with('(') || name.starts_with("system / ") || name.is_empty()
}

/// Runs the hunt over `paths` (at least two, in the order they were taken).
///
/// Each snapshot after the first is read on a thread of its own while the one before it is
/// analysed (the two take about as long, and each alone leaves a core idle half the time), so
/// two graphs are in memory at a time. `PERF_HEAP_THREADS=1` reads them in turn.
pub fn hunt_paths(
    paths: &[impl AsRef<Path> + Sync],
    opts: &AnalyzeOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<LeakReport, HeapError> {
    if paths.len() < 2 {
        return Err(HeapError::Invalid("a leak hunt needs at least two snapshots".into()));
    }
    let ordinal = |i: usize| u8::try_from(i).unwrap_or(u8::MAX);
    let read = |i: usize, progress: &mut dyn FnMut(Progress)| -> Result<(HeapGraph, u64), HeapError> {
        let path = paths[i].as_ref();
        let (file, size) = crate::open(path)?;
        let graph = crate::parse_graph(file, size, ordinal(i), progress).map_err(|e| crate::with_path(e, path))?;
        Ok((graph, size))
    };
    let mut hunt = Hunt::default();
    let n = paths.len();
    std::thread::scope(|s| {
        let mut current = read(0, progress)?;
        for i in 0..n {
            let ahead = (i + 1 < n && !crate::one_thread()).then(|| s.spawn(move || read(i + 1, &mut |_| {})));
            let (graph, size) = current;
            // Only the last snapshot's retainer paths are reported: only it walks the parents.
            let how = crate::Load {
                shapes: hunt.shapes.as_deref(),
                parents: i + 1 == n,
                owner_sizes: false,
                ..crate::Load::plain(ordinal(i), opts.model)
            };
            let mut loaded = crate::analyse_graph(graph, size, &how, progress);
            if i + 1 == n {
                let parent_edge = loaded.parent_edge.take();
                return Ok(hunt.finish(&loaded, parent_edge, opts));
            }
            hunt.add(&loaded, i == 0);
            // Giving a graph's memory back takes a while: not on the way of the next analysis.
            s.spawn(move || drop(loaded));
            current = match ahead {
                Some(thread) => {
                    let next = thread.join().map_err(|_| HeapError::Invalid("snapshot reader panicked".into()))??;
                    progress(Progress {
                        snapshot: ordinal(i + 1),
                        stage: crate::Stage::Reading,
                        done: next.1,
                        total: next.1,
                    });
                    next
                }
                None => read(i + 1, progress)?,
            };
        }
        Err(HeapError::Invalid("no snapshot read".into()))
    })
}

/// What a hunt keeps of the snapshots analysed so far.
#[derive(Default)]
struct Hunt {
    by_name: Vec<Totals>,
    by_ctor: Vec<Totals>,
    total_sizes: Vec<u64>,
    /// The first snapshot's object ids.
    first: Option<IdSet>,
    /// The first snapshot's object shapes: they name plain objects in all, so rows line up.
    shapes: Option<Vec<crate::interfaces::Interface>>,
}

impl Hunt {
    /// Keeps the class totals of `loaded` (and, of the first, its ids and shapes).
    fn add(&mut self, loaded: &crate::Loaded, first: bool) {
        let side = Side::classes(&loaded.graph, &loaded.table, loaded.info.clone());
        self.total_sizes.push(side.info.total_size);
        let mut names = Totals::new();
        for (slot, name) in side.names.iter().enumerate() {
            let t = names.entry((name.clone(), None)).or_default();
            t.0 += side.count[slot];
            t.1 += side.retained[slot];
        }
        self.by_name.push(names);
        self.by_ctor.push(per_constructor(&side));
        if first {
            self.shapes = Some(loaded.shapes.clone());
            // Only the first snapshot's object ids are compared (with the last's objects).
            self.first = Some(IdSet::of(&loaded.graph, &loaded.table));
        }
    }

    /// The report, with the last snapshot `last`.
    fn finish(mut self, last: &crate::Loaded, parent_edge: Option<Vec<u32>>, opts: &AnalyzeOptions) -> LeakReport {
        self.add(last, self.first.is_none());
        let Hunt { by_name, by_ctor, total_sizes, first, .. } = self;
        match first {
            Some(first) => report(rows(&by_name, &by_ctor), total_sizes, &first, last, parent_edge, opts),
            None => LeakReport { suspects: Vec::new(), total_sizes },
        }
    }
}

/// The object ids of a snapshot (its counted objects, as the class table counts them), to tell
/// a later snapshot's new objects from old ones: a bit per id when the ids are dense enough —
/// V8 numbers objects as it first sees them, so they are — else sorted.
enum IdSet {
    Bits(Bits),
    Sorted(Vec<u32>),
}

impl IdSet {
    fn of(g: &HeapGraph, t: &crate::summary::ClassTable) -> IdSet {
        let ids = || (0..g.node_count() as u32).filter(|&v| t.slot(g, v).is_some()).map(|v| g.node_id[v as usize]);
        let max = g.node_id.iter().copied().max().unwrap_or(0) as usize;
        // At most 8 bytes of bits per node.
        if max < 64 * g.node_count().max(1) {
            let mut bits = Bits::new(max + 1);
            ids().for_each(|id| bits.set(id as usize));
            return IdSet::Bits(bits);
        }
        let mut sorted: Vec<u32> = ids().collect();
        sorted.sort_unstable();
        IdSet::Sorted(sorted)
    }

    fn contains(&self, id: u32) -> bool {
        match self {
            IdSet::Bits(bits) => (id as usize) < bits.capacity() && bits.get(id as usize),
            IdSet::Sorted(ids) => ids.binary_search(&id).is_ok(),
        }
    }
}

/// Counts and retained sizes per (class, constructor location): the class table's slots whose
/// objects share one constructor location (a name defined in several places has a slot per
/// place, with DevTools' retained size: objects nested in one of their own class count once).
fn per_constructor(side: &Side) -> Totals {
    let mut out = Totals::new();
    for (slot, loc) in side.locations.iter().enumerate() {
        let Some(loc) = loc else { continue };
        let t = out.entry((side.names[slot].clone(), Some(*loc))).or_default();
        t.0 += side.count[slot];
        t.1 += side.retained[slot];
    }
    out
}

/// The rows of the hunt: per class name, or per (name, constructor location) for a name whose
/// constructors were defined in more than one place in any snapshot (DevTools shows them apart).
fn rows(by_name: &[Totals], by_ctor: &[Totals]) -> Rows {
    let mut places: HashMap<&str, std::collections::BTreeSet<Location>> = HashMap::new();
    for t in by_ctor {
        for (name, loc) in t.keys() {
            if let Some(loc) = loc {
                places.entry(name.as_str()).or_default().insert(*loc);
            }
        }
    }
    let split: std::collections::HashSet<&str> =
        places.into_iter().filter(|(_, p)| p.len() > 1).map(|(name, _)| name).collect();
    let n = by_name.len();
    let mut rows = Rows::new();
    for (i, (names, ctors)) in by_name.iter().zip(by_ctor).enumerate() {
        let kept = names.iter().filter(|((name, _), _)| !split.contains(name.as_str()));
        let parted = ctors.iter().filter(|((name, _), _)| split.contains(name.as_str()));
        for (key, (count, retained)) in kept.chain(parted) {
            let row = rows.entry(key.clone()).or_insert_with(|| (vec![0; n], vec![0; n]));
            row.0[i] += count;
            row.1[i] += retained;
        }
    }
    rows
}

/// Growth at every step, in count and retained size.
fn steady(counts: &[u64], retained: &[u64]) -> bool {
    counts.windows(2).all(|w| w[1] > w[0]) && retained.windows(2).all(|w| w[1] > w[0])
}

/// Smallest growth of any step relative to the first count: how steady the growth is.
fn steadiness(counts: &[u64]) -> (u64, u64) {
    let min_step = counts.windows(2).map(|w| w[1] - w[0]).min().unwrap_or(0);
    (min_step, counts.last().copied().unwrap_or(0) - counts.first().copied().unwrap_or(0))
}

fn report(
    per_class: Rows,
    total_sizes: Vec<u64>,
    first: &IdSet,
    last: &crate::Loaded,
    parent_edge: Option<Vec<u32>>,
    opts: &AnalyzeOptions,
) -> LeakReport {
    let mut suspects: Vec<LeakSuspect> = per_class
        .into_iter()
        .filter(|((name, _), (c, r))| !is_internal(name) && steady(c, r))
        .map(|((name, location), (counts, retained))| LeakSuspect {
            name,
            location,
            counts,
            retained,
            new_objects: 0,
            retainer_path: vec![],
        })
        .collect();
    suspects.sort_by(|a, b| {
        let (sa, sb) = (steadiness(&a.counts), steadiness(&b.counts));
        sb.cmp(&sa)
            .then_with(|| growth(&b.retained).cmp(&growth(&a.retained)))
            .then_with(|| a.name.cmp(&b.name))
            .then_with(|| a.location.cmp(&b.location))
    });
    suspects.truncate(MAX_SUSPECTS);
    let g = &last.graph;
    let reporter = Reporter {
        g,
        d: &last.dom,
        parent_edge: Some(parent_edge.unwrap_or_else(|| crate::summary::bfs_parents(g))),
        max_path: opts.max_path_len.max(10),
    };
    let wanted: HashMap<(&str, Option<Location>), usize> =
        suspects.iter().enumerate().map(|(i, s)| ((s.name.as_str(), s.location), i)).collect();
    let split: std::collections::HashSet<&str> =
        suspects.iter().filter(|s| s.location.is_some()).map(|s| s.name.as_str()).collect();
    // Which suspect each class slot of the last snapshot belongs to, if any.
    let t = &last.table;
    let suspect_of_slot: Vec<Option<usize>> = (0..t.keys.len())
        .map(|slot| {
            let name = g.class_name(t.keys[slot]);
            let loc = if split.contains(name.as_str()) { t.location[slot] } else { None };
            wanted.get(&(name.as_str(), loc)).copied()
        })
        .collect();
    // The suspects' objects the first snapshot lacks; the representative is the first in node
    // order.
    let mut representative: Vec<Option<u32>> = vec![None; suspects.len()];
    let mut new_counts = vec![0u64; suspects.len()];
    for v in 0..g.node_count() as u32 {
        let Some(i) = t.slot(g, v).and_then(|slot| suspect_of_slot[slot as usize]) else { continue };
        if !first.contains(g.node_id[v as usize]) {
            new_counts[i] += 1;
            representative[i].get_or_insert(v);
        }
    }
    for (i, s) in suspects.iter_mut().enumerate() {
        s.new_objects = new_counts[i];
        if let Some(v) = representative[i] {
            s.retainer_path = devtools_path(&reporter, v);
        }
    }
    LeakReport { suspects, total_sizes }
}

fn growth(xs: &[u64]) -> u64 {
    xs.last().copied().unwrap_or(0).saturating_sub(xs.first().copied().unwrap_or(0))
}

/// The path as DevTools' Retainers view names its steps: `EDGE in HOLDER @ID`, from the GC root
/// down, then the object (`CLASS @ID`). Names of string values are never shown (they may hold
/// secrets): only classes, edge names and ids.
fn devtools_path(r: &Reporter<'_>, v: u32) -> Vec<String> {
    let report = r.object(v);
    let mut holder = "(GC roots)".to_string();
    let mut out = Vec::with_capacity(report.path.len() + 1);
    for step in &report.path {
        // Element edges are labelled `[N]` already, property and context edges by their name.
        out.push(format!("{} in {holder}", step.edge));
        holder = format!("{} @{}", step.class, step.id);
    }
    out.push(holder);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::tests::snapshot_json;

    fn write_tmp(name: &str, body: &str) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("perf-leak-{}-{name}", std::process::id()));
        std::fs::write(&p, body).expect("write temp file");
        p
    }

    /// root -> global (object "global") -holder-> Array "Array" holding `leaks` Leak objects
    /// (each with a string "payload"), plus `churn` Churn objects and `arrays` extra small
    /// Arrays held by the global.
    fn snapshot_with(leaks: u32, churn: u32, first_churn_id: u32, arrays: u32) -> String {
        // strings: 0 "", 1 "global", 2 "Array", 3 "Leak", 4 "holder", 5 "s", 6 "Churn", 7 "c", 8 "payload"
        let mut nodes = vec![(9, 0, 1, 0, 1), (3, 1, 3, 10, 1 + churn + arrays), (3, 2, 5, 16, leaks)];
        let mut edges = vec![(5, 0, 1), (2, 4, 2)];
        let churn_at = nodes.len() as u32;
        for i in 0..churn {
            nodes.push((3, 6, first_churn_id + 2 * i, 24, 0));
            edges.push((2, 7, churn_at + i));
        }
        let arrays_at = nodes.len() as u32;
        for i in 0..arrays {
            nodes.push((3, 2, 900_001 + 2 * i, 16, 0));
            edges.push((2, 7, arrays_at + i));
        }
        let leaks_at = nodes.len() as u32;
        for i in 0..leaks {
            edges.push((1, i, leaks_at + 2 * i));
        }
        for i in 0..leaks {
            nodes.push((3, 3, 1001 + 2 * i, 32, 1));
            // A big string per leaked object: the holder's retained size grows most.
            nodes.push((10, 8, 5001 + 2 * i, 400, 0));
            edges.push((2, 5, leaks_at + 2 * i + 1));
        }
        snapshot_json(&nodes, &edges, &["", "global", "Array", "Leak", "holder", "s", "Churn", "c", "payload"])
    }

    fn snapshot(leaks: u32, churn: u32, first_churn_id: u32) -> String {
        snapshot_with(leaks, churn, first_churn_id, 0)
    }

    #[test]
    fn the_diff_ranks_the_leaking_class_above_its_holder_and_its_strings() {
        let a = write_tmp("d1.heapsnapshot", &snapshot_with(2, 0, 1, 0));
        let b = write_tmp("d2.heapsnapshot", &snapshot_with(10, 0, 1, 1));
        let d = crate::diff_paths(&a, &b, &AnalyzeOptions::default(), &mut |_| {}).expect("diff");
        let names: Vec<&str> = d.classes.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names.first(), Some(&"Leak"), "{names:?}");
        let array = names.iter().position(|n| *n == "Array").expect("array row");
        let strings = names.iter().position(|n| n.starts_with('(')).expect("string row");
        assert!(array < strings, "internal kinds come last: {names:?}");
        for p in [a, b] {
            let _ = std::fs::remove_file(p);
        }
    }

    #[test]
    fn the_steady_grower_comes_first_with_its_holder_on_the_path() {
        let paths = [
            write_tmp("1.heapsnapshot", &snapshot(2, 5, 100_001)),
            write_tmp("2.heapsnapshot", &snapshot(4, 1, 200_001)),
            write_tmp("3.heapsnapshot", &snapshot(6, 7, 300_001)),
        ];
        let r = hunt_paths(&paths, &AnalyzeOptions::default(), &mut |_| {}).expect("hunt");
        let names: Vec<&str> = r.suspects.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["Leak"], "churn fell in a step; the holder and the strings are no suspects");
        let leak = &r.suspects[0];
        assert_eq!(leak.counts, [2, 4, 6]);
        assert!(leak.retained.windows(2).all(|w| w[1] > w[0]), "{:?}", leak.retained);
        assert_eq!(leak.new_objects, 4);
        assert!(leak.retainer_path.first().is_some_and(|s| s.ends_with(" in (GC roots)")), "{:?}", leak.retainer_path);
        assert!(leak.retainer_path.iter().any(|s| s.starts_with("holder in global @3")), "{:?}", leak.retainer_path);
        assert!(
            leak.retainer_path.iter().any(|s| s.starts_with("[") && s.contains("in Array @5")),
            "{:?}",
            leak.retainer_path
        );
        assert!(leak.retainer_path.last().is_some_and(|s| s.starts_with("Leak @")), "{:?}", leak.retainer_path);
        assert_eq!(r.total_sizes.len(), 3);
        assert!(hunt_paths(&paths[..1], &AnalyzeOptions::default(), &mut |_| {}).is_err());
        for p in paths {
            let _ = std::fs::remove_file(p);
        }
    }

    #[test]
    fn function_locations_are_read_for_their_nodes() {
        let json = snapshot(1, 0, 1).replace(r#""locations":[1,2,3,4]"#, r#""locations":[7,82,0,23,3,9,9,9]"#);
        let g = crate::parser::tests::parse_str(&json).expect("parse");
        assert_eq!(g.location(1), Some((82, 0, 23)), "object_index 7 is node 1 (7 fields a node)");
        assert_eq!(g.locations.len(), 1, "an index that is not a node's is dropped");
        assert_eq!(g.location(2), None);
    }

    #[test]
    fn internal_kinds_are_no_suspects() {
        for name in [
            "(string)",
            "(concatenated string)",
            "(array)",
            "(system)",
            "(compiled code)",
            "(object shape)",
            "system / Context",
        ] {
            assert!(is_internal(name), "{name}");
        }
        assert!(!is_internal("Array") && !is_internal("BarsLeakyEntry"));
    }
}
