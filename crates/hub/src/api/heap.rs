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
//!   `GET …/heap/nodes/{node}/{retainers|references|dominated}?offset&limit` for more.
//!
//! Viewer and up; string contents only for admins (the contract: heap contents are admin-only),
//! everyone else sees `(string) @id` with its sizes. Indexes are cached least-recently-used
//! within [`CACHE_BUDGET_BYTES`].

use super::{visible_artifact, ApiError};
use crate::hub::Hub;
use crate::operators::{Principal, Role};
use crate::store::ArtifactRecord;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use perf_heap_analysis::explorer::Page;
use perf_heap_analysis::Explorer;
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Bytes of indexes kept at once (least recently used go first); one index bigger than this is
/// still kept while it is the only one.
pub const CACHE_BUDGET_BYTES: u64 = 2 << 30;
/// Snapshots remembered at once (indexes and failures).
const MAX_ENTRIES: usize = 16;
/// Items per page at most.
const MAX_PAGE: usize = 500;
const DEFAULT_PAGE: usize = 50;

pub fn viewer_routes() -> Router<Arc<Hub>> {
    Router::new()
        .route("/api/artifacts/{id}/heap/classes", get(classes))
        .route("/api/artifacts/{id}/heap/classes/{index}/instances", get(instances))
        .route("/api/artifacts/{id}/heap/nodes/{node}", get(node))
        .route("/api/artifacts/{id}/heap/nodes/{node}/{list}", get(node_list))
        .layer(Extension(Arc::new(HeapIndexes::default())))
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
    /// total fits (the new one stays). Returns the evicted keys.
    pub fn insert(&mut self, key: &str, value: T, bytes: u64) -> Vec<String> {
        self.tick += 1;
        self.entries.insert(key.to_string(), (value, bytes, self.tick));
        let mut evicted = Vec::new();
        loop {
            let total: u64 = self.entries.values().map(|(_, b, _)| *b).sum();
            if (total <= self.budget && self.entries.len() <= self.max_entries) || self.entries.len() <= 1 {
                return evicted;
            }
            let oldest = self.entries.iter().filter(|(k, _)| *k != key).min_by_key(|(_, (_, _, used))| *used);
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

/// The cached indexes, by artifact id.
pub struct HeapIndexes {
    slots: Mutex<Lru<Slot>>,
    /// Building an index is CPU- and memory-heavy: one at a time.
    build: tokio::sync::Semaphore,
}

impl Default for HeapIndexes {
    fn default() -> Self {
        HeapIndexes {
            slots: Mutex::new(Lru::new(CACHE_BUDGET_BYTES, MAX_ENTRIES)),
            build: tokio::sync::Semaphore::new(1),
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
            let stage = pr.stage.lock().map(|s| *s).unwrap_or("indexing");
            let (done, total) = (pr.done.load(Ordering::Relaxed), pr.total.load(Ordering::Relaxed));
            let body = json!({"status": "indexing", "stage": if stage.is_empty() { "queued" } else { stage }, "done": done, "total": total});
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
        small.remove("z");
        assert_eq!(small.get("z"), None);
    }
}
