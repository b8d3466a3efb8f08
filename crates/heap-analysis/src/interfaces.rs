//! DevTools' naming of plain objects by shape (`inferInterfaceDefinitions` /
//! `applyInterfaceDefinitions` in DevTools' `HeapSnapshot.ts`).
//!
//! Plain objects (`Object`) are the largest anonymous group in most Node.js heaps. DevTools
//! groups them by their property names instead: the popular shapes (matched by at least 2
//! objects and 1 in 1000 plain objects) become classes named like `{id, name, tags}`, and every
//! plain object is put in the best matching shape (most properties, then most popular); objects
//! that match none stay `Object`. We do the same so the Summary rows match DevTools.
//! A diff applies the first snapshot's shapes to both snapshots so class names line up.

use std::collections::HashMap;

use crate::graph::HeapGraph;

const MIN_INTERFACE_PROPERTY_COUNT: usize = 1;
const MAX_INTERFACE_NAME_LENGTH: usize = 120;
const MIN_OBJECT_COUNT_PER_INTERFACE: f64 = 2.0;
const MIN_OBJECT_PROPORTION_PER_INTERFACE: f64 = 1000.0;

/// A popular object shape.
#[derive(Debug, Clone)]
pub struct Interface {
    pub name: String,
    pub properties: Vec<String>,
}

fn is_plain_object(g: &HeapGraph, v: u32) -> bool {
    g.is_type(v, g.types.node_object) && g.name(v) == "Object"
}

fn is_property(g: &HeapGraph, e: usize) -> bool {
    g.types.edge_types.get(g.edge_type(e) as usize).map(String::as_str) == Some("property")
}

/// DevTools' `formatPropertyName`: names with `,'"{}` are shown JSON-quoted.
fn format_property(name: &str) -> String {
    if name.contains([',', '\'', '"', '{', '}']) {
        serde_json::to_string(name).unwrap_or_else(|_| name.to_string())
    } else {
        name.to_string()
    }
}

/// The popular shapes of `g`'s plain objects, most popular first.
pub fn infer(g: &HeapGraph) -> Vec<Interface> {
    let mut candidates: Vec<(Interface, u64)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut total = 0u64;
    for v in 0..g.node_count() as u32 {
        if !is_plain_object(g, v) {
            continue;
        }
        total += 1;
        let mut name = String::from("{");
        let mut name_len = 1usize;
        let mut properties: Vec<u32> = Vec::new();
        for e in g.edges(v) {
            if !is_property(g, e) {
                continue;
            }
            let prop = g.strings.get(g.edge_name[e]);
            if prop == "__proto__" {
                continue;
            }
            let formatted = format_property(prop);
            let flen = formatted.encode_utf16().count();
            if name_len > MIN_INTERFACE_PROPERTY_COUNT && name_len + flen > MAX_INTERFACE_NAME_LENGTH {
                break;
            }
            if name_len != 1 {
                name.push_str(", ");
                name_len += 2;
            }
            name.push_str(&formatted);
            name_len += flen;
            properties.push(g.edge_name[e]);
        }
        if properties.is_empty() {
            continue;
        }
        name.push('}');
        match index.get(&name) {
            Some(&i) => candidates[i].1 += 1,
            None => {
                index.insert(name.clone(), candidates.len());
                let properties = properties.iter().map(|&p| g.strings.get(p).to_string()).collect();
                candidates.push((Interface { name, properties }, 1));
            }
        }
    }
    // Stable sort: ties keep first-seen order, as in DevTools.
    candidates.sort_by_key(|c| std::cmp::Reverse(c.1));
    let min = MIN_OBJECT_COUNT_PER_INTERFACE.max(total as f64 / MIN_OBJECT_PROPORTION_PER_INTERFACE);
    candidates.into_iter().take_while(|(_, c)| *c as f64 >= min).map(|(i, _)| i).collect()
}

/// Match of a tree state: (property count, definition index).
type MatchInfo = (usize, usize);

#[derive(Default)]
struct TreeNode {
    next: HashMap<String, usize>,
    match_info: Option<MatchInfo>,
    greatest_next: Option<String>,
}

/// `a` or `b`, whichever has more properties, then the lower definition index.
fn better(a: Option<MatchInfo>, b: Option<MatchInfo>) -> Option<MatchInfo> {
    match (a, b) {
        (None, b) => b,
        (a, None) => a,
        (Some(x), Some(y)) => {
            if x.0 > y.0 {
                Some(x)
            } else if y.0 > x.0 {
                Some(y)
            } else if x.1 <= y.1 {
                Some(x)
            } else {
                Some(y)
            }
        }
    }
}

fn build_tree(defs: &[Interface]) -> Vec<TreeNode> {
    let mut tree = vec![TreeNode::default()];
    for (i, def) in defs.iter().enumerate() {
        let mut props = def.properties.clone();
        props.sort();
        let mut cur = 0usize;
        for p in &props {
            let next = match tree[cur].next.get(p) {
                Some(&n) => n,
                None => {
                    tree.push(TreeNode::default());
                    let n = tree.len() - 1;
                    tree[cur].next.insert(p.clone(), n);
                    if tree[cur].greatest_next.as_ref().is_none_or(|g| g < p) {
                        tree[cur].greatest_next = Some(p.clone());
                    }
                    n
                }
            };
            cur = next;
        }
        if tree[cur].match_info.is_none() {
            tree[cur].match_info = Some((props.len(), i));
        }
    }
    tree
}

/// Renames every plain object of `g` to its best matching shape in `defs`.
#[cfg(test)]
pub fn apply(g: &mut HeapGraph, defs: &[Interface]) {
    let assigned = best_matches(g, defs);
    rename(g, defs, assigned);
}

/// Renames the plain objects `assigned` to shapes of `defs` (from [`best_matches`]).
pub fn rename(g: &mut HeapGraph, defs: &[Interface], assigned: Vec<(u32, u32)>) {
    let mut name_index: Vec<Option<u32>> = vec![None; defs.len()];
    for (v, def) in assigned {
        let def = def as usize;
        let idx = match name_index[def] {
            Some(i) => i,
            None => {
                g.strings.push(&defs[def].name);
                let i = g.strings.len() as u32 - 1;
                name_index[def] = Some(i);
                i
            }
        };
        g.node_name[v as usize] = idx;
    }
}

/// (plain object, definition) for every plain object that matches a definition. Reads the graph
/// only: it runs beside the dominator tree.
pub fn best_matches(g: &HeapGraph, defs: &[Interface]) -> Vec<(u32, u32)> {
    if defs.is_empty() {
        return Vec::new();
    }
    let tree = build_tree(defs);
    let mut out = Vec::new();
    let mut props: Vec<&str> = Vec::new();
    let mut states: Vec<usize> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    for v in 0..g.node_count() as u32 {
        if !is_plain_object(g, v) {
            continue;
        }
        props.clear();
        props.extend(g.edges(v).filter(|&e| is_property(g, e)).map(|e| g.strings.get(g.edge_name[e])));
        props.sort_unstable();
        states.clear();
        states.push(0);
        let mut best = tree[0].match_info;
        for &p in &props {
            current.clear();
            current.extend_from_slice(&states);
            for &s in &current {
                if tree[s].greatest_next.as_deref().is_none_or(|gn| p >= gn) {
                    states.retain(|&x| x != s);
                }
                if let Some(&n) = tree[s].next.get(p) {
                    if !states.contains(&n) {
                        states.push(n);
                    }
                    best = better(best, tree[n].match_info);
                }
            }
        }
        if let Some((count, def)) = best {
            if count > 0 {
                // Fewer definitions than u32::MAX (each is a string of the snapshot).
                out.push((v, def as u32));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::tests::{parse_str, snapshot_json};

    #[test]
    fn plain_objects_are_named_by_shape() {
        // 5 objects {a, b}, 1 object {a}, 1 object {a, b, c} (matches {a, b}: best subset).
        let mut nodes = vec![(9, 0, 1, 0, 7)];
        let mut edges: Vec<(u32, u32, u32)> = (1..=7).map(|i| (1, i, i)).collect();
        for i in 1..=7u32 {
            let props: &[u32] = match i {
                6 => &[2],
                7 => &[2, 3, 4],
                _ => &[2, 3],
            };
            nodes.push((3, 1, 2 * i + 1, 16, props.len() as u32));
            for &p in props {
                edges.push((2, p, 0));
            }
        }
        let g0 = parse_str(&snapshot_json(&nodes, &edges, &["", "Object", "a", "b", "c"])).unwrap();
        let mut g = g0;
        let defs = infer(&g);
        assert_eq!(defs.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(), vec!["{a, b}"]);
        apply(&mut g, &defs);
        assert_eq!(g.name(1), "{a, b}");
        assert_eq!(g.name(6), "Object");
        assert_eq!(g.name(7), "{a, b}");
        assert_eq!(format_property("x,y"), "\"x,y\"");
    }
}
