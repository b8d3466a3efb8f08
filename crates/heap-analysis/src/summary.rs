//! Analysis of one snapshot: constructor summary, largest objects, retainer paths, leak suspects.
//!
//! The constructor summary follows DevTools' "Summary" view (`buildAggregates`,
//! `calculateClassesRetainedSize`): nodes with a zero self size are not counted; the class of an
//! object or native object is its name, other nodes are grouped by type (`(system)`,
//! `(compiled code)`, `Function`, `RegExp`, `(string)`, …); the retained size of a class is the sum
//! of the retained sizes of its objects that are not dominated by another object of the same
//! class (so nested instances are not counted twice).
//!
//! Same-named constructors defined in different places (two scripts each with a `class Foo`) are
//! separate rows, as DevTools shows them: such a row carries its constructor's `location`; the
//! name stays the bare constructor name.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::BuildHasherDefault;

use serde::Serialize;

use crate::dominators::{DominatedNodes, Dominators};
use crate::graph::{HeapGraph, ROOT};
pub use crate::leak::Location;
use crate::AnalyzeOptions;

/// Facts about the snapshot as a whole.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotInfo {
    pub file_size: u64,
    pub node_count: u64,
    pub edge_count: u64,
    pub string_count: u64,
    /// Sum of all self sizes (DevTools' "Total" size; equals the root's retained size).
    pub total_size: u64,
    /// Nodes not reachable from the root through retaining edges (attached to the root).
    pub unreachable_nodes: u64,
}

/// One row of the constructor summary.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClassSummary {
    /// The bare constructor name, as DevTools shows it.
    pub name: String,
    /// Set when constructors of this name were defined in more than one place: which one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// Node type of the group's objects ("object", "closure", "hidden", …).
    pub node_type: String,
    pub count: u64,
    pub shallow_size: u64,
    pub retained_size: u64,
    pub retained_percent: f64,
}

/// One step of a retainer path: the edge taken and the node it leads to.
#[derive(Debug, Clone, Serialize)]
pub struct PathStep {
    pub edge: String,
    pub edge_type: String,
    pub id: u64,
    pub class: String,
    pub name: String,
    pub node_type: String,
}

/// An object with its sizes and a shortest retainer path from the root.
#[derive(Debug, Clone, Serialize)]
pub struct ObjectReport {
    pub id: u64,
    pub class: String,
    pub name: String,
    pub node_type: String,
    pub self_size: u64,
    pub retained_size: u64,
    pub retained_percent: f64,
    /// From a child of the root down to this object (empty if unreachable).
    pub path: Vec<PathStep>,
    /// True when the middle of a long path was left out.
    pub path_truncated: bool,
}

/// Kind of a leak suspect.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SuspectKind {
    /// One object retains a large share of the heap through many smaller objects.
    Object,
    /// The instances of one constructor retain a large share of the heap.
    Class,
}

/// A heuristic hint at what holds memory.
#[derive(Debug, Clone, Serialize)]
pub struct LeakSuspect {
    pub kind: SuspectKind,
    pub class: String,
    pub retained_size: u64,
    pub retained_percent: f64,
    pub count: u64,
    pub reason: String,
    /// For `object` suspects: the object.
    pub object: Option<ObjectReport>,
}

/// Time spent per stage, in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timings {
    pub read_ms: u64,
    pub dominators_ms: u64,
    pub summary_ms: u64,
    pub paths_ms: u64,
}

/// Result of analysing one snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct Analysis {
    pub snapshot: SnapshotInfo,
    /// Constructor summary, largest retained size first.
    pub classes: Vec<ClassSummary>,
    /// Largest objects by retained size.
    pub largest_objects: Vec<ObjectReport>,
    pub leak_suspects: Vec<LeakSuspect>,
    pub timings: Timings,
}

/// Per-class aggregate, indexed by a dense class slot.
pub struct ClassTable {
    /// Slot of each class key (`u32::MAX`: none; [`SPLIT`]: see `split_nodes`).
    slot_of_key: Vec<u32>,
    /// `(node, slot)` of each counted node whose class name is split by constructor location,
    /// by node.
    split_nodes: Vec<(u32, u32)>,
    pub keys: Vec<u32>,
    /// The constructor location all of a slot's objects share, if they share one (also for
    /// names that are not split: a diff lines up snapshots where only one of them splits).
    pub location: Vec<Option<Location>>,
    /// True for the slots of a name split by constructor location.
    pub split: Vec<bool>,
    pub count: Vec<u64>,
    pub shallow: Vec<u64>,
    pub retained: Vec<u64>,
    /// Largest retained size of a single instance.
    pub max_instance: Vec<u64>,
    pub node_type: Vec<u8>,
}

impl ClassTable {
    /// Slot of node `v`'s class, if `v` is counted (non-zero self size).
    #[inline]
    pub fn slot(&self, g: &HeapGraph, v: u32) -> Option<u32> {
        if g.self_size[v as usize] == 0 {
            return None;
        }
        match self.slot_of_key[g.class_key(v) as usize] {
            u32::MAX => None,
            SPLIT => self.split_nodes.binary_search_by_key(&v, |&(n, _)| n).ok().map(|i| self.split_nodes[i].1),
            s => Some(s),
        }
    }

    fn push_slot(&mut self, key: u32, node_type: u8, location: Option<Location>, split: bool) -> u32 {
        self.keys.push(key);
        self.count.push(0);
        self.shallow.push(0);
        self.retained.push(0);
        self.max_instance.push(0);
        self.node_type.push(node_type);
        self.location.push(location);
        self.split.push(split);
        self.keys.len() as u32 - 1
    }
}

/// `slot_of_key` marker: the key's nodes have slots of their own (`split_nodes`).
const SPLIT: u32 = u32::MAX - 1;

/// Finds where objects' constructors were defined, 1-based (as DevTools and the leak hunt show
/// it): object → its map (the internal edge named "map") → the map's prototype's `constructor`.
struct Locator<'a> {
    g: &'a HeapGraph,
    /// The string index of "map", if the snapshot has one.
    map_name: Option<u32>,
    /// Objects of one map share their constructor: looked up once per map; objects of one class
    /// mostly come in runs of one map, hence the last one first.
    last: Option<(u32, Option<Location>)>,
    by_map: OrdinalMap<Option<Location>>,
}

/// A map keyed by node ordinals or class keys.
type OrdinalMap<V> = HashMap<u32, V, BuildHasherDefault<OrdinalHasher>>;

/// A hasher for node ordinals (this runs once per object of the snapshot: SipHash's DoS
/// resistance buys nothing for ordinals of a file, and costs most of the lookup). Fibonacci
/// hashing spreads consecutive ordinals over the high bits the table's control bytes use.
#[derive(Default)]
struct OrdinalHasher(u64);

impl std::hash::Hasher for OrdinalHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = (self.0 ^ u64::from(n)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

impl<'a> Locator<'a> {
    fn new(g: &'a HeapGraph) -> Self {
        let map_name = (0..g.strings.len() as u32).find(|&i| g.strings.get(i) == "map");
        Locator { g, map_name, last: None, by_map: HashMap::default() }
    }

    /// Only objects have constructors (other kinds are grouped by type).
    fn applies(&self, v: u32) -> bool {
        self.map_name.is_some() && self.g.is_type(v, self.g.types.node_object)
    }

    fn of(&mut self, v: u32) -> Option<Location> {
        let g = self.g;
        let (map_name, internal) = (self.map_name?, g.types.edge_internal);
        let map = g
            .edges(v)
            .find(|&e| g.edge_name[e] == map_name && Some(g.edge_type(e)) == internal)
            .map(|e| g.edge_target(e))?;
        if let Some((m, loc)) = self.last {
            if m == map {
                return loc;
            }
        }
        let loc = *self.by_map.entry(map).or_insert_with(|| {
            g.constructor_location(v).map(|(script_id, line, column)| Location {
                script_id,
                line: line.saturating_add(1),
                column: column.saturating_add(1),
            })
        });
        self.last = Some((map, loc));
        loc
    }
}

/// The constructor locations seen among one slot's objects.
#[derive(Clone, Copy, Default)]
struct Places {
    first: Option<Location>,
    /// An object with a location other than `first`.
    another: bool,
    /// An object without a location.
    unlocated: bool,
}

impl Places {
    fn add(&mut self, loc: Option<Location>) {
        match (loc, self.first) {
            (None, _) => self.unlocated = true,
            (Some(l), None) => self.first = Some(l),
            (Some(l), Some(f)) => self.another |= l != f,
        }
    }
}

/// Counts and shallow sizes per class (DevTools `buildAggregates`), a name whose objects'
/// constructors were defined in more than one place split into one slot per location.
pub fn aggregate(g: &HeapGraph) -> ClassTable {
    let mut t = ClassTable {
        slot_of_key: vec![u32::MAX; g.class_key_count()],
        split_nodes: Vec::new(),
        keys: Vec::new(),
        location: Vec::new(),
        split: Vec::new(),
        count: Vec::new(),
        shallow: Vec::new(),
        retained: Vec::new(),
        max_instance: Vec::new(),
        node_type: Vec::new(),
    };
    let mut locator = Locator::new(g);
    let mut places: Vec<Places> = Vec::new();
    for v in 0..g.node_count() as u32 {
        let size = g.self_size(v);
        if size == 0 {
            continue;
        }
        let key = g.class_key(v);
        let Some(&slot) = t.slot_of_key.get(key as usize) else {
            continue;
        };
        let s = if slot == u32::MAX {
            let s = t.push_slot(key, g.node_type[v as usize], None, false);
            t.slot_of_key[key as usize] = s;
            places.push(Places::default());
            s
        } else {
            slot
        } as usize;
        t.count[s] += 1;
        t.shallow[s] += size;
        if locator.applies(v) {
            places[s].add(locator.of(v));
        }
    }
    let mut parents = Vec::new();
    for (s, p) in places.iter().enumerate() {
        if p.another {
            parents.push(s);
        } else if !p.unlocated {
            t.location[s] = p.first;
        }
    }
    if !parents.is_empty() {
        split_by_location(g, &mut t, &parents, &mut locator);
    }
    t
}

/// Moves the objects of each slot in `parents` to one slot per constructor location (the parent
/// keeps a count of zero and is never a node's slot again).
fn split_by_location(g: &HeapGraph, t: &mut ClassTable, parents: &[usize], locator: &mut Locator<'_>) {
    let mut children: OrdinalMap<Vec<(Option<Location>, u32)>> = HashMap::default();
    for &p in parents {
        t.slot_of_key[t.keys[p] as usize] = SPLIT;
        children.insert(t.keys[p], Vec::new());
        t.count[p] = 0;
        t.shallow[p] = 0;
    }
    for v in 0..g.node_count() as u32 {
        let size = g.self_size(v);
        if size == 0 || t.slot_of_key[g.class_key(v) as usize] != SPLIT {
            continue;
        }
        let key = g.class_key(v);
        let loc = if locator.applies(v) { locator.of(v) } else { None };
        let known = children.get(&key).and_then(|c| c.iter().find(|(l, _)| *l == loc).map(|&(_, s)| s));
        let s = match known {
            Some(s) => s,
            None => {
                let s = t.push_slot(key, g.node_type[v as usize], loc, true);
                children.entry(key).or_default().push((loc, s));
                s
            }
        };
        t.count[s as usize] += 1;
        t.shallow[s as usize] += size;
        // In node order: sorted for the binary search in `slot`.
        t.split_nodes.push((v, s));
    }
}

/// Retained size per class: objects not dominated by an object of the same class
/// (DevTools `calculateClassesRetainedSize`), by an iterative walk of the dominator tree.
pub fn class_retained(g: &HeapGraph, d: &Dominators, dn: &DominatedNodes, t: &mut ClassTable) {
    let mut seen = vec![false; t.keys.len()];
    let mut list: Vec<u32> = vec![ROOT];
    let mut sizes: Vec<usize> = Vec::new();
    let mut marked: Vec<u32> = Vec::new();
    while let Some(v) = list.pop() {
        let children = dn.children(v);
        if let Some(slot) = t.slot(g, v) {
            let m = &mut t.max_instance[slot as usize];
            *m = (*m).max(d.retained[v as usize]);
            if !seen[slot as usize] {
                t.retained[slot as usize] += d.retained[v as usize];
                if !children.is_empty() {
                    seen[slot as usize] = true;
                    sizes.push(list.len());
                    marked.push(slot);
                }
            }
        }
        list.extend_from_slice(children);
        while sizes.last() == Some(&list.len()) {
            sizes.pop();
            if let Some(slot) = marked.pop() {
                seen[slot as usize] = false;
            }
        }
    }
}

/// Breadth-first walk from the root over retaining-looking edges (not weak; shortcuts only from
/// the root), as DevTools walks them: `reach(from, edge, to)` for each node the first time it is
/// reached, in breadth-first order.
pub fn walk_retaining_bfs(g: &HeapGraph, mut reach: impl FnMut(u32, usize, u32)) {
    let n = g.node_count();
    let mut queue: Vec<u32> = Vec::with_capacity(n.min(1 << 20));
    let mut head = 0usize;
    let mut reached = vec![false; n];
    reached[ROOT as usize] = true;
    queue.push(ROOT);
    let (weak, shortcut) = (g.types.edge_weak, g.types.edge_shortcut);
    while head < queue.len() {
        let v = queue[head];
        head += 1;
        for e in g.edges(v) {
            let t = Some(g.edge_type(e));
            if t == weak || (t == shortcut && v != ROOT) {
                continue;
            }
            let w = g.edge_target(e);
            if !reached[w as usize] {
                reached[w as usize] = true;
                reach(v, e, w);
                queue.push(w);
            }
        }
    }
}

/// Breadth-first parents: `parent_edge[v]` is the edge through which `v` was first reached
/// ([`walk_retaining_bfs`]), `u32::MAX` if never.
pub fn bfs_parents(g: &HeapGraph) -> Vec<u32> {
    let mut parent_edge = vec![u32::MAX; g.node_count()];
    walk_retaining_bfs(g, |_, e, w| parent_edge[w as usize] = e as u32);
    parent_edge
}

/// Source node of edge `e` (binary search over the edge ranges).
fn edge_source(g: &HeapGraph, e: u32) -> u32 {
    // first_edge is non-decreasing; the source is the last node whose first edge is <= e
    // and whose range is non-empty.
    let idx = g.first_edge.partition_point(|&f| f <= e);
    idx.saturating_sub(1) as u32
}

/// Everything needed to report on objects of one analysed snapshot.
pub struct Reporter<'a> {
    pub g: &'a HeapGraph,
    pub d: &'a Dominators,
    pub parent_edge: Option<Vec<u32>>,
    pub max_path: usize,
}

impl Reporter<'_> {
    fn percent(&self, size: u64) -> f64 {
        let total = self.d.retained[ROOT as usize].max(1) as f64;
        (size as f64 * 10000.0 / total).round() / 100.0
    }

    /// Full report of node `v`.
    pub fn object(&self, v: u32) -> ObjectReport {
        let g = self.g;
        let (path, path_truncated) = self.path(v);
        ObjectReport {
            id: u64::from(g.node_id[v as usize]),
            class: g.class_name(g.class_key(v)),
            name: g.display_name(v),
            node_type: g.type_name(v).to_string(),
            self_size: g.self_size(v),
            retained_size: self.d.retained[v as usize],
            retained_percent: self.percent(self.d.retained[v as usize]),
            path,
            path_truncated,
        }
    }

    /// Shortest retainer path of `v` from the root (the root itself left out).
    fn path(&self, v: u32) -> (Vec<PathStep>, bool) {
        let Some(parent_edge) = &self.parent_edge else {
            return (Vec::new(), false);
        };
        let g = self.g;
        let mut edges = Vec::new();
        let mut cur = v;
        while cur != ROOT {
            let e = parent_edge[cur as usize];
            if e == u32::MAX || edges.len() > g.node_count() {
                return (Vec::new(), false);
            }
            edges.push(e);
            cur = edge_source(g, e);
        }
        edges.reverse();
        let truncated = edges.len() > self.max_path;
        if truncated {
            let keep_tail = self.max_path.saturating_sub(8);
            let tail = edges.split_off(edges.len() - keep_tail);
            edges.truncate(8);
            edges.extend(tail);
        }
        let steps = edges
            .into_iter()
            .map(|e| {
                let to = g.edge_target(e as usize);
                PathStep {
                    edge: g.edge_label(e as usize),
                    edge_type: g.edge_type_name(e as usize).to_string(),
                    id: u64::from(g.node_id[to as usize]),
                    class: g.class_name(g.class_key(to)),
                    name: g.display_name(to),
                    node_type: g.type_name(to).to_string(),
                }
            })
            .collect();
        (steps, truncated)
    }
}

/// Top `k` nodes by `score` among those accepted by `keep`, largest first.
pub fn top_k(n: usize, k: usize, keep: impl Fn(u32) -> bool, score: impl Fn(u32) -> u64) -> Vec<u32> {
    if k == 0 {
        return Vec::new();
    }
    let mut heap: BinaryHeap<Reverse<(u64, Reverse<u32>)>> = BinaryHeap::with_capacity(k + 1);
    for v in 0..n as u32 {
        if !keep(v) {
            continue;
        }
        let s = score(v);
        if heap.len() < k {
            heap.push(Reverse((s, Reverse(v))));
        } else if let Some(Reverse((min, _))) = heap.peek() {
            if s > *min {
                heap.pop();
                heap.push(Reverse((s, Reverse(v))));
            }
        }
    }
    let mut out: Vec<(u64, u32)> = heap.into_iter().map(|Reverse((s, Reverse(v)))| (s, v)).collect();
    out.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    out.into_iter().map(|(_, v)| v).collect()
}

/// True for nodes worth listing as objects (not the synthetic root / GC root groups).
pub fn is_reportable(g: &HeapGraph, v: u32) -> bool {
    v != ROOT && Some(g.node_type[v as usize]) != g.types.node_synthetic
}

/// Fewest instances for a class to be reported as a suspect.
const MIN_CLASS_SUSPECT_COUNT: u64 = 100;

/// The constructor summary rows, largest retained first.
pub fn class_rows(g: &HeapGraph, t: &ClassTable, total: u64, max: usize) -> Vec<ClassSummary> {
    let mut order = class_order(t);
    if max > 0 {
        order.truncate(max);
    }
    order.into_iter().map(|s| class_row(g, t, s, total)).collect()
}

/// Class slots, largest retained first.
pub fn class_order(t: &ClassTable) -> Vec<usize> {
    // A slot split by constructor location has no objects of its own.
    let mut order: Vec<usize> = (0..t.keys.len()).filter(|&s| t.count[s] > 0).collect();
    order.sort_by(|&a, &b| {
        t.retained[b].cmp(&t.retained[a]).then(t.shallow[b].cmp(&t.shallow[a])).then(t.location[a].cmp(&t.location[b]))
    });
    order
}

/// The summary row of class slot `s`; its location only for a name split by location.
pub fn class_row(g: &HeapGraph, t: &ClassTable, s: usize, total: u64) -> ClassSummary {
    ClassSummary {
        name: g.class_name(t.keys[s]),
        location: if t.split[s] { t.location[s] } else { None },
        node_type: g.types.node_types.get(t.node_type[s] as usize).cloned().unwrap_or_default(),
        count: t.count[s],
        shallow_size: t.shallow[s],
        retained_size: t.retained[s],
        retained_percent: percent(t.retained[s], total),
    }
}

/// `part` as a percentage of `total`, two decimals.
pub fn percent(part: u64, total: u64) -> f64 {
    (part as f64 * 10000.0 / total.max(1) as f64).round() / 100.0
}

/// Leak suspects: accumulation points (objects over the threshold none of whose dominated
/// children is) and classes with an outsize retained share spread over many instances (a class
/// whose share comes from one container instance is that container's story, not the class's).
pub fn suspects(r: &Reporter<'_>, dn: &DominatedNodes, t: &ClassTable, opts: &AnalyzeOptions) -> Vec<LeakSuspect> {
    let g = r.g;
    let total = r.d.retained[ROOT as usize];
    let obj_min = (total as f64 * opts.suspect_object_percent / 100.0).ceil() as u64;
    let mut out = Vec::new();
    let points = top_k(
        g.node_count(),
        opts.max_suspects,
        |v| {
            // Children of the root (the global object, GC root groups) hold everything by design.
            is_reportable(g, v)
                && r.d.idom[v as usize] != ROOT
                && r.d.retained[v as usize] >= obj_min.max(1)
                && dn.children(v).iter().all(|&c| r.d.retained[c as usize] < obj_min)
        },
        |v| r.d.retained[v as usize],
    );
    for v in points {
        let obj = r.object(v);
        let children = dn.children(v).len();
        out.push(LeakSuspect {
            kind: SuspectKind::Object,
            class: obj.class.clone(),
            retained_size: obj.retained_size,
            retained_percent: obj.retained_percent,
            count: 1,
            reason: format!(
                "{} @{} retains {:.1}% of the heap through {} directly dominated objects, none of which holds {}% on its own",
                obj.class, obj.id, obj.retained_percent, children, opts.suspect_object_percent
            ),
            object: Some(obj),
        });
    }
    let class_min = (total as f64 * opts.suspect_class_percent / 100.0).ceil() as u64;
    let strings = g.strings.len() as u32;
    let mut classes: Vec<usize> = (0..t.keys.len())
        .filter(|&s| t.keys[s] < strings && t.retained[s] >= class_min.max(1))
        .filter(|&s| {
            let name = g.class_name(t.keys[s]);
            !name.starts_with("system /") && name != "global" && name != "Window"
        })
        .filter(|&s| t.count[s] >= MIN_CLASS_SUSPECT_COUNT && t.max_instance[s] * 2 < t.retained[s])
        .collect();
    classes.sort_by(|&a, &b| t.retained[b].cmp(&t.retained[a]));
    for s in classes.into_iter().take(opts.max_suspects) {
        let name = g.class_name(t.keys[s]);
        let p = percent(t.retained[s], total);
        out.push(LeakSuspect {
            kind: SuspectKind::Class,
            class: name.clone(),
            retained_size: t.retained[s],
            retained_percent: p,
            count: t.count[s],
            reason: format!("{} instances of {name} retain {p:.1}% of the heap", t.count[s]),
            object: None,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::tests::{parse_str, snapshot_json};

    #[test]
    fn nested_instances_are_not_counted_twice() {
        // root -> L1 (List) -> L2 (List) -> X (Item) ; root -> Y (Item)
        // strings: 0 "", 1 "List", 2 "Item", 3 "next"
        let nodes = [(9, 0, 1, 0, 2), (3, 1, 3, 10, 1), (3, 1, 5, 10, 1), (3, 2, 7, 5, 0), (3, 2, 9, 7, 0)];
        let edges = [(1, 0, 1), (1, 1, 4), (2, 3, 2), (2, 3, 3)];
        let g = parse_str(&snapshot_json(&nodes, &edges, &["", "List", "Item", "next"])).unwrap();
        let d = crate::dominators::compute(&g, crate::Model::DevTools);
        let dn = DominatedNodes::build(&d.idom);
        let mut t = aggregate(&g);
        class_retained(&g, &d, &dn, &mut t);
        let rows = class_rows(&g, &t, d.retained[0], 0);
        let list = rows.iter().find(|r| r.name == "List").unwrap();
        assert_eq!((list.count, list.shallow_size, list.retained_size), (2, 20, 25));
        let item = rows.iter().find(|r| r.name == "Item").unwrap();
        assert_eq!((item.count, item.shallow_size, item.retained_size), (2, 12, 12));
        // The synthetic root has size 0 and is not counted.
        assert!(rows.iter().all(|r| r.name != "(synthetic)"));
        let parents = bfs_parents(&g);
        let rep = Reporter { g: &g, d: &d, parent_edge: Some(parents), max_path: 32 };
        let o = rep.object(3);
        let path: Vec<_> = o.path.iter().map(|s| s.edge.as_str()).collect();
        assert_eq!(path, ["[0]", "next", "next"]);
        assert_eq!(o.path.last().map(|s| s.id), Some(7));
        let top = top_k(g.node_count(), 2, |v| is_reportable(&g, v), |v| d.retained[v as usize]);
        assert_eq!(top, vec![1, 2]);
    }
}
