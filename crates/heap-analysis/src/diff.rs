//! Comparison of two snapshots of the same process.
//!
//! V8 keeps an object's snapshot id stable for its lifetime, so "new" objects are those whose id
//! is in the second snapshot and not in the first, and "deleted" ones the reverse (DevTools'
//! Comparison view works the same way). Classes are matched by name. Only counted objects
//! (non-zero self size, as in the summary) take part.
//!
//! To keep memory at one snapshot's worth, the first snapshot is reduced to its class table and a
//! sorted `(id, class, size)` list before the second one is loaded.

use std::collections::HashMap;

use serde::Serialize;

use crate::dominators::Dominators;
use crate::graph::HeapGraph;
use crate::summary::{is_reportable, top_k, ClassTable, ObjectReport, Reporter, SnapshotInfo};

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
        Side {
            info,
            names: t.keys.iter().map(|&k| g.class_name(k)).collect(),
            count: t.count.clone(),
            shallow: t.shallow.clone(),
            retained: t.retained.clone(),
            ids,
        }
    }
}

/// Change of one class between the snapshots.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClassDelta {
    pub name: String,
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
    let mut rows: Vec<ClassDelta> = Vec::new();
    let mut row_of: HashMap<String, usize> = HashMap::new();
    let mut row = |name: &str, rows: &mut Vec<ClassDelta>| -> usize {
        if let Some(&r) = row_of.get(name) {
            return r;
        }
        rows.push(ClassDelta { name: name.to_string(), ..ClassDelta::default() });
        row_of.insert(name.to_string(), rows.len() - 1);
        rows.len() - 1
    };
    let a_rows: Vec<usize> = a.names.iter().map(|n| row(n, &mut rows)).collect();
    let b_rows: Vec<usize> = b.names.iter().map(|n| row(n, &mut rows)).collect();
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
    // Leak hunting order: classes that gained instances first, most instances gained first (a
    // leak is many new objects; a holder's retained size grows without its count); then other
    // changed classes by retained growth; V8's internal kinds (`(string)`, `system / Context`…)
    // last — they belong to the objects that hold them. A class that only "grew" because one
    // container instance retains everything (module caches, the global object) is noise.
    rows.sort_by(|x, y| {
        let tier = |r: &ClassDelta| {
            if crate::leak::is_internal(&r.name) {
                2
            } else if r.count_delta > 0 && r.new_count > 0 {
                0
            } else {
                1
            }
        };
        let key = |r: &ClassDelta| {
            if tier(r) == 0 {
                (r.count_delta, r.retained_delta)
            } else {
                (r.retained_delta, r.count_delta)
            }
        };
        (tier(x), std::cmp::Reverse(key(x)), std::cmp::Reverse(x.shallow_delta), &x.name).cmp(&(
            tier(y),
            std::cmp::Reverse(key(y)),
            std::cmp::Reverse(y.shallow_delta),
            &y.name,
        ))
    });
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
mod tests {
    use super::*;

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
