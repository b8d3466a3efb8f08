//! DevTools' propagation of embedder "detachedness" (`propagateDOMState` in `HeapSnapshot.ts`).
//!
//! Snapshots carry a per-node `detachedness` field set by the embedder (1 attached, 2 detached).
//! DevTools propagates the state from native nodes to the native nodes they reference (attached
//! wins) and renames every detached native node `Detached <name>`, which is the class name the
//! Summary shows (in Node.js, e.g. `Detached Node / BindingData`). We do the same so constructor
//! rows match DevTools.

use std::collections::HashMap;

use crate::dominators::Bits;
use crate::graph::HeapGraph;

const ATTACHED: u8 = 1;
const DETACHED: u8 = 2;

/// Propagates attached/detached state through native nodes and renames detached ones.
pub fn propagate(g: &mut HeapGraph) {
    if g.detachedness.len() != g.node_count() {
        return;
    }
    let n = g.node_count();
    let mut visited = Bits::new(n);
    let mut attached: Vec<u32> = Vec::new();
    let mut detached: Vec<u32> = Vec::new();
    let mut renamed: HashMap<u32, u32> = HashMap::new();
    for v in 0..n as u32 {
        let state = g.detachedness[v as usize];
        if state != 0 {
            process(g, v, state, &mut visited, &mut attached, &mut detached, &mut renamed);
        }
    }
    while let Some(v) = attached.pop() {
        for w in children(g, v) {
            process(g, w, ATTACHED, &mut visited, &mut attached, &mut detached, &mut renamed);
        }
    }
    while let Some(v) = detached.pop() {
        if g.detachedness[v as usize] == ATTACHED {
            continue;
        }
        for w in children(g, v) {
            process(g, w, DETACHED, &mut visited, &mut attached, &mut detached, &mut renamed);
        }
    }
}

/// Targets of `v`'s edges other than hidden and weak ones.
fn children(g: &HeapGraph, v: u32) -> Vec<u32> {
    g.edges(v)
        .filter(|&e| {
            let t = Some(g.edge_type(e));
            t != g.types.edge_hidden && t != g.types.edge_weak
        })
        .map(|e| g.edge_target(e))
        .collect()
}

fn process(
    g: &mut HeapGraph,
    v: u32,
    state: u8,
    visited: &mut Bits,
    attached: &mut Vec<u32>,
    detached: &mut Vec<u32>,
    renamed: &mut HashMap<u32, u32>,
) {
    if visited.get(v as usize) {
        return;
    }
    visited.set(v as usize);
    // The state does not propagate through JavaScript objects, only through embedder nodes.
    if !g.is_type(v, g.types.node_native) {
        return;
    }
    g.detachedness[v as usize] = state;
    if state == ATTACHED {
        attached.push(v);
    } else if state == DETACHED {
        let old = g.node_name[v as usize];
        let new = match renamed.get(&old) {
            Some(&s) => s,
            None => {
                let name = format!("Detached {}", g.strings.get(old));
                g.strings.push(&name);
                let s = g.strings.len() as u32 - 1;
                renamed.insert(old, s);
                s
            }
        };
        g.node_name[v as usize] = new;
        detached.push(v);
    }
}

#[cfg(test)]
mod tests {
    use crate::parser::tests::{parse_str, snapshot_json};

    #[test]
    fn detached_native_nodes_are_renamed() {
        // root -> 1 (native "N", detached) -> 2 (native "N", unknown) ; root -> 3 (native "N", attached)
        let nodes = [(9, 0, 1, 0, 2), (8, 1, 3, 8, 1), (8, 1, 5, 8, 0), (8, 1, 7, 8, 0)];
        let edges = [(1, 0, 1), (1, 1, 3), (2, 2, 2)];
        let json = snapshot_json(&nodes, &edges, &["", "N", "p"]);
        // snapshot_json writes detachedness 0; set node 1 to detached and node 3 to attached.
        let json = json.replacen("8,1,3,8,1,0,0", "8,1,3,8,1,0,2", 1).replacen("8,1,7,8,0,0,0", "8,1,7,8,0,0,1", 1);
        let mut g = parse_str(&json).unwrap();
        super::propagate(&mut g);
        assert_eq!(g.name(1), "Detached N");
        assert_eq!(g.name(2), "Detached N");
        assert_eq!(g.name(3), "N");
        assert_eq!(g.node_name[1], g.node_name[2]);
    }
}
