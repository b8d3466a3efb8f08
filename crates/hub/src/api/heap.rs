//! The heap explorer's routes: small JSON pages over a server-side index of one heap snapshot
//! ([`perf_heap_analysis::Explorer`]), so a browser tab can walk a 1 GB snapshot — the constructor
//! summary, a class's instances, an object's retainers step by step up to a GC root, its
//! references and its dominator-tree children. The whole graph never leaves the hub.
//!
//! - `GET /api/artifacts/{id}/heap/classes?offset&limit`: `202 {stage, done, total}` while the
//!   index is built (in the background, one at a time), then `{total_size, node_count, classes}`;
//! - `GET /api/artifacts/{id}/heap/classes/{index}/instances?offset&limit`;
//! - `GET /api/artifacts/{id}/heap/nodes/{node}`: the object with the first page of its
//!   `retainers` (nearest to a root first), `references` and `dominated`;
//!   `GET …/heap/nodes/{node}/{retainers|references|dominated}?offset&limit` for more;
//! - `GET /api/artifacts/{id}/heap/compare/{base}?offset&limit`: snapshot `id` against an earlier
//!   one of the same app (DevTools' Comparison view): `202 {status, snapshots: [{artifact, stage,
//!   done, total}]}` while either index is built, then per constructor new / deleted / deltas,
//!   largest size growth first (`classes`: a page of rows, each with its `index`);
//! - `GET …/heap/compare/{base}/classes/{index}/new?offset&limit`: that row's new instances (in
//!   `id`, V8 id not in `base`), largest retained first — objects of `id`'s explorer above.
//!
//! Viewer and up; string contents only for admins (the contract: heap contents are admin-only),
//! everyone else sees `(string) @id` with its sizes. Indexes are cached least-recently-used
//! within `HubConfig::heap_index_budget_bytes` (default [`CACHE_BUDGET_BYTES`]).

use super::{visible_artifact, ApiError};
use crate::hub::Hub;
use crate::operators::{Principal, Role};
use crate::store::ArtifactRecord;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use perf_heap_analysis::explorer::{Comparison, Page};
use perf_heap_analysis::Explorer;
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Default bytes of indexes kept at once (least recently used go first); one index bigger than
/// the budget is still kept while it is the only one.
pub const CACHE_BUDGET_BYTES: u64 = 2 << 30;
/// Snapshots remembered at once (indexes and failures).
const MAX_ENTRIES: usize = 16;
/// Items per page at most.
const MAX_PAGE: usize = 500;
const DEFAULT_PAGE: usize = 50;

/// The routes, with indexes kept within `budget_bytes` (`HubConfig::heap_index_budget_bytes`).
pub fn viewer_routes(budget_bytes: u64) -> Router<Arc<Hub>> {
    Router::new()
        .route("/api/artifacts/{id}/heap/classes", get(classes))
        .route("/api/artifacts/{id}/heap/classes/{index}/instances", get(instances))
        .route("/api/artifacts/{id}/heap/nodes/{node}", get(node))
        .route("/api/artifacts/{id}/heap/nodes/{node}/{list}", get(node_list))
        .route("/api/artifacts/{id}/heap/compare/{base}", get(compare))
        .route("/api/artifacts/{id}/heap/compare/{base}/classes/{index}/new", get(compare_new))
        .layer(Extension(Arc::new(HeapIndexes::with_budget(budget_bytes))))
}

/// A least-recently-used map bounded by the bytes of its values and by their number.
pub struct Lru<T> {
    budget: u64,
    max_entries: usize,
    tick: u64,
    entries: HashMap<String, (T, u64, u64)>,
}

impl<T: Clone> Lru<T> {
    pub fn new(budget: u64, max_entries: usize) -> Self {
        Lru { budget, max_entries: max_entries.max(1), tick: 0, entries: HashMap::new() }
    }

    pub fn get(&mut self, key: &str) -> Option<T> {
        self.tick += 1;
        let tick = self.tick;
        self.entries.get_mut(key).map(|(v, _, used)| {
            *used = tick;
            v.clone()
        })
    }

    /// Inserts `value` costing `bytes`, then evicts the least recently used others until the
    /// total fits (the new one stays). Returns the evicted keys. Over the budget only entries
    /// that cost something go (evicting a free one, e.g. an index still being built, frees
    /// nothing and loses its progress), and only for one that costs something; over the count,
    /// any.
    pub fn insert(&mut self, key: &str, value: T, bytes: u64) -> Vec<String> {
        self.tick += 1;
        self.entries.insert(key.to_string(), (value, bytes, self.tick));
        let mut evicted = Vec::new();
        loop {
            let total: u64 = self.entries.values().map(|(_, b, _)| *b).sum();
            let too_many = self.entries.len() > self.max_entries;
            // A free entry adds nothing to the total: it makes no room by evicting others.
            let over_budget = bytes > 0 && total > self.budget;
            if (!over_budget && !too_many) || self.entries.len() <= 1 {
                return evicted;
            }
            let oldest = self
                .entries
                .iter()
                .filter(|(k, (_, b, _))| *k != key && (too_many || *b > 0))
                .min_by_key(|(_, (_, _, used))| *used);
            let Some(k) = oldest.map(|(k, _)| k.clone()) else { return evicted };
            self.entries.remove(&k);
            evicted.push(k);
        }
    }

    pub fn remove(&mut self, key: &str) {
        self.entries.remove(key);
    }
}

/// Where one snapshot's index is.
#[derive(Clone)]
enum Slot {
    Building(Arc<BuildProgress>),
    Ready(Arc<Explorer>),
    Failed(String),
}

#[derive(Default)]
struct BuildProgress {
    done: AtomicU64,
    total: AtomicU64,
    stage: Mutex<&'static str>,
}

/// Bytes of comparisons kept at once (rows and new-instance lists; small next to the indexes).
const COMPARE_BUDGET_BYTES: u64 = 256 << 20;
/// Indexes held for comparisons still waiting for their other side.
const MAX_HELD: usize = 4;

/// The cached indexes, by artifact id.
pub struct HeapIndexes {
    slots: Mutex<Lru<Slot>>,
    /// Building an index is CPU- and memory-heavy: one at a time.
    build: tokio::sync::Semaphore,
    /// Comparisons made, by `ID/BASE`.
    comparisons: Mutex<Lru<Arc<Comparison>>>,
    /// A ready index of a comparison whose other side is still being built, by `ID/BASE|SIDE`:
    /// two big snapshots may not fit the cache budget together, and without this the second
    /// landing would evict the first, which would be rebuilt, evicting the second…
    held: Mutex<Lru<Arc<Explorer>>>,
    /// One comparison computed at a time (a sort of both snapshots' ids).
    comparing: tokio::sync::Mutex<()>,
}

impl HeapIndexes {
    pub fn with_budget(budget_bytes: u64) -> Self {
        HeapIndexes {
            slots: Mutex::new(Lru::new(budget_bytes, MAX_ENTRIES)),
            build: tokio::sync::Semaphore::new(1),
            comparisons: Mutex::new(Lru::new(COMPARE_BUDGET_BYTES, MAX_ENTRIES)),
            held: Mutex::new(Lru::new(u64::MAX, MAX_HELD)),
            comparing: tokio::sync::Mutex::new(()),
        }
    }
}

enum Lookup {
    Ready(Arc<Explorer>),
    Building(Arc<BuildProgress>),
}

impl HeapIndexes {
    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Lru<Slot>>, ApiError> {
        self.slots.lock().map_err(|_| ApiError::Internal("heap index lock poisoned".into()))
    }

    /// The index of `a`, or how far its building got (starting it if nobody has).
    fn lookup(self: &Arc<Self>, hub: &Arc<Hub>, a: &ArtifactRecord) -> Result<Lookup, ApiError> {
        let mut slots = self.lock()?;
        match slots.get(&a.id) {
            Some(Slot::Ready(x)) => return Ok(Lookup::Ready(x)),
            Some(Slot::Building(p)) => return Ok(Lookup::Building(p)),
            Some(Slot::Failed(e)) => return Err(ApiError::Unprocessable(format!("cannot index the snapshot: {e}"))),
            None => {}
        }
        let progress = Arc::new(BuildProgress::default());
        // A placeholder costing nothing; the real size is known once built.
        slots.insert(&a.id, Slot::Building(progress.clone()), 0);
        drop(slots);
        let (me, id, hub, a, p) = (self.clone(), a.id.clone(), hub.clone(), a.clone(), progress.clone());
        tokio::spawn(async move {
            let slot = match me.build.acquire().await {
                Ok(_permit) => build(hub, a, p).await,
                Err(e) => Slot::Failed(e.to_string()),
            };
            let bytes = if let Slot::Ready(x) = &slot { x.heap_bytes() } else { 0 };
            if let Ok(mut slots) = me.slots.lock() {
                for evicted in slots.insert(&id, slot, bytes) {
                    tracing::info!(artifact = %evicted, "heap explorer: index evicted");
                }
            }
        });
        Ok(Lookup::Building(progress))
    }
}

fn locked<T>(m: &Mutex<T>) -> Result<std::sync::MutexGuard<'_, T>, ApiError> {
    m.lock().map_err(|_| ApiError::Internal("heap comparison lock poisoned".into()))
}

/// How far one snapshot's index got, for a `202`.
fn progress_json(id: &str, pr: &BuildProgress) -> serde_json::Value {
    let stage = pr.stage.lock().map(|s| *s).unwrap_or("indexing");
    let (done, total) = (pr.done.load(Ordering::Relaxed), pr.total.load(Ordering::Relaxed));
    json!({"artifact": id, "stage": if stage.is_empty() { "queued" } else { stage }, "done": done, "total": total})
}

/// A visible, ready heap snapshot for a comparison; anything else is a `400` saying why.
async fn comparable(hub: &Hub, p: &Principal, id: &str) -> Result<ArtifactRecord, ApiError> {
    let a = visible_artifact(hub, p, id).await?;
    crate::analysis::check_snapshot(&a).map_err(super::bad_request)?;
    Ok(a)
}

/// The comparison of `id` with `base` (made once both indexes are built), or the `202` progress.
async fn comparison(
    hub: &Arc<Hub>,
    p: &Principal,
    ix: &Arc<HeapIndexes>,
    id: &str,
    base: &str,
) -> Result<Result<(Arc<Comparison>, ArtifactRecord, ArtifactRecord), Response>, ApiError> {
    let (a, b) = (comparable(hub, p, id).await?, comparable(hub, p, base).await?);
    if a.app != b.app {
        return Err(super::bad_request(format!(
            "artifact {} is a snapshot of app {} and {} of app {}: compare snapshots of one app",
            a.id, a.app, b.id, b.app
        )));
    }
    let key = format!("{}/{}", a.id, b.id);
    if let Some(c) = locked(&ix.comparisons)?.get(&key) {
        return Ok(Ok((c, a, b)));
    }
    let mut ready = Vec::with_capacity(2);
    let mut pending = Vec::new();
    for side in [&a, &b] {
        let held_key = format!("{key}|{}", side.id);
        if let Some(x) = locked(&ix.held)?.get(&held_key) {
            ready.push(x);
            continue;
        }
        match ix.lookup(hub, side)? {
            Lookup::Ready(x) => {
                locked(&ix.held)?.insert(&held_key, x.clone(), 0);
                ready.push(x);
            }
            Lookup::Building(pr) => pending.push(progress_json(&side.id, &pr)),
        }
    }
    if !pending.is_empty() {
        let first = pending[0].clone();
        let body = json!({"status": "indexing", "stage": first["stage"], "done": first["done"], "total": first["total"], "snapshots": pending});
        return Ok(Err((StatusCode::ACCEPTED, Json(body)).into_response()));
    }
    let _one_at_a_time = ix.comparing.lock().await;
    if let Some(c) = locked(&ix.comparisons)?.get(&key) {
        return Ok(Ok((c, a, b)));
    }
    let (newer, older) = (ready[0].clone(), ready[1].clone());
    let c = tokio::task::spawn_blocking(move || newer.compare(&older))
        .await
        .map_err(|e| ApiError::Internal(format!("comparison task: {e}")))?;
    let c = Arc::new(c);
    locked(&ix.comparisons)?.insert(&key, c.clone(), c.heap_bytes());
    let mut held = locked(&ix.held)?;
    held.remove(&format!("{key}|{}", a.id));
    held.remove(&format!("{key}|{}", b.id));
    Ok(Ok((c, a, b)))
}

/// A file with the snapshot's bytes (the one place this module touches the store): the stored
/// file on local disk, a private temporary copy from S3 (removed when the index is built).
async fn snapshot_file(hub: &Hub, a: &ArtifactRecord) -> Result<crate::storage::LocalFile, String> {
    hub.artifacts.storage().local_file(&a.file_name).await.map_err(|e| e.reason())
}

async fn build(hub: Arc<Hub>, a: ArtifactRecord, p: Arc<BuildProgress>) -> Slot {
    let file = match snapshot_file(&hub, &a).await {
        Ok(f) => f,
        Err(e) => return Slot::Failed(e),
    };
    let result = tokio::task::spawn_blocking(move || {
        Explorer::open(file.path(), &mut |pr| {
            p.done.store(pr.done, Ordering::Relaxed);
            p.total.store(pr.total, Ordering::Relaxed);
            if let Ok(mut s) = p.stage.lock() {
                *s = match pr.stage {
                    perf_heap_analysis::Stage::Reading => "reading",
                    perf_heap_analysis::Stage::Dominators => "dominators",
                    _ => "indexing",
                };
            }
        })
    })
    .await;
    match result {
        Ok(Ok(x)) => Slot::Ready(Arc::new(x)),
        Ok(Err(e)) => Slot::Failed(e.to_string()),
        Err(e) => Slot::Failed(format!("index task: {e}")),
    }
}

#[derive(Debug, Deserialize)]
pub struct PageQuery {
    pub offset: Option<u64>,
    pub limit: Option<usize>,
}

impl PageQuery {
    fn bounds(&self) -> (u64, usize) {
        (self.offset.unwrap_or(0), self.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE))
    }
}

/// The ready index of a visible heap snapshot, or the `202` progress answer.
async fn explorer(
    hub: &Arc<Hub>,
    p: &Principal,
    indexes: &Arc<HeapIndexes>,
    id: &str,
) -> Result<Result<Arc<Explorer>, Response>, ApiError> {
    let a = visible_artifact(hub, p, id).await?;
    crate::analysis::check_snapshot(&a).map_err(super::unprocessable)?;
    Ok(match indexes.lookup(hub, &a)? {
        Lookup::Ready(x) => Ok(x),
        Lookup::Building(pr) => {
            let mut body = progress_json(id, &pr);
            body["status"] = json!("indexing");
            Err((StatusCode::ACCEPTED, Json(body)).into_response())
        }
    })
}

/// String contents are for admins only.
fn shows_strings(p: &Principal) -> bool {
    p.role >= Role::Admin
}

macro_rules! ready {
    ($e:expr) => {
        match $e? {
            Ok(x) => x,
            Err(pending) => return Ok(pending),
        }
    };
}

async fn classes(
    State(hub): State<Arc<Hub>>,
    Extension(p): Extension<Principal>,
    Extension(ix): Extension<Arc<HeapIndexes>>,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let x = ready!(explorer(&hub, &p, &ix, &id).await);
    let (offset, limit) = q.bounds();
    let body = json!({
        "total_size": x.total_size(),
        "node_count": x.node_count(),
        "strings_shown": shows_strings(&p),
        "classes": x.classes(offset, limit),
    });
    Ok(Json(body).into_response())
}

fn no_such<T>(what: &str, v: Option<T>) -> Result<T, ApiError> {
    v.ok_or_else(|| super::not_found(format!("no such {what} in this snapshot")))
}

async fn instances(
    State(hub): State<Arc<Hub>>,
    Extension(p): Extension<Principal>,
    Extension(ix): Extension<Arc<HeapIndexes>>,
    Path((id, index)): Path<(String, u32)>,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let x = ready!(explorer(&hub, &p, &ix, &id).await);
    let (offset, limit) = q.bounds();
    Ok(Json(no_such("class", x.instances(index, offset, limit, shows_strings(&p)))?).into_response())
}

async fn node(
    State(hub): State<Arc<Hub>>,
    Extension(p): Extension<Principal>,
    Extension(ix): Extension<Arc<HeapIndexes>>,
    Path((id, node)): Path<(String, u32)>,
) -> Result<Response, ApiError> {
    let x = ready!(explorer(&hub, &p, &ix, &id).await);
    let s = shows_strings(&p);
    let body = json!({
        "node": no_such("object", x.node(node, s))?,
        "retainers": x.retainers(node, 0, DEFAULT_PAGE, s),
        "references": x.references(node, 0, DEFAULT_PAGE, s),
        "dominated": x.dominated(node, 0, DEFAULT_PAGE, s),
    });
    Ok(Json(body).into_response())
}

async fn node_list(
    State(hub): State<Arc<Hub>>,
    Extension(p): Extension<Principal>,
    Extension(ix): Extension<Arc<HeapIndexes>>,
    Path((id, node, list)): Path<(String, u32, String)>,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let x = ready!(explorer(&hub, &p, &ix, &id).await);
    let (offset, limit) = q.bounds();
    let s = shows_strings(&p);
    let body = match list.as_str() {
        "retainers" => json!(no_such("object", x.retainers(node, offset, limit, s))?),
        "references" => json!(no_such("object", x.references(node, offset, limit, s))?),
        "dominated" => json!(no_such::<Page<_>>("object", x.dominated(node, offset, limit, s))?),
        other => return Err(super::not_found(format!("no list {other} (retainers, references or dominated)"))),
    };
    Ok(Json(body).into_response())
}

async fn compare(
    State(hub): State<Arc<Hub>>,
    Extension(p): Extension<Principal>,
    Extension(ix): Extension<Arc<HeapIndexes>>,
    Path((id, base)): Path<(String, String)>,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let (c, a, b) = ready!(comparison(&hub, &p, &ix, &id, &base).await);
    let (offset, limit) = q.bounds();
    let body = json!({
        "artifact": a.id,
        "base": b.id,
        // V8 ids only match within one process: across two, every object is "new".
        "same_process": a.process_id == b.process_id,
        "total_size_delta": c.total_size_delta,
        "new_count": c.new_count,
        "new_size": c.new_size,
        "deleted_count": c.deleted_count,
        "deleted_size": c.deleted_size,
        "classes": c.rows(offset, limit),
    });
    Ok(Json(body).into_response())
}

async fn compare_new(
    State(hub): State<Arc<Hub>>,
    Extension(p): Extension<Principal>,
    Extension(ix): Extension<Arc<HeapIndexes>>,
    Path((id, base, index)): Path<(String, String, u32)>,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let (c, _, _) = ready!(comparison(&hub, &p, &ix, &id, &base).await);
    let x = ready!(explorer(&hub, &p, &ix, &id).await);
    let (offset, limit) = q.bounds();
    Ok(Json(no_such("class", c.new_instances(&x, index, offset, limit, shows_strings(&p)))?).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lru_evicts_the_least_recently_used_within_its_budget() {
        let mut lru: Lru<u8> = Lru::new(100, 3);
        assert!(lru.insert("a", 1, 40).is_empty());
        assert!(lru.insert("b", 2, 40).is_empty());
        assert_eq!(lru.get("a"), Some(1)); // b is now the oldest
        assert_eq!(lru.insert("c", 3, 40), vec!["b".to_string()]);
        assert_eq!(lru.get("b"), None);
        // One value bigger than the budget stays on its own.
        let evicted = lru.insert("huge", 4, 500);
        assert_eq!(evicted.len(), 2);
        assert_eq!(lru.get("huge"), Some(4));
        // The count is bounded too.
        let mut small: Lru<u8> = Lru::new(u64::MAX, 2);
        small.insert("x", 0, 0);
        small.insert("y", 0, 0);
        assert_eq!(small.insert("z", 0, 0), vec!["x".to_string()]);
        // Free entries (indexes being built) neither make room nor are evicted for it.
        let mut building: Lru<u8> = Lru::new(10, 8);
        building.insert("ready", 1, 50);
        assert!(building.insert("placeholder", 0, 0).is_empty(), "a free entry evicts nothing");
        assert!(building.insert("other", 2, 50).contains(&"ready".to_string()));
        assert_eq!(building.get("placeholder"), Some(0), "the free one stays");
        small.remove("z");
        assert_eq!(small.get("z"), None);
    }
}
