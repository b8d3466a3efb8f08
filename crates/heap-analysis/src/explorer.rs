//! The heap explorer's index: what the hub keeps of one snapshot so a browser can walk it in
//! small steps, the way DevTools' Summary and Retainers views do — never the whole graph at once.
//!
//! From the constructor summary to one class's instances (largest retained first, paged), to one
//! object's retainers (nearest to a GC root first), and from there step by step up to a root; also
//! an object's own references and its children in the dominator tree (drillable from the root).
//! Objects are named as DevTools names them: `PerfAgentTestLeak @123`, `system / Context @9`,
//! `"text" @5` for strings, edges by property, variable or `[index]`.
//!
//! Two indexes compare like DevTools' Comparison view ([`Explorer::compare`]): per constructor the
//! objects new in one snapshot (their V8 id not in the other), deleted, and the deltas — then the
//! new instances themselves, each an object of the newer index to walk as above.
//!
//! String contents can hold secrets: every view takes `strings: bool`, and without it a string is
//! shown as `(string) @5` with its sizes only.
//!
//! Cost: the parsed graph and dominator tree of the analysis plus, per node, its class order,
//! distance and retainer offset (12 bytes) and, per edge, its retainer entry (4 bytes);
//! [`Explorer::heap_bytes`] says how much, for the hub's cache budget.

use std::path::Path;

use serde::Serialize;

use crate::dominators::{DominatedNodes, Dominators};
use crate::graph::{HeapGraph, ROOT};
use crate::summary::{self, percent, ClassSummary, Location};
use crate::{HeapError, Model, Progress};

/// One constructor row (the summary's, with its `location` where a name is split); `index` names
/// it in [`Explorer::instances`].
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClassRow {
    pub index: u32,
    #[serde(flatten)]
    pub summary: ClassSummary,
}

/// One object as DevTools shows it in a list.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NodeView {
    /// Ordinal in this snapshot (what the explorer's routes take).
    pub node: u32,
    /// V8's object id (`@id`).
    pub id: u64,
    /// `Name @id` as DevTools shows it.
    pub label: String,
    pub class: String,
    pub node_type: String,
    /// Steps from the root over retaining edges; `None` if unreachable.
    pub distance: Option<u32>,
    pub shallow_size: u64,
    pub retained_size: u64,
    pub retained_percent: f64,
    /// True when a string's contents were left out.
    pub redacted: bool,
    /// Objects retaining it (the number of edges pointing at it).
    pub retainer_count: u32,
}

/// An edge and the object at its other end (the retainer, or the referenced object).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EdgeView {
    pub edge_type: String,
    /// Property or variable name, or `[index]`.
    pub name: String,
    pub node: NodeView,
}

/// A slice of a longer list.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Page<T> {
    pub total: u64,
    pub offset: u64,
    pub items: Vec<T>,
}

/// The explorer's index of one snapshot.
pub struct Explorer {
    g: HeapGraph,
    dom: Dominators,
    /// Dominator-tree children, each list sorted largest retained first.
    dominated: DominatedNodes,
    classes: Vec<ClassRow>,
    /// Per class row: the constructor location its objects share, if one (lines comparisons up).
    sole_location: Vec<Option<Location>>,
    /// Instances of `classes[i]`: `class_nodes[class_first[i]..class_first[i + 1]]`, largest first.
    class_first: Vec<u32>,
    class_nodes: Vec<u32>,
    distance: Vec<u32>,
    /// Edges pointing at node `v`: `ret_edges[ret_first[v]..ret_first[v + 1]]`.
    ret_first: Vec<u32>,
    ret_edges: Vec<u32>,
    total_size: u64,
    string_bytes: u64,
}

const UNREACHED: u32 = u32::MAX;

impl Explorer {
    /// Reads and indexes the snapshot at `path` (DevTools' retention rules).
    pub fn open(path: impl AsRef<Path>, progress: &mut dyn FnMut(Progress)) -> Result<Explorer, HeapError> {
        let path = path.as_ref();
        let io = |source| HeapError::Io { path: path.to_path_buf(), source };
        let file = std::fs::File::open(path).map_err(io)?;
        let size = file.metadata().map_err(io)?.len();
        Self::from_reader(file, size, progress)
    }

    /// Reads and indexes a snapshot streamed from `reader` (`size`: its length if known, else 0),
    /// e.g. an object-store download: the file never needs to be on local disk.
    pub fn from_reader<R: std::io::Read>(
        reader: R,
        size: u64,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Explorer, HeapError> {
        let loaded = crate::load(reader, size, 0, Model::DevTools, None, progress)?;
        Ok(Self::index(loaded.graph, loaded.dom, loaded.dominated, &loaded.table))
    }

    fn index(g: HeapGraph, dom: Dominators, mut dominated: DominatedNodes, table: &summary::ClassTable) -> Explorer {
        let total_size = dom.retained[ROOT as usize];
        let order = summary::class_order(table);
        let mut rank_of_slot = vec![0u32; table.keys.len()];
        let classes: Vec<ClassRow> = order
            .iter()
            .enumerate()
            .map(|(rank, &s)| {
                rank_of_slot[s] = rank as u32;
                ClassRow { index: rank as u32, summary: summary::class_row(&g, table, s, total_size) }
            })
            .collect();
        let sole_location = order.iter().map(|&s| table.location[s]).collect();
        let class_of = |v: u32| table.slot(&g, v).map(|s| rank_of_slot[s as usize]);
        let (class_first, mut class_nodes) = csr(classes.len(), g.node_count() as u32, class_of);
        for c in 0..classes.len() {
            let range = class_first[c] as usize..class_first[c + 1] as usize;
            class_nodes[range]
                .sort_by(|&a, &b| dom.retained[b as usize].cmp(&dom.retained[a as usize]).then(a.cmp(&b)));
        }
        for v in 0..g.node_count() {
            let range = dominated.first[v] as usize..dominated.first[v + 1] as usize;
            dominated.nodes[range].sort_by(|&a, &b| dom.retained[b as usize].cmp(&dom.retained[a as usize]));
        }
        let (ret_first, ret_edges) = retainers(&g);
        let distance = distances(&g);
        let string_bytes = (0..g.strings.len() as u32).map(|i| g.strings.get(i).len() as u64 + 8).sum();
        Explorer {
            g,
            dom,
            dominated,
            classes,
            sole_location,
            class_first,
            class_nodes,
            distance,
            ret_first,
            ret_edges,
            total_size,
            string_bytes,
        }
    }

    /// Bytes this index holds (for a cache budget).
    pub fn heap_bytes(&self) -> u64 {
        let (n, e) = (self.g.node_count() as u64, self.g.edge_count() as u64);
        // graph: type 1 + name 4 + id 4 + size 4 + first edge 4 + detachedness 1; edges 8;
        // dominators: idom 4 + retained 8 + preorder 4 + tree 8; index: 16 per node, 4 per edge.
        n * (18 + 24 + 16) + e * (8 + 4) + self.string_bytes + self.classes.len() as u64 * 96
    }

    pub fn node_count(&self) -> u32 {
        self.g.node_count() as u32
    }

    /// The snapshot's total retained size (the root's).
    pub fn total_size(&self) -> u64 {
        self.total_size
    }

    /// Constructor rows, largest retained first.
    pub fn classes(&self, offset: u64, limit: usize) -> Page<ClassRow> {
        page(self.classes.len() as u64, offset, limit, |i| self.classes[i].clone())
    }

    /// Instances of class `index`, largest retained first.
    pub fn instances(&self, index: u32, offset: u64, limit: usize, strings: bool) -> Option<Page<NodeView>> {
        let i = index as usize;
        let range = *self.class_first.get(i)? as usize..*self.class_first.get(i + 1)? as usize;
        let nodes = &self.class_nodes[range];
        Some(page(nodes.len() as u64, offset, limit, |k| self.view(nodes[k], strings)))
    }

    /// One object, `None` if `node` is not an ordinal of this snapshot.
    pub fn node(&self, node: u32, strings: bool) -> Option<NodeView> {
        (node < self.node_count()).then(|| self.view(node, strings))
    }

    /// Who holds `node`: every edge pointing at it, the retainer nearest to a GC root first.
    pub fn retainers(&self, node: u32, offset: u64, limit: usize, strings: bool) -> Option<Page<EdgeView>> {
        if node >= self.node_count() {
            return None;
        }
        let v = node as usize;
        let mut edges: Vec<(u32, u32)> = self.ret_edges[self.ret_first[v] as usize..self.ret_first[v + 1] as usize]
            .iter()
            .map(|&e| (e, self.edge_source(e)))
            .collect();
        edges.sort_by_key(|&(e, from)| (self.distance[from as usize], self.is_weak(e as usize), from));
        Some(page(edges.len() as u64, offset, limit, |k| {
            let (e, from) = edges[k];
            self.edge_view(e as usize, from, strings)
        }))
    }

    /// What `node` references (its own edges, in snapshot order).
    pub fn references(&self, node: u32, offset: u64, limit: usize, strings: bool) -> Option<Page<EdgeView>> {
        if node >= self.node_count() {
            return None;
        }
        let range = self.g.edges(node);
        let start = range.start;
        Some(page(range.len() as u64, offset, limit, |k| {
            let e = start + k;
            self.edge_view(e, self.g.edge_target(e), strings)
        }))
    }

    /// Children of `node` in the dominator tree (what it alone keeps alive), largest first.
    pub fn dominated(&self, node: u32, offset: u64, limit: usize, strings: bool) -> Option<Page<NodeView>> {
        if node >= self.node_count() {
            return None;
        }
        let children = self.dominated.children(node);
        Some(page(children.len() as u64, offset, limit, |k| self.view(children[k], strings)))
    }

    fn edge_view(&self, e: usize, other: u32, strings: bool) -> EdgeView {
        EdgeView {
            edge_type: self.g.edge_type_name(e).to_string(),
            name: self.g.edge_label(e),
            node: self.view(other, strings),
        }
    }

    fn is_weak(&self, e: usize) -> bool {
        Some(self.g.edge_type(e)) == self.g.types.edge_weak
    }

    fn edge_source(&self, e: u32) -> u32 {
        (self.g.first_edge.partition_point(|&f| f <= e) as u32).saturating_sub(1)
    }

    fn is_string(&self, v: u32) -> bool {
        matches!(self.g.type_name(v), "string" | "concatenated string" | "sliced string")
    }

    fn view(&self, v: u32, strings: bool) -> NodeView {
        let g = &self.g;
        let id = u64::from(g.node_id[v as usize]);
        let redacted = self.is_string(v) && !strings;
        let name = if redacted {
            "(string)".to_string()
        } else if self.is_string(v) {
            format!("\"{}\"", g.display_name(v))
        } else if g.type_name(v) == "closure" {
            format!("{}()", g.display_name(v))
        } else if g.name(v).is_empty() {
            // The synthetic root has no name; DevTools shows its type.
            format!("({})", g.type_name(v))
        } else {
            g.display_name(v)
        };
        let d = self.distance[v as usize];
        let retained = self.dom.retained[v as usize];
        NodeView {
            node: v,
            id,
            label: format!("{name} @{id}"),
            class: g.class_name(g.class_key(v)),
            node_type: g.type_name(v).to_string(),
            distance: (d != UNREACHED).then_some(d),
            shallow_size: g.self_size(v),
            retained_size: retained,
            retained_percent: percent(retained, self.total_size),
            redacted,
            retainer_count: self.ret_first[v as usize + 1] - self.ret_first[v as usize],
        }
    }
}

/// One constructor in the comparison of two snapshots (sizes are shallow, as in DevTools).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CompareRow {
    /// Names the row in [`Comparison::new_instances`].
    pub index: u32,
    /// The bare constructor name.
    pub name: String,
    /// Set when constructors of this name were defined in more than one place: which one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    pub node_type: String,
    /// Objects in the newer snapshot whose id is not in the base.
    pub new_count: u64,
    pub new_size: u64,
    /// Objects in the base whose id is not in the newer snapshot.
    pub deleted_count: u64,
    pub deleted_size: u64,
    pub count_before: u64,
    pub count_after: u64,
    pub count_delta: i64,
    pub size_before: u64,
    pub size_after: u64,
    pub size_delta: i64,
}

/// The comparison of a snapshot with a base: rows and, per row, its new instances.
pub struct Comparison {
    rows: Vec<CompareRow>,
    /// New instances of `rows[i]` (ordinals of the newer snapshot), largest retained first:
    /// `new_nodes[new_first[i]..new_first[i + 1]]`.
    new_first: Vec<u32>,
    new_nodes: Vec<u32>,
    pub new_count: u64,
    pub new_size: u64,
    pub deleted_count: u64,
    pub deleted_size: u64,
    /// Total (retained by the root) size of the newer snapshot minus the base's.
    pub total_size_delta: i64,
}

fn signed_delta(after: u64, before: u64) -> i64 {
    (i128::from(after) - i128::from(before)).clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// Comparison order: the largest size growth first (what a developer looks at first), V8's
/// internal kinds (`(string)`, `system / Context`…) after the named classes they belong to.
fn compare_order(r: &CompareRow) -> (bool, std::cmp::Reverse<(i64, i64, u64)>) {
    (crate::leak::is_internal(&r.name), std::cmp::Reverse((r.size_delta, r.count_delta, r.new_count)))
}

impl Explorer {
    /// Counted objects' V8 ids, sorted.
    fn sorted_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.class_nodes.iter().map(|&v| self.g.node_id[v as usize]).collect();
        ids.sort_unstable();
        ids
    }

    fn class_range(&self, c: usize) -> &[u32] {
        &self.class_nodes[self.class_first[c] as usize..self.class_first[c + 1] as usize]
    }

    /// Compares this snapshot with `base` (an earlier one of the same process: V8 keeps an
    /// object's id for its lifetime), per constructor. Rows are matched by name, and by
    /// constructor location for a name defined in more than one place in either snapshot.
    pub fn compare(&self, base: &Explorer) -> Comparison {
        let mut places: std::collections::HashMap<&str, std::collections::BTreeSet<Location>> = Default::default();
        for x in [self, base] {
            for (c, loc) in x.classes.iter().zip(&x.sole_location) {
                if let Some(loc) = loc {
                    places.entry(c.summary.name.as_str()).or_default().insert(*loc);
                }
            }
        }
        let key = |x: &Explorer, c: usize| {
            let name = x.classes[c].summary.name.as_str();
            let split = places.get(name).is_some_and(|p| p.len() > 1);
            (name.to_string(), if split { x.sole_location[c] } else { None })
        };
        let mut rows: Vec<CompareRow> = Vec::new();
        let mut row_of: std::collections::HashMap<(String, Option<Location>), usize> = Default::default();
        let mut row_for = |x: &Explorer, c: usize, rows: &mut Vec<CompareRow>| -> usize {
            let k = key(x, c);
            *row_of.entry(k.clone()).or_insert_with(|| {
                rows.push(CompareRow {
                    index: 0,
                    name: k.0,
                    location: k.1,
                    node_type: x.classes[c].summary.node_type.clone(),
                    new_count: 0,
                    new_size: 0,
                    deleted_count: 0,
                    deleted_size: 0,
                    count_before: 0,
                    count_after: 0,
                    count_delta: 0,
                    size_before: 0,
                    size_after: 0,
                    size_delta: 0,
                });
                rows.len() - 1
            })
        };
        let base_rows: Vec<usize> = (0..base.classes.len()).map(|c| row_for(base, c, &mut rows)).collect();
        let my_rows: Vec<usize> = (0..self.classes.len()).map(|c| row_for(self, c, &mut rows)).collect();
        let (base_ids, my_ids) = (base.sorted_ids(), self.sorted_ids());
        let mut new_of_row: Vec<Vec<u32>> = vec![Vec::new(); rows.len()];
        for (c, &ri) in my_rows.iter().enumerate() {
            let r = &mut rows[ri];
            r.count_after += self.classes[c].summary.count;
            r.size_after += self.classes[c].summary.shallow_size;
            for &v in self.class_range(c) {
                if base_ids.binary_search(&self.g.node_id[v as usize]).is_err() {
                    r.new_count += 1;
                    r.new_size += self.g.self_size(v);
                    new_of_row[ri].push(v);
                }
            }
        }
        for (c, &ri) in base_rows.iter().enumerate() {
            let r = &mut rows[ri];
            r.count_before += base.classes[c].summary.count;
            r.size_before += base.classes[c].summary.shallow_size;
            for &v in base.class_range(c) {
                if my_ids.binary_search(&base.g.node_id[v as usize]).is_err() {
                    r.deleted_count += 1;
                    r.deleted_size += base.g.self_size(v);
                }
            }
        }
        for r in rows.iter_mut() {
            r.count_delta = signed_delta(r.count_after, r.count_before);
            r.size_delta = signed_delta(r.size_after, r.size_before);
        }
        let mut order: Vec<usize> = (0..rows.len())
            .filter(|&i| {
                rows[i].count_delta != 0
                    || rows[i].size_delta != 0
                    || rows[i].new_count != 0
                    || rows[i].deleted_count != 0
            })
            .collect();
        order.sort_by(|&a, &b| {
            compare_order(&rows[a])
                .cmp(&compare_order(&rows[b]))
                .then(rows[a].name.cmp(&rows[b].name))
                .then(rows[a].location.cmp(&rows[b].location))
        });
        let mut out = Comparison {
            rows: Vec::with_capacity(order.len()),
            new_first: vec![0],
            new_nodes: Vec::new(),
            new_count: 0,
            new_size: 0,
            deleted_count: 0,
            deleted_size: 0,
            total_size_delta: signed_delta(self.total_size, base.total_size),
        };
        for (rank, &i) in order.iter().enumerate() {
            let mut row = rows[i].clone();
            row.index = rank as u32;
            out.new_count += row.new_count;
            out.new_size += row.new_size;
            out.deleted_count += row.deleted_count;
            out.deleted_size += row.deleted_size;
            let mut nodes = std::mem::take(&mut new_of_row[i]);
            nodes.sort_by(|&a, &b| self.dom.retained[b as usize].cmp(&self.dom.retained[a as usize]).then(a.cmp(&b)));
            out.new_nodes.extend(nodes);
            out.new_first.push(out.new_nodes.len() as u32);
            out.rows.push(row);
        }
        out
    }
}

impl Comparison {
    /// Rows, largest size growth first.
    pub fn rows(&self, offset: u64, limit: usize) -> Page<CompareRow> {
        page(self.rows.len() as u64, offset, limit, |i| self.rows[i].clone())
    }

    /// The new instances of row `index`, largest retained first, as objects of `newer` (the
    /// index this comparison was made from).
    pub fn new_instances(
        &self,
        newer: &Explorer,
        index: u32,
        offset: u64,
        limit: usize,
        strings: bool,
    ) -> Option<Page<NodeView>> {
        let i = index as usize;
        let range = *self.new_first.get(i)? as usize..*self.new_first.get(i + 1)? as usize;
        let nodes = self.new_nodes.get(range)?;
        Some(page(nodes.len() as u64, offset, limit, |k| newer.view(nodes[k], strings)))
    }

    /// Bytes this comparison holds (for a cache budget).
    pub fn heap_bytes(&self) -> u64 {
        (self.new_nodes.len() as u64 + self.new_first.len() as u64) * 4 + self.rows.len() as u64 * 160
    }
}

fn page<T>(total: u64, offset: u64, limit: usize, item: impl Fn(usize) -> T) -> Page<T> {
    let start = offset.min(total) as usize;
    let end = (start + limit).min(total as usize);
    Page { total, offset: start as u64, items: (start..end).map(item).collect() }
}

/// Groups `0..n` by `group_of` into CSR form (`first` has `groups + 1` entries).
fn csr(groups: usize, n: u32, group_of: impl Fn(u32) -> Option<u32>) -> (Vec<u32>, Vec<u32>) {
    let mut first = vec![0u32; groups + 1];
    for v in 0..n {
        if let Some(c) = group_of(v) {
            first[c as usize + 1] += 1;
        }
    }
    for i in 0..groups {
        first[i + 1] += first[i];
    }
    let mut fill = first.clone();
    let mut nodes = vec![0u32; first[groups] as usize];
    for v in 0..n {
        if let Some(c) = group_of(v) {
            nodes[fill[c as usize] as usize] = v;
            fill[c as usize] += 1;
        }
    }
    (first, nodes)
}

/// Reverse edges: for each node, the edges (ordinals) that point at it.
fn retainers(g: &HeapGraph) -> (Vec<u32>, Vec<u32>) {
    let n = g.node_count();
    let mut first = vec![0u32; n + 1];
    for e in 0..g.edge_count() {
        first[g.edge_target(e) as usize + 1] += 1;
    }
    for i in 0..n {
        first[i + 1] += first[i];
    }
    let mut fill = first.clone();
    let mut edges = vec![0u32; g.edge_count()];
    for e in 0..g.edge_count() {
        let t = g.edge_target(e) as usize;
        edges[fill[t] as usize] = e as u32;
        fill[t] += 1;
    }
    (first, edges)
}

/// Breadth-first distance from the root over retaining edges (not weak; shortcuts only from the
/// root), as DevTools counts it.
fn distances(g: &HeapGraph) -> Vec<u32> {
    let mut distance = vec![UNREACHED; g.node_count()];
    distance[ROOT as usize] = 0;
    crate::summary::walk_retaining_bfs(g, |v, _, w| distance[w as usize] = distance[v as usize] + 1);
    distance
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::tests::snapshot_json;

    /// root -(GC roots)-> global -"holder" (property)-> Foo @5 -"secret"-> "hunter2" @7;
    /// global -context-> system / Context @9 -"cache" (context variable)-> Foo @11.
    /// Each test reads its own file (tests run in parallel).
    fn explorer(test: &str) -> Explorer {
        // node fields: type, name, id, self_size, edge_count. Types: 0 hidden, 1 array, 2 string,
        // 3 object, 5 closure, 9 synthetic (the test helper's meta).
        let nodes = vec![
            (9, 0, 1, 0, 1),   // 0 root
            (3, 1, 3, 10, 2),  // 1 global
            (3, 2, 5, 20, 1),  // 2 Foo @5
            (2, 3, 7, 30, 0),  // 3 "hunter2"
            (0, 4, 9, 40, 1),  // 4 system / Context
            (3, 2, 11, 50, 0), // 5 Foo @11
        ];
        // edge fields: type, name (string index or element index), to (node ordinal).
        // Edge types of the helper: 0 context, 1 element, 2 property, 3 internal, 4 hidden,
        // 5 shortcut, 6 weak.
        let edges = vec![(5, 0, 1), (2, 5, 2), (3, 6, 4), (2, 7, 3), (0, 8, 5)];
        let strings = ["", "global", "Foo", "hunter2", "system / Context", "holder", "context", "secret", "cache"];
        index(test, &snapshot_json(&nodes, &edges, &strings))
    }

    /// The explorer of a snapshot written to its own temporary file (tests run in parallel).
    pub(super) fn index(test: &str, json: &str) -> Explorer {
        let p = std::env::temp_dir().join(format!("perf-explorer-{}-{test}.heapsnapshot", std::process::id()));
        std::fs::write(&p, json).expect("write");
        let x = Explorer::open(&p, &mut |_| {}).expect("index");
        let _ = std::fs::remove_file(p);
        x
    }

    #[test]
    fn summary_instances_and_the_path_to_a_root() {
        let x = explorer("path");
        let classes = x.classes(0, 100);
        let foo = classes.items.iter().find(|c| c.summary.name == "Foo").expect("Foo row");
        assert_eq!((foo.summary.count, foo.summary.shallow_size), (2, 70));
        let inst = x.instances(foo.index, 0, 10, false).expect("instances");
        assert_eq!(inst.total, 2);
        assert_eq!(inst.items[0].label, "Foo @5", "largest retained first (20 + its string 30)");
        assert_eq!(inst.items[0].retained_size, 50);
        assert_eq!(inst.items[1].label, "Foo @11");
        let one = x.instances(foo.index, 1, 1, false).expect("page");
        assert_eq!((one.total, one.offset, one.items.len()), (2, 1, 1));
        // Foo @11 is held by the variable `cache` of a context, held by the global object.
        let r = x.retainers(inst.items[1].node, 0, 10, false).expect("retainers");
        assert_eq!((r.items[0].name.as_str(), r.items[0].edge_type.as_str()), ("cache", "context"));
        assert_eq!(r.items[0].node.label, "system / Context @9");
        let up = x.retainers(r.items[0].node.node, 0, 10, false).expect("up");
        assert_eq!(up.items[0].node.label, "global @3");
        let top = x.retainers(up.items[0].node.node, 0, 10, false).expect("top");
        assert_eq!(top.items[0].node.node, ROOT);
        assert_eq!(top.items[0].node.distance, Some(0));
        assert!(x.retainers(999, 0, 10, false).is_none() && x.instances(999, 0, 1, false).is_none());
        assert!(x.heap_bytes() > 0);
    }

    #[test]
    fn string_contents_only_when_asked() {
        let x = explorer("strings");
        let refs = x.references(2, 0, 10, false).expect("refs");
        let s = &refs.items[0];
        assert_eq!(s.name, "secret");
        assert_eq!(s.node.label, "(string) @7");
        assert!(s.node.redacted);
        let shown = x.references(2, 0, 10, true).expect("refs");
        assert_eq!(shown.items[0].node.label, "\"hunter2\" @7");
        let all = serde_json::to_string(&x.classes(0, 100)).expect("json")
            + &serde_json::to_string(&x.instances(0, 0, 100, false)).expect("json");
        assert!(!all.contains("hunter2"), "{all}");
    }

    #[test]
    fn the_dominator_tree_from_the_root() {
        let x = explorer("dominators");
        let top = x.dominated(ROOT, 0, 10, false).expect("root children");
        assert_eq!(top.items[0].label, "global @3");
        let under = x.dominated(top.items[0].node, 0, 10, false).expect("global's");
        let mut labels: Vec<&str> = under.items.iter().map(|n| n.label.as_str()).collect();
        assert!(under.items.windows(2).all(|w| w[0].retained_size >= w[1].retained_size), "largest retained first");
        labels.sort();
        assert_eq!(labels, ["Foo @5", "system / Context @9"]);
    }
}

#[cfg(test)]
mod compare_tests {
    use super::tests::index;
    use crate::diff::tests::dups;

    #[test]
    fn new_deleted_and_deltas_per_constructor_then_the_new_instances() {
        let base = index("base", &dups(2, 1001, 5, 2001, 3));
        let newer = index("newer", &dups(6, 1001, 1, 2001, 30));
        let c = newer.compare(&base);
        let rows = c.rows(0, 100);
        assert!(rows.items.windows(2).all(|w| w[0].size_delta >= w[1].size_delta || w[1].name.starts_with('(')));
        let leak = rows.items.iter().find(|r| r.name == "Leak").expect("Leak row");
        assert_eq!((leak.count_before, leak.count_after, leak.count_delta), (3, 30, 27));
        assert_eq!((leak.new_count, leak.new_size, leak.deleted_count), (27, 27 * 32, 0));
        assert_eq!(leak.size_delta, 27 * 32);
        // The two same-named classes stay apart: one grew, the other lost instances.
        let dup =
            |script| rows.items.iter().find(|r| r.name == "Dup" && r.location.map(|l| l.script_id) == Some(script));
        let (a, b) = (dup(11).expect("Dup of script 11"), dup(12).expect("Dup of script 12"));
        assert_eq!((a.new_count, a.deleted_count, a.count_delta), (4, 0, 4));
        assert_eq!((b.new_count, b.deleted_count, b.count_delta), (0, 4, -4));
        assert_eq!(c.new_count, rows.items.iter().map(|r| r.new_count).sum::<u64>());
        assert_eq!(c.deleted_count, rows.items.iter().map(|r| r.deleted_count).sum::<u64>());
        let new = c.new_instances(&newer, leak.index, 0, 10, false).expect("new instances");
        assert_eq!((new.total, new.items.len()), (27, 10));
        assert!(new.items.iter().all(|n| n.id > 100_001 + 6 * 2 && n.class == "Leak"), "{:?}", new.items);
        let page2 = c.new_instances(&newer, leak.index, 20, 10, false).expect("page");
        assert_eq!((page2.offset, page2.items.len()), (20, 7));
        // A new instance opens in the newer index: its retainer is the holder array.
        let held = newer.retainers(new.items[0].node, 0, 10, false).expect("retainers");
        assert_eq!(held.items[0].node.class, "Array");
        assert!(c.new_instances(&newer, 999, 0, 10, false).is_none());
        assert!(c.heap_bytes() > 0);
        // Nothing changed: no rows.
        assert_eq!(base.compare(&base).rows(0, 10).total, 0);
    }
}
