//! DevTools' attribution of internal arrays to the objects that own them
//! (`calculateShallowSizes` in DevTools' `HeapSnapshot.ts`).
//!
//! V8 reports an object's backing stores (property and element arrays, hash tables, hidden
//! internal objects) as separate `array` / `hidden` nodes. DevTools moves the self size of every
//! such node that is owned by exactly one ordinary object (reached only from it, possibly through
//! other owned internal nodes, over non-weak edges) into that owner, so the Summary shows
//! `Map` objects with their tables' size rather than thousands of anonymous `(array)` entries.
//! Owned nodes are always dominated by their owner, so owners' retained sizes do not change.
//! Like DevTools, nothing is done when the root has no user roots (snapshots taken with
//! "expose internals").

use crate::graph::{HeapGraph, ROOT};

const UNVISITED: u32 = u32::MAX;
const MULTIPLE: u32 = u32::MAX - 1;

/// Moves owned internal nodes' self sizes to their owners, in place.
#[cfg(test)]
pub fn attribute_internal_sizes(g: &mut HeapGraph) {
    let mut sizes = Sizes::take(g);
    sizes.attribute_internal(g);
    sizes.put_back(g);
}

/// A graph's self sizes, taken out of it so that one thread can move them while others read
/// the rest of the graph (the dominator tree never looks at sizes).
pub struct Sizes {
    small: Vec<u32>,
    big: std::collections::HashMap<u32, u64>,
}

impl Sizes {
    /// Takes the sizes out of `g` (which has none until [`Sizes::put_back`]).
    pub fn take(g: &mut HeapGraph) -> Sizes {
        Sizes { small: std::mem::take(&mut g.self_size), big: std::mem::take(&mut g.big_sizes) }
    }

    pub fn put_back(self, g: &mut HeapGraph) {
        g.self_size = self.small;
        g.big_sizes = self.big;
    }

    fn get(&self, n: u32) -> u64 {
        crate::graph::stored_size(&self.small, &self.big, n)
    }

    fn set(&mut self, n: u32, size: u64) {
        if size >= u64::from(u32::MAX) {
            self.small[n as usize] = u32::MAX;
            self.big.insert(n, size);
        } else {
            self.small[n as usize] = size as u32;
            self.big.remove(&n);
        }
    }

    /// Moves owned internal nodes' sizes to their owners (`g`: the graph these came from).
    /// Nothing moves when the root has no user roots.
    pub fn attribute_internal(&mut self, g: &HeapGraph) {
        let has_user_roots = g.edges(ROOT).any(|e| !g.is_type(g.edge_target(e), g.types.node_synthetic));
        if !has_user_roots || self.small.len() != g.node_count() {
            return;
        }
        let owners = owners(g);
        for v in 0..g.node_count() as u32 {
            let o = owners[v as usize];
            if o == UNVISITED || o == MULTIPLE || o == v || o == ROOT || g.is_type(o, g.types.node_synthetic) {
                continue;
            }
            let size = self.get(v);
            if size == 0 {
                continue;
            }
            self.set(v, 0);
            let total = self.get(o) + size;
            self.set(o, total);
        }
    }
}

/// Owner of each node: itself for ordinary nodes, the single owning node for internal ones,
/// `MULTIPLE` or `UNVISITED` otherwise.
fn owners(g: &HeapGraph) -> Vec<u32> {
    let n = g.node_count();
    let mut owners = vec![UNVISITED; n];
    let mut work: Vec<u32> = Vec::new();
    for v in 0..n as u32 {
        let internal = g.is_type(v, g.types.node_hidden)
            || g.is_type(v, g.types.node_array)
            || (g.is_type(v, g.types.node_native) && g.name(v) == "system / ExternalStringData");
        if !internal {
            owners[v as usize] = v;
            work.push(v);
        }
    }
    let weak = g.types.edge_weak;
    while let Some(v) = work.pop() {
        let owner = owners[v as usize];
        for e in g.edges(v) {
            if Some(g.edge_type(e)) == weak {
                continue;
            }
            let t = g.edge_target(e);
            let cur = owners[t as usize];
            if cur == UNVISITED {
                owners[t as usize] = owner;
                work.push(t);
            } else if cur != t && cur != owner && cur != MULTIPLE {
                owners[t as usize] = MULTIPLE;
                work.push(t);
            }
        }
    }
    owners
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::tests::{parse_str, snapshot_json};

    #[test]
    fn owned_arrays_move_into_their_owner() {
        // root -shortcut-> 1 (global object) -> 2 (Map) -> 3 (array) -> 4 (array)
        //                  1 -> 5 (array) <- 2 : two owners, stays.
        let nodes = [
            (9, 0, 1, 0, 1),
            (3, 1, 3, 10, 2),
            (3, 2, 5, 20, 2),
            (1, 0, 7, 30, 1),
            (1, 0, 9, 40, 0),
            (1, 0, 11, 50, 0),
        ];
        let edges = [(5, 0, 1), (2, 3, 2), (2, 3, 5), (3, 3, 3), (3, 3, 5), (3, 3, 4)];
        let mut g = parse_str(&snapshot_json(&nodes, &edges, &["", "Object", "Map", "p"])).unwrap();
        attribute_internal_sizes(&mut g);
        let sizes: Vec<u64> = (0..6).map(|v| g.self_size(v)).collect();
        assert_eq!(sizes, vec![0, 10, 90, 0, 0, 50]);
    }
}
