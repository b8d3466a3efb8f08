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
    if let Some(owners) = owners_if_any(g) {
        move_sizes(g, &owners);
    }
}

/// The owner of each node ([`move_sizes`] moves the sizes), or None when the root has no user
/// roots (nothing moves). Reads the graph only: it runs beside the dominator tree.
pub fn owners_if_any(g: &HeapGraph) -> Option<Vec<u32>> {
    let has_user_roots = g.edges(ROOT).any(|e| !g.is_type(g.edge_target(e), g.types.node_synthetic));
    has_user_roots.then(|| owners(g))
}

/// Moves owned internal nodes' self sizes to their `owners` (from [`owners_if_any`]).
pub fn move_sizes(g: &mut HeapGraph, owners: &[u32]) {
    for v in 0..g.node_count() as u32 {
        let o = owners[v as usize];
        if o == UNVISITED || o == MULTIPLE || o == v || o == ROOT || g.is_type(o, g.types.node_synthetic) {
            continue;
        }
        let size = g.self_size(v);
        if size == 0 {
            continue;
        }
        g.set_self_size(v, 0);
        let total = g.self_size(o) + size;
        g.set_self_size(o, total);
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
