//! Comparison of two snapshots of the same process.
//!
//! V8 keeps an object's snapshot id stable for its lifetime, so "new" objects are those whose id
//! is in the second snapshot and not in the first, and "deleted" ones the reverse (DevTools'
//! Comparison view works the same way). Classes are matched by name — and, for a name whose
//! constructors were defined in more than one place (in either snapshot), by name and
//! constructor location, one row each, as DevTools keeps them apart. Only counted objects
//! (non-zero self size, as in the summary) take part.
//!
//! To keep memory at one snapshot's worth, the first snapshot is reduced to its class table and a
//! sorted `(id, class, size)` list before the second one is loaded.

use std::collections::{BTreeSet, HashMap, HashSet};

use serde::Serialize;

use crate::dominators::Dominators;
use crate::graph::HeapGraph;
use crate::summary::{is_reportable, top_k, ClassTable, Location, ObjectReport, Reporter, SnapshotInfo};

/// One counted object of a snapshot, for the id join.
#[derive(Clone, Copy)]
pub struct IdEntry {
    pub id: u32,
    pub slot: u32,
    pub size: u32,
}

/// What is kept of a snapshot for diffing.
pub struct Side {
    pub info: SnapshotInfo,
    /// Per class slot: name, count, shallow, retained.
    pub names: Vec<String>,
    /// Per class slot: the constructor location its objects share, if one.
    pub locations: Vec<Option<Location>>,
    pub count: Vec<u64>,
    pub shallow: Vec<u64>,
    pub retained: Vec<u64>,
    /// Counted objects sorted by id.
    pub ids: Vec<IdEntry>,
}

impl Side {
    /// Extracts the diffable parts of an analysed snapshot.
    pub fn new(g: &HeapGraph, t: &ClassTable, info: SnapshotInfo) -> Side {
        let mut ids = Vec::new();
        for v in 0..g.node_count() as u32 {
            if let Some(slot) = t.slot(g, v) {
                let size = g.self_size(v).min(u64::from(u32::MAX)) as u32;
                ids.push(IdEntry { id: g.node_id[v as usize], slot, size });
            }
        }
        ids.sort_unstable_by_key(|e| e.id);
        Side { ids, ..Side::classes(g, t, info) }
    }

    /// The per-class totals only, without the sorted object ids (what a leak hunt keeps of the
    /// snapshots it does not compare object by object).
    pub fn classes(g: &HeapGraph, t: &ClassTable, info: SnapshotInfo) -> Side {
        Side {
            info,
            names: t.keys.iter().map(|&k| g.class_name(k)).collect(),
            locations: t.location.clone(),
            count: t.count.clone(),
            shallow: t.shallow.clone(),
            retained: t.retained.clone(),
            ids: Vec::new(),
        }
    }
}

/// Change of one class between the snapshots.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClassDelta {
    /// The bare constructor name.
    pub name: String,
    /// Set when constructors of this name were defined in more than one place: which one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    pub count_before: u64,
    pub count_after: u64,
    pub count_delta: i64,
    /// Objects of this class in the second snapshot whose id is not in the first.
    pub new_count: u64,
    pub new_size: u64,
    /// Objects of this class in the first snapshot whose id is not in the second.
    pub deleted_count: u64,
    pub deleted_size: u64,
    pub shallow_before: u64,
    pub shallow_after: u64,
    pub shallow_delta: i64,
    pub retained_before: u64,
    pub retained_after: u64,
    pub retained_delta: i64,
}

/// Result of comparing two snapshots.
#[derive(Debug, Clone, Serialize)]
pub struct Diff {
    pub before: SnapshotInfo,
    pub after: SnapshotInfo,
    pub total_size_delta: i64,
    pub new_objects_count: u64,
    pub new_objects_size: u64,
    pub deleted_objects_count: u64,
    pub deleted_objects_size: u64,
    /// Classes that changed: those that gained instances first (by instances gained), then the
    /// other changed ones by retained growth; V8's internal kinds (`(string)`, `system / …`) last.
    pub classes: Vec<ClassDelta>,
    /// New objects with the largest retained sizes (in the second snapshot), with paths.
    pub new_objects: Vec<ObjectReport>,
}

fn delta(after: u64, before: u64) -> i64 {
    (after as i128 - before as i128).clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

/// Compares `a` (before) with `b` (after); `b` is still fully loaded to report new objects.
pub fn compare(a: &Side, b: &Side, g: &HeapGraph, d: &Dominators, r: &Reporter<'_>, top_new: usize) -> Diff {
    let split = split_names(&[a, b]);
    let mut rows: Vec<ClassDelta> = Vec::new();
    let mut row_of: HashMap<(String, Option<Location>), usize> = HashMap::new();
    let mut row = |side: &Side, s: usize, rows: &mut Vec<ClassDelta>| -> usize {
        let name = &side.names[s];
        let location = if split.contains(name.as_str()) { side.locations[s] } else { None };
        if let Some(&r) = row_of.get(&(name.clone(), location)) {
            return r;
        }
        rows.push(ClassDelta { name: name.clone(), location, ..ClassDelta::default() });
        row_of.insert((name.clone(), location), rows.len() - 1);
        rows.len() - 1
    };
    let a_rows: Vec<usize> = (0..a.names.len()).map(|s| row(a, s, &mut rows)).collect();
    let b_rows: Vec<usize> = (0..b.names.len()).map(|s| row(b, s, &mut rows)).collect();
    for (s, &ri) in a_rows.iter().enumerate() {
        rows[ri].count_before += a.count[s];
        rows[ri].shallow_before += a.shallow[s];
        rows[ri].retained_before += a.retained[s];
    }
    for (s, &ri) in b_rows.iter().enumerate() {
        rows[ri].count_after += b.count[s];
        rows[ri].shallow_after += b.shallow[s];
        rows[ri].retained_after += b.retained[s];
    }
    let (mut new_count, mut new_size, mut del_count, mut del_size) = (0u64, 0u64, 0u64, 0u64);
    join_ids(&a.ids, &b.ids, |only_a, entry| {
        let (ri, size) = if only_a {
            (a_rows[entry.slot as usize], u64::from(entry.size))
        } else {
            (b_rows[entry.slot as usize], u64::from(entry.size))
        };
        if only_a {
            rows[ri].deleted_count += 1;
            rows[ri].deleted_size += size;
            del_count += 1;
            del_size += size;
        } else {
            rows[ri].new_count += 1;
            rows[ri].new_size += size;
            new_count += 1;
            new_size += size;
        }
    });
    for r in rows.iter_mut() {
        r.count_delta = delta(r.count_after, r.count_before);
        r.shallow_delta = delta(r.shallow_after, r.shallow_before);
        r.retained_delta = delta(r.retained_after, r.retained_before);
    }
    rows.retain(|r| {
        r.count_delta != 0 || r.shallow_delta != 0 || r.retained_delta != 0 || r.new_count != 0 || r.deleted_count != 0
    });
    rows.sort_by(|x, y| rank(x).cmp(&rank(y)).then_with(|| x.name.cmp(&y.name)).then(x.location.cmp(&y.location)));
    let new_objects = new_object_reports(a, g, d, r, top_new);
    Diff {
        before: a.info.clone(),
        after: b.info.clone(),
        total_size_delta: delta(b.info.total_size, a.info.total_size),
        new_objects_count: new_count,
        new_objects_size: new_size,
        deleted_objects_count: del_count,
        deleted_objects_size: del_size,
        classes: rows,
        new_objects,
    }
}

/// Names whose constructors were defined in more than one place, in any of `sides`.
pub fn split_names<'a>(sides: &[&'a Side]) -> HashSet<&'a str> {
    let mut places: HashMap<&str, BTreeSet<Location>> = HashMap::new();
    for side in sides {
        for (name, loc) in side.names.iter().zip(&side.locations) {
            if let Some(loc) = loc {
                places.entry(name.as_str()).or_default().insert(*loc);
            }
        }
    }
    places.into_iter().filter(|(_, p)| p.len() > 1).map(|(name, _)| name).collect()
}

/// Leak hunting order (smaller first): named classes that gained instances, most instances
/// gained first (a leak is many new objects; a holder's retained size grows without its
/// count); then functions and arrays that gained instances (closures and backing arrays are
/// most often parts of the leaking objects, not the leak); then the other changed classes by
/// retained growth (the holders); V8's internal kinds (`(string)`, `system / Context`…) last —
/// they belong to the objects that hold them.
fn rank(r: &ClassDelta) -> (u8, std::cmp::Reverse<(i64, i64, i64)>) {
    let grew = r.count_delta > 0 && r.new_count > 0;
    let tier = if crate::leak::is_internal(&r.name) {
        3
    } else if grew && !matches!(r.name.as_str(), "Function" | "Array") {
        0
    } else if grew {
        1
    } else {
        2
    };
    let key = if tier < 2 {
        (r.count_delta, r.retained_delta, r.shallow_delta)
    } else {
        (r.retained_delta, r.count_delta, r.shallow_delta)
    };
    (tier, std::cmp::Reverse(key))
}

/// Merge join of two id-sorted lists; calls `f(true, e)` for ids only in `a`, `f(false, e)` for
/// ids only in `b`.
fn join_ids(a: &[IdEntry], b: &[IdEntry], mut f: impl FnMut(bool, &IdEntry)) {
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].id.cmp(&b[j].id) {
            std::cmp::Ordering::Less => {
                f(true, &a[i]);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                f(false, &b[j]);
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                i += 1;
                j += 1;
            }
        }
    }
    a[i..].iter().for_each(|e| f(true, e));
    b[j..].iter().for_each(|e| f(false, e));
}

/// The new objects (id not in `a`) of the loaded snapshot with the largest retained sizes.
fn new_object_reports(a: &Side, g: &HeapGraph, d: &Dominators, r: &Reporter<'_>, k: usize) -> Vec<ObjectReport> {
    let is_new = |v: u32| {
        let id = g.node_id[v as usize];
        a.ids.binary_search_by_key(&id, |e| e.id).is_err()
    };
    let top = top_k(
        g.node_count(),
        k,
        |v| is_reportable(g, v) && g.self_size[v as usize] != 0 && is_new(v),
        |v| d.retained[v as usize],
    );
    top.into_iter().map(|v| r.object(v)).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::parser::tests::snapshot_json;
    use crate::AnalyzeOptions;

    /// A snapshot of two same-named classes `Dup` from two scripts (`a` instances of the one at
    /// script 11 line 2, `b` of the one at script 12 line 2, ids from `a_id` / `b_id`) and `leaks`
    /// `Leak` objects in an array, each holding two closures; all held by the global object.
    pub fn dups(a: u32, a_id: u32, b: u32, b_id: u32, leaks: u32) -> String {
        // strings
        const S: [&str; 12] = [
            "",
            "global",
            "Dup",
            "DupProto",
            "system / Map",
            "map",
            "prototype",
            "constructor",
            "x",
            "Array",
            "Leak",
            "cb",
        ];
        // fixed nodes: 0 root, 1 global, 2/3 ctor closures, 4/5 protos, 6/7 maps, 8 holder array
        let mut nodes = vec![
            (9, 0, 1, 0, 1),
            (3, 1, 3, 10, 0),
            (5, 2, 5, 32, 0),
            (5, 2, 7, 32, 0),
            (3, 3, 9, 16, 1),
            (3, 3, 11, 16, 1),
            (0, 4, 13, 40, 1),
            (0, 4, 15, 40, 1),
            (3, 9, 17, 16, leaks),
        ];
        let mut edges = vec![(5, 0, 1)];
        let mut global_edges = vec![(2, 8, 2), (2, 8, 3), (2, 8, 8)];
        let fixed = vec![(2, 7, 2), (2, 7, 3), (3, 6, 4), (3, 6, 5)];
        let mut instance_edges = Vec::new();
        for (count, first_id, map) in [(a, a_id, 6), (b, b_id, 7)] {
            for i in 0..count {
                global_edges.push((2, 8, nodes.len() as u32));
                nodes.push((3, 2, first_id + 2 * i, 24, 1));
                instance_edges.push((3, 5, map));
            }
        }
        let mut leak_edges = Vec::new();
        let mut holder_edges = Vec::new();
        for i in 0..leaks {
            let at = nodes.len() as u32;
            holder_edges.push((1, i, at));
            nodes.push((3, 10, 100_001 + 6 * i, 32, 2));
            nodes.push((5, 11, 100_003 + 6 * i, 28, 0));
            nodes.push((5, 11, 100_005 + 6 * i, 28, 0));
            leak_edges.push((2, 11, at + 1));
            leak_edges.push((2, 11, at + 2));
        }
        nodes[1].4 = global_edges.len() as u32;
        // Edges in node order: root, global, ctors (none), protos, maps, holder, instances, leaks.
        edges.extend(global_edges);
        edges.extend(fixed);
        edges.extend(holder_edges);
        edges.extend(instance_edges);
        edges.extend(leak_edges);
        // Constructor closures 2 and 3 are at scripts 11 and 12, line 1 (0-based), column 0.
        snapshot_json(&nodes, &edges, &S).replace(r#""locations":[1,2,3,4]"#, r#""locations":[14,11,1,0,21,12,1,0]"#)
    }

    fn write_tmp(name: &str, body: &str) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("perf-diff-{}-{name}", std::process::id()));
        std::fs::write(&p, body).expect("write temp file");
        p
    }

    #[test]
    fn same_named_classes_from_two_scripts_are_two_rows() {
        // Dup (script 11) grows 2 -> 6; Dup (script 12) falls 5 -> 1: merged, they cancel out.
        let a = write_tmp("dup1.heapsnapshot", &dups(2, 1001, 5, 2001, 0));
        let b = write_tmp("dup2.heapsnapshot", &dups(6, 1001, 1, 2001, 0));
        let an = crate::analyze_path(&a, &AnalyzeOptions::default(), &mut |_| {}).expect("analyze");
        let mut dup: Vec<(u64, Option<u32>)> = an
            .classes
            .iter()
            .filter(|c| c.name == "Dup" && c.node_type == "object")
            .map(|c| (c.count, c.location.map(|l| l.script_id)))
            .collect();
        dup.sort();
        assert_eq!(dup, [(2, Some(11)), (5, Some(12))], "{:?}", an.classes);
        let json = serde_json::to_value(&an.classes).expect("json");
        let row = json.as_array().and_then(|r| r.iter().find(|c| c["count"] == 2 && c["name"] == "Dup")).expect("row");
        assert_eq!(row["location"], serde_json::json!({"script_id": 11, "line": 2, "column": 1}));
        let d = crate::diff_paths(&a, &b, &AnalyzeOptions::default(), &mut |_| {}).expect("diff");
        let first = &d.classes[0];
        assert_eq!((first.name.as_str(), first.location.map(|l| l.script_id)), ("Dup", Some(11)), "{:?}", d.classes);
        assert_eq!((first.count_delta, first.new_count, first.deleted_count), (4, 4, 0));
        let other = d.classes.iter().find(|c| c.location.map(|l| l.script_id) == Some(12)).expect("script 12 row");
        assert_eq!((other.count_delta, other.deleted_count), (-4, 4));
        for p in [a, b] {
            let _ = std::fs::remove_file(p);
        }
    }

    #[test]
    fn the_leaking_class_ranks_above_its_closures_and_its_holder() {
        // Each leaked object holds two closures: `Function` gains twice as many instances.
        let a = write_tmp("fn1.heapsnapshot", &dups(1, 1001, 1, 2001, 3));
        let b = write_tmp("fn2.heapsnapshot", &dups(1, 1001, 1, 2001, 30));
        let d = crate::diff_paths(&a, &b, &AnalyzeOptions::default(), &mut |_| {}).expect("diff");
        let names: Vec<&str> = d.classes.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names.first(), Some(&"Leak"), "{names:?}");
        let function = names.iter().position(|n| *n == "Function").expect("Function row");
        let array = names.iter().position(|n| *n == "Array").expect("holder row");
        assert!(function > 0 && array > function, "{names:?}");
        assert_eq!(d.classes[0].count_delta, 27);
        // Names with one constructor location each carry none.
        assert!(d.classes.iter().all(|c| c.location.is_none()), "{:?}", d.classes);
        for p in [a, b] {
            let _ = std::fs::remove_file(p);
        }
    }

    #[test]
    fn id_join_finds_new_and_deleted() {
        let e = |id| IdEntry { id, slot: 0, size: 1 };
        let a = [e(1), e(3), e(5), e(9)];
        let b = [e(3), e(4), e(9), e(11), e(13)];
        let mut only_a = Vec::new();
        let mut only_b = Vec::new();
        join_ids(&a, &b, |in_a, x| if in_a { only_a.push(x.id) } else { only_b.push(x.id) });
        assert_eq!(only_a, vec![1, 5]);
        assert_eq!(only_b, vec![4, 11, 13]);
    }
}
