//! Dominator tree and retained sizes with Chrome DevTools' edge rules.
//!
//! Which edges retain (DevTools `computeIsEssentialEdge`, `HeapSnapshot.ts`):
//! - weak edges never retain;
//! - shortcut edges retain only from the synthetic root (they mark user global objects);
//! - self edges are ignored;
//! - an edge from a node that is not "page owned" into a page-owned node is ignored, so the
//!   debugger's and V8's own references do not change the dominators of application objects
//!   (page owned = reachable from the root's shortcut edges and `(Document DOM trees)`, DevTools
//!   `markPageOwnedNodes`);
//! - the internal edge from a WeakMap's table to a value (`… pair in WeakMap (table @N)`) is
//!   ignored: the value is attributed to its key.
//!
//! Nodes unreachable from the root are handled like DevTools: nodes with no retaining edge at all
//! become children of the root and their subgraphs are searched from there; whatever is left (cycles
//! retained only by one another) hangs directly under the root.
//!
//! The algorithm is Semi-NCA (Georgiadis): an iterative DFS numbering, semi-dominators by the
//! Lengauer–Tarjan eval/link with iterative path compression, then nearest-common-ancestor
//! walks. It yields the same tree as DevTools' Lengauer–Tarjan, uses five `u32` arrays, and
//! never recurses, so 10M+ node graphs are fine.

use crate::graph::{HeapGraph, ROOT};
use crate::Model;

/// Dominator tree and retained sizes, indexed by node ordinal.
pub struct Dominators {
    /// Immediate dominator of each node (`idom[ROOT] == ROOT`).
    pub idom: Vec<u32>,
    /// Retained size of each node in bytes.
    pub retained: Vec<u64>,
    /// Nodes in DFS preorder: every node comes after its dominator.
    pub preorder: Vec<u32>,
    /// Number of nodes not reachable from the root through retaining edges.
    pub unreachable: u64,
}

/// Bit vector.
pub struct Bits(Vec<u64>);

impl Bits {
    /// `n` zero bits.
    pub fn new(n: usize) -> Self {
        Bits(vec![0; n.div_ceil(64)])
    }
    /// Number of bits (rounded up to a multiple of 64).
    pub fn capacity(&self) -> usize {
        self.0.len() * 64
    }
    #[inline]
    pub fn get(&self, i: usize) -> bool {
        self.0[i >> 6] >> (i & 63) & 1 == 1
    }
    #[inline]
    pub fn set(&mut self, i: usize) {
        self.0[i >> 6] |= 1 << (i & 63);
    }
}

/// Marks the nodes reachable (over non-weak edges) from the root's shortcut edges and from
/// `(Document DOM trees)` (DevTools `markPageOwnedNodes`). memlab seeds the other way round:
/// from every root edge except shortcuts and `(Document DOM trees)`.
pub fn page_owned(g: &HeapGraph, model: Model) -> Bits {
    let n = g.node_count();
    let mut flags = Bits::new(n);
    let mut stack: Vec<u32> = Vec::new();
    for e in g.edges(ROOT) {
        let t = Some(g.edge_type(e));
        let to = g.edge_target(e);
        let dom_trees =
            t == g.types.edge_element && g.is_type(to, g.types.node_synthetic) && g.name(to) == "(Document DOM trees)";
        let seed = match model {
            Model::DevTools => dom_trees || t == g.types.edge_shortcut,
            Model::Memlab => !dom_trees && t != g.types.edge_shortcut,
        };
        if seed && !flags.get(to as usize) {
            flags.set(to as usize);
            stack.push(to);
        }
    }
    let weak = g.types.edge_weak;
    while let Some(v) = stack.pop() {
        for e in g.edges(v) {
            let to = g.edge_target(e);
            if flags.get(to as usize) || Some(g.edge_type(e)) == weak {
                continue;
            }
            flags.set(to as usize);
            stack.push(to);
        }
    }
    flags
}

/// Parses the table id out of a WeakMap ephemeron edge name, e.g.
/// `1 / part of key (Foo @123) -> value (Bar @456) pair in WeakMap (table @789)`.
pub fn weakmap_table_id(name: &str) -> Option<u32> {
    let rest = name.trim_start_matches(|c: char| c.is_ascii_digit());
    if rest.len() == name.len() || !rest.starts_with(" / part of key (") || !rest.contains(") -> value (") {
        return None;
    }
    const MARK: &str = " pair in WeakMap (table @";
    let tail = rest.strip_suffix(')')?;
    let at = tail.rfind(MARK)?;
    tail[at + MARK.len()..].parse().ok()
}

/// One bit per edge: does it retain its target (see the module docs)? The edges are split in
/// two halves at a word of the bit vector, one half per thread.
pub fn essential_edges(g: &HeapGraph, page: &Bits, model: Model) -> Bits {
    let m = g.edge_count();
    let mut bits = Bits::new(m);
    let half = if crate::one_thread() { m } else { (m / 2) & !63 };
    let (front, back) = bits.0.split_at_mut(half / 64);
    std::thread::scope(|s| {
        if half < m {
            s.spawn(move || mark_essential(g, page, model, half..m, back));
        }
        mark_essential(g, page, model, 0..half, front);
    });
    bits
}

/// Sets the bits of the essential edges among `edges` in `words` (bit 0: the range's first edge,
/// which starts a word).
fn mark_essential(g: &HeapGraph, page: &Bits, model: Model, edges: std::ops::Range<usize>, words: &mut [u64]) {
    const UNKNOWN: u32 = u32::MAX;
    const NOT_WEAKMAP: u32 = u32::MAX - 1;
    let mut weakmap_cache = vec![UNKNOWN; g.strings.len()];
    let (weak, shortcut, internal) = (g.types.edge_weak, g.types.edge_shortcut, g.types.edge_internal);
    // The node whose edges hold the range's first edge.
    let first_node = g.first_edge.partition_point(|&f| f as usize <= edges.start).saturating_sub(1);
    for v in first_node as u32..g.node_count() as u32 {
        let own = g.edges(v);
        if own.start >= edges.end {
            break;
        }
        let v_page = page.get(v as usize);
        for e in own.start.max(edges.start)..own.end.min(edges.end) {
            let t = Some(g.edge_type(e));
            let to = g.edge_target(e);
            if t == weak || to == v {
                continue;
            }
            if v != ROOT && (t == shortcut || (!v_page && page.get(to as usize))) {
                continue;
            }
            if t == internal && model == Model::DevTools {
                let name = g.edge_name[e] as usize;
                if let Some(slot) = weakmap_cache.get_mut(name) {
                    if *slot == UNKNOWN {
                        *slot = weakmap_table_id(g.strings.get(name as u32)).unwrap_or(NOT_WEAKMAP);
                    }
                    if *slot != NOT_WEAKMAP && *slot == g.node_id[v as usize] {
                        continue;
                    }
                }
            }
            let i = e - edges.start;
            words[i >> 6] |= 1 << (i & 63);
        }
    }
}

/// Retainers through essential edges, as CSR: `preds[first[v]..first[v + 1]]`.
struct Preds {
    first: Vec<u32>,
    preds: Vec<u32>,
}

fn build_preds(g: &HeapGraph, ess: &Bits) -> Preds {
    let n = g.node_count();
    let mut first = vec![0u32; n + 1];
    for v in 0..n as u32 {
        for e in g.edges(v) {
            if ess.get(e) {
                first[g.edge_target(e) as usize] += 1;
            }
        }
    }
    // Exclusive prefix sums, then fill using `first[w]` as a cursor that ends at the next row.
    let mut sum = 0u32;
    for slot in first.iter_mut() {
        let c = *slot;
        *slot = sum;
        sum += c;
    }
    let mut preds = vec![0u32; sum as usize];
    for v in 0..n as u32 {
        for e in g.edges(v) {
            if ess.get(e) {
                let w = g.edge_target(e) as usize;
                preds[first[w] as usize] = v;
                first[w] += 1;
            }
        }
    }
    for w in (1..=n).rev() {
        first[w] = first[w - 1];
    }
    first[0] = 0;
    Preds { first, preds }
}

/// DFS numbering: `pre[ordinal]` (1-based), `vertex[number]`, `parent[number]`.
struct Numbering {
    pre: Vec<u32>,
    vertex: Vec<u32>,
    parent: Vec<u32>,
    /// First number given to a node attached to the root without any retaining path.
    detached_from: u32,
    unreachable: u64,
}

/// The DFS numbering from the root (the nodes it does not reach are numbered by
/// [`number_the_rest`], which needs the retainers).
fn number_from_root(g: &HeapGraph, ess: &Bits) -> Numbering {
    let n = g.node_count();
    let mut num = Numbering {
        pre: vec![0u32; n],
        vertex: Vec::with_capacity(n + 1),
        parent: Vec::with_capacity(n + 1),
        detached_from: 0,
        unreachable: 0,
    };
    num.vertex.push(u32::MAX);
    num.parent.push(0);
    dfs_from(g, ess, &mut num, &mut Vec::new(), ROOT, 0);
    num
}

/// Numbers what the search from the root did not reach: nodes without retaining edges and their
/// subgraphs, then cycles retained only by one another.
fn number_the_rest(g: &HeapGraph, ess: &Bits, preds: &Preds, model: Model, mut num: Numbering) -> Numbering {
    let n = g.node_count();
    let mut stack: Vec<(u32, u32)> = Vec::new();
    let reached = num.vertex.len() - 1;
    num.unreachable = (n - reached) as u64;
    if reached < n {
        // Nodes without any retaining edge (only weak retainers): search from each.
        let strong = (model == Model::Memlab).then(|| strongly_referenced(g));
        for v in 0..n as u32 {
            let no_retainers = match &strong {
                None => preds.first[v as usize] == preds.first[v as usize + 1],
                Some(bits) => !bits.get(v as usize),
            };
            if num.pre[v as usize] == 0 && no_retainers {
                dfs_from(g, ess, &mut num, &mut stack, v, 1);
            }
        }
    }
    num.detached_from = num.vertex.len() as u32;
    if num.vertex.len() - 1 < n {
        // Cycles retained only by one another: hang each under the root.
        for v in 0..n as u32 {
            if num.pre[v as usize] == 0 {
                num.pre[v as usize] = num.vertex.len() as u32;
                num.vertex.push(v);
                num.parent.push(1);
            }
        }
    }
    num
}

/// Nodes with a referrer edge that is neither weak nor a shortcut (memlab `hasOnlyWeakReferrers`).
fn strongly_referenced(g: &HeapGraph) -> Bits {
    let mut bits = Bits::new(g.node_count());
    for e in 0..g.edge_count() {
        let t = Some(g.edge_type(e));
        if t != g.types.edge_weak && t != g.types.edge_shortcut {
            bits.set(g.edge_target(e) as usize);
        }
    }
    bits
}

/// Iterative preorder DFS over essential edges from `start`, whose DFS parent number is `parent`.
fn dfs_from(g: &HeapGraph, ess: &Bits, num: &mut Numbering, stack: &mut Vec<(u32, u32)>, start: u32, parent: u32) {
    let visit = |num: &mut Numbering, v: u32, parent: u32| {
        num.pre[v as usize] = num.vertex.len() as u32;
        num.vertex.push(v);
        num.parent.push(parent);
    };
    visit(num, start, parent);
    stack.push((start, g.first_edge[start as usize]));
    while let Some(top) = stack.last_mut() {
        let v = top.0;
        let end = g.first_edge[v as usize + 1];
        let mut next = None;
        while top.1 < end {
            let e = top.1 as usize;
            top.1 += 1;
            if ess.get(e) {
                let w = g.edge_target(e);
                if num.pre[w as usize] == 0 {
                    next = Some(w);
                    break;
                }
            }
        }
        match next {
            Some(w) => {
                let p = num.pre[v as usize];
                visit(num, w, p);
                stack.push((w, g.first_edge[w as usize]));
            }
            None => {
                stack.pop();
            }
        }
    }
}

/// Semi-dominators (in DFS numbers) by LT eval/link with path compression.
fn semidominators(vertex: &[u32], parent: &[u32], preds: &Preds, detached_from: u32) -> Vec<u32> {
    let n = vertex.len() - 1;
    let mut semi: Vec<u32> = (0..=n as u32).collect();
    let mut label: Vec<u32> = semi.clone();
    let mut ancestor = vec![0u32; n + 1];
    let mut path: Vec<u32> = Vec::new();
    for w in (2..=n).rev() {
        let o = vertex[w] as usize;
        let row = &preds.preds[preds.first[o] as usize..preds.first[o + 1] as usize];
        let mut s = semi[w];
        if row.is_empty() || w as u32 >= detached_from {
            s = 1;
        } else {
            for &v in row {
                let u = eval(v, &mut ancestor, &mut label, &mut path);
                s = s.min(u);
            }
        }
        semi[w] = s;
        label[w] = s;
        ancestor[w] = parent[w];
    }
    semi
}

/// Smallest semi-dominator on the linked path from `v` (excluding the forest root).
#[inline]
fn eval(v: u32, ancestor: &mut [u32], label: &mut [u32], path: &mut Vec<u32>) -> u32 {
    let mut x = v as usize;
    if ancestor[x] == 0 {
        return label[x];
    }
    path.clear();
    while ancestor[ancestor[x] as usize] != 0 {
        path.push(x as u32);
        x = ancestor[x] as usize;
    }
    while let Some(w) = path.pop() {
        let w = w as usize;
        let a = ancestor[w] as usize;
        if label[a] < label[w] {
            label[w] = label[a];
        }
        ancestor[w] = ancestor[a];
    }
    label[v as usize]
}

/// Builds the dominator tree and retained sizes of `g` with the edge rules of `model`.
pub fn compute(g: &HeapGraph, model: Model) -> Dominators {
    retained_sizes(g, tree(g, model))
}

/// The dominator tree in DFS numbers, before any size is looked at (so it can be built while
/// another thread moves internal arrays' sizes into their owners).
pub struct Tree {
    /// Immediate dominator of each DFS number (`idom[1] == 1`, the root).
    idom: Vec<u32>,
    /// Node ordinal of each DFS number (`vertex[0]` unused).
    vertex: Vec<u32>,
    unreachable: u64,
}

/// The dominator tree of `g` with the edge rules of `model` (reads edges, ids and the names of
/// synthetic nodes only, never sizes or object names).
pub fn tree(g: &HeapGraph, model: Model) -> Tree {
    let mut t = std::time::Instant::now();
    let page = page_owned(g, model);
    crate::phase("page_owned", &mut t);
    let ess = essential_edges(g, &page, model);
    crate::phase("essential_edges", &mut t);
    drop(page);
    // The retainers and the search from the root both only read the graph and the edge bits:
    // one each on the two threads.
    let (from_root, mut preds) = crate::beside(|| number_from_root(g, &ess), || build_preds(g, &ess));
    crate::phase("retainers and search", &mut t);
    let numbering = number_the_rest(g, &ess, &preds, model, from_root);
    let Numbering { pre, vertex, parent, detached_from, unreachable } = numbering;
    crate::phase("number the rest", &mut t);
    drop(ess);
    // Retainers in DFS numbers from here on.
    for p in preds.preds.iter_mut() {
        *p = pre[*p as usize];
    }
    drop(pre);
    crate::phase("remap", &mut t);
    let semi = semidominators(&vertex, &parent, &preds, detached_from);
    crate::phase("semi", &mut t);
    drop(preds);
    // NCA pass, in place over `parent`: idom(w) = nearest ancestor of w at or above semi(w).
    let mut idom = parent;
    let n = vertex.len() - 1;
    idom[1] = 1;
    for w in 2..=n {
        let s = semi[w];
        let mut d = idom[w];
        while d > s {
            d = idom[d as usize];
        }
        idom[w] = d;
    }
    drop(semi);
    crate::phase("nca", &mut t);
    Tree { idom, vertex, unreachable }
}

/// Retained sizes over the dominator `tree` of `g`, with its final self sizes.
pub fn retained_sizes(g: &HeapGraph, tree: Tree) -> Dominators {
    let mut t = std::time::Instant::now();
    let Tree { idom, vertex, unreachable } = tree;
    let n = vertex.len() - 1;
    let mut retained: Vec<u64> = (0..g.node_count() as u32).map(|v| g.self_size(v)).collect();
    let mut idom_ord = vec![ROOT; g.node_count()];
    for w in (2..=n).rev() {
        let (o, d) = (vertex[w] as usize, vertex[idom[w] as usize]);
        idom_ord[o] = d;
        retained[d as usize] += retained[o];
    }
    let mut preorder = vertex;
    preorder.remove(0);
    crate::phase("retained", &mut t);
    Dominators { idom: idom_ord, retained, preorder, unreachable }
}

/// Children lists of the dominator tree, as CSR over node ordinals.
pub struct DominatedNodes {
    pub first: Vec<u32>,
    pub nodes: Vec<u32>,
}

impl DominatedNodes {
    /// Builds children lists from `idom` (the root is nobody's child).
    pub fn build(idom: &[u32]) -> Self {
        let n = idom.len();
        let mut first = vec![0u32; n + 1];
        for (v, &d) in idom.iter().enumerate() {
            if v as u32 != ROOT {
                first[d as usize] += 1;
            }
        }
        let mut sum = 0u32;
        for slot in first.iter_mut() {
            let c = *slot;
            *slot = sum;
            sum += c;
        }
        let mut nodes = vec![0u32; sum as usize];
        for (v, &d) in idom.iter().enumerate() {
            if v as u32 != ROOT {
                nodes[first[d as usize] as usize] = v as u32;
                first[d as usize] += 1;
            }
        }
        for w in (1..=n).rev() {
            first[w] = first[w - 1];
        }
        first[0] = 0;
        DominatedNodes { first, nodes }
    }

    /// Children of `v`.
    pub fn children(&self, v: u32) -> &[u32] {
        &self.nodes[self.first[v as usize] as usize..self.first[v as usize + 1] as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::tests::{parse_str, snapshot_json};

    // Type codes of the test meta.
    const HIDDEN: u32 = 0;
    const OBJECT: u32 = 3;
    const SYNTH: u32 = 9;
    const ELEMENT: u32 = 1;
    const PROPERTY: u32 = 2;
    const INTERNAL: u32 = 3;
    const SHORTCUT: u32 = 5;
    const WEAK: u32 = 6;

    /// Graph from (self_size) per node (node 0 = root) and edges (from, type, name, to).
    fn graph(sizes: &[u32], edges: &[(u32, u32, u32, u32)], strings: &[&str]) -> HeapGraph {
        let mut edges = edges.to_vec();
        edges.sort_by_key(|e| e.0);
        let mut counts = vec![0u32; sizes.len()];
        for e in &edges {
            counts[e.0 as usize] += 1;
        }
        let nodes: Vec<_> = sizes
            .iter()
            .enumerate()
            .map(|(i, &s)| {
                let t = if i == 0 { SYNTH } else { OBJECT };
                let cnt = counts[i];
                (t, 1 + (i as u32 % 2), 2 * i as u32 + 1, s, cnt)
            })
            .collect();
        let e: Vec<_> = edges.iter().map(|&(_, t, nm, to)| (t, nm, to)).collect();
        let mut all = vec!["", "A", "B", "p"];
        all.extend_from_slice(strings);
        parse_str(&snapshot_json(&nodes, &e, &all)).unwrap()
    }

    #[test]
    fn diamond_and_chain() {
        // 0 -> 1 -> {2, 3} -> 4 -> 5
        let g = graph(
            &[0, 1, 2, 4, 8, 16],
            &[
                (0, ELEMENT, 1, 1),
                (1, PROPERTY, 3, 2),
                (1, PROPERTY, 3, 3),
                (2, PROPERTY, 3, 4),
                (3, PROPERTY, 3, 4),
                (4, PROPERTY, 3, 5),
            ],
            &[],
        );
        let d = compute(&g, Model::DevTools);
        assert_eq!(d.idom, vec![0, 0, 1, 1, 1, 4]);
        assert_eq!(d.retained, vec![31, 31, 2, 4, 24, 16]);
    }

    #[test]
    fn classic_lengauer_tarjan_graph() {
        // The flow graph from the Lengauer-Tarjan paper (R=0, A..L = 1..12).
        let (r, a, b, c, d, e, f, gg, h, i, j, k, l) = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12);
        let es = [
            (r, a),
            (r, b),
            (r, c),
            (a, d),
            (b, a),
            (b, d),
            (b, e),
            (c, f),
            (c, gg),
            (d, l),
            (e, h),
            (f, i),
            (gg, i),
            (gg, j),
            (h, e),
            (h, k),
            (i, k),
            (j, i),
            (k, i),
            (k, r),
            (l, h),
        ];
        let edges: Vec<_> = es.iter().map(|&(f, t)| (f, if f == 0 { ELEMENT } else { PROPERTY }, 3, t)).collect();
        let gr = graph(&[1; 13], &edges, &[]);
        let dm = compute(&gr, Model::DevTools);
        let expect = [r, r, r, r, r, r, c, c, r, r, gg, r, d];
        assert_eq!(dm.idom, expect.to_vec());
        assert_eq!(dm.retained[0], 13);
        assert_eq!(dm.retained[c as usize], 4); // C, F, G, J
    }

    #[test]
    fn weak_edges_do_not_retain() {
        // 0 -> 1 -> 2 (strong), 0 -> 3 -weak-> 2 ; 3 -weak-> 4 only: 4 is an orphan under root.
        let g = graph(
            &[0, 1, 10, 1, 5],
            &[(0, ELEMENT, 1, 1), (0, ELEMENT, 2, 3), (1, PROPERTY, 3, 2), (3, WEAK, 3, 2), (3, WEAK, 3, 4)],
            &[],
        );
        let d = compute(&g, Model::DevTools);
        assert_eq!(d.idom[2], 1);
        assert_eq!(d.retained[1], 11);
        assert_eq!(d.retained[3], 1);
        assert_eq!(d.idom[4], 0);
        assert_eq!(d.unreachable, 1);
        assert_eq!(d.retained[0], 17);
    }

    #[test]
    fn shortcuts_retain_only_from_root_and_page_rule() {
        // root -shortcut-> 1 (global, page owned) -> 2 (page owned)
        // root -element-> 3 ((GC roots), not page owned) -> 2 : ignored (non-page -> page)
        // 1 -shortcut-> 4, and 3 -> 4 : 4 is retained by 3 only (shortcut from non-root ignored)
        let g = graph(
            &[0, 1, 10, 1, 7],
            &[
                (0, SHORTCUT, 3, 1),
                (0, ELEMENT, 1, 3),
                (1, PROPERTY, 3, 2),
                (3, INTERNAL, 3, 2),
                (1, SHORTCUT, 3, 4),
                (3, INTERNAL, 3, 4),
            ],
            &[],
        );
        let d = compute(&g, Model::DevTools);
        assert_eq!(d.idom[2], 1, "edge from non-page-owned node into page-owned node ignored");
        assert_eq!(d.retained[1], 11);
        // 4 is page owned (reached via a shortcut from a page node), 3 is not: 3 -> 4 is ignored,
        // the shortcut 1 -> 4 does not retain, so 4 hangs under the root.
        assert_eq!(d.idom[4], 0);
        assert_eq!(d.retained[3], 1);
    }

    #[test]
    fn weakmap_table_edge_does_not_retain_value() {
        // root -> 1 (key), root -> 2 (table, id 5) ; 1 -internal-> 3, 2 -internal(ephemeron)-> 3
        let name = "1 / part of key (Key @3) -> value (Val @7) pair in WeakMap (table @5)";
        let g = graph(
            &[0, 1, 1, 9],
            &[(0, ELEMENT, 1, 1), (0, ELEMENT, 2, 2), (1, INTERNAL, 4, 3), (2, INTERNAL, 4, 3)],
            &[name],
        );
        assert_eq!(g.node_id[2], 5);
        let d = compute(&g, Model::DevTools);
        assert_eq!(d.idom[3], 1);
        assert_eq!(d.retained[1], 10);
        assert_eq!(weakmap_table_id(name), Some(5));
        assert_eq!(weakmap_table_id("part of key"), None);
    }

    #[test]
    fn unreachable_cycle_hangs_under_root() {
        // 1 <-> 2 retained only by each other; 3 reachable.
        let g = graph(&[0, 2, 3, 1], &[(0, ELEMENT, 1, 3), (1, PROPERTY, 3, 2), (2, PROPERTY, 3, 1)], &[]);
        let d = compute(&g, Model::DevTools);
        assert_eq!(d.idom[1], 0);
        assert_eq!(d.retained[0], 6);
        let _ = HIDDEN;
    }

    #[test]
    fn deep_chain_does_not_overflow() {
        let n = 200_000u32;
        let sizes = vec![1u32; n as usize];
        let edges: Vec<_> = (0..n - 1).map(|i| (i, if i == 0 { ELEMENT } else { PROPERTY }, 3, i + 1)).collect();
        let g = graph(&sizes, &edges, &[]);
        let d = compute(&g, Model::DevTools);
        assert_eq!(d.retained[1], u64::from(n - 1));
        assert_eq!(d.idom[(n - 1) as usize], n - 2);
        let dn = DominatedNodes::build(&d.idom);
        assert_eq!(dn.children(0), &[1]);
    }
}
