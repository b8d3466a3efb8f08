//! Pagination of the list routes: a bare JSON array of at most `limit` items (default
//! [`DEFAULT_LIMIT`], at most [`MAX_LIMIT`]: a larger `limit` is a 400, not silently cut) and,
//! when more exist, `Link: <…&cursor=…>; rel="next"`. The cursor is opaque to clients (hex of
//! the JSON of the last item's sort key); the store continues after it with a keyset query,
//! so a page costs the same at any depth and nothing is loaded whole.

use super::ApiError;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde::Serialize;

pub const DEFAULT_LIMIT: u32 = 1000;
pub const MAX_LIMIT: u32 = 10_000;
/// Longest cursor accepted (ours are well under it).
const MAX_CURSOR: usize = 1024;

/// The `limit` query parameter, checked.
pub fn limit(requested: Option<u32>) -> Result<u32, ApiError> {
    match requested.unwrap_or(DEFAULT_LIMIT) {
        n @ 1..=MAX_LIMIT => Ok(n),
        n => Err(ApiError::BadRequest(format!("limit must be between 1 and {MAX_LIMIT}, got {n}"))),
    }
}

pub fn encode_cursor<K: Serialize>(key: &K) -> String {
    hex::encode(serde_json::to_vec(key).unwrap_or_default())
}

/// The `cursor` query parameter, decoded; a malformed one is a 400.
pub fn decode_cursor<K: DeserializeOwned>(cursor: Option<&str>) -> Result<Option<K>, ApiError> {
    let Some(c) = cursor else { return Ok(None) };
    let bad = || ApiError::BadRequest("malformed cursor (use the Link header's URL as it is)".into());
    if c.len() > MAX_CURSOR {
        return Err(bad());
    }
    let bytes = hex::decode(c).map_err(|_| bad())?;
    serde_json::from_slice(&bytes).map(Some).map_err(|_| bad())
}

/// A page: `rows` holds up to `limit + 1` rows (the extra one says more exist); `key` gives a
/// row's cursor, `item` what the client sees of it; `base` is the route with its other query
/// parameters (`path?a=b&` or `path?`), to which `limit` and `cursor` are added.
pub fn page<T, K: Serialize, V: Serialize>(
    mut rows: Vec<T>,
    limit: u32,
    key: impl Fn(&T) -> K,
    item: impl FnMut(T) -> V,
    base: &str,
) -> Result<Response, ApiError> {
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next = rows.last().filter(|_| more).map(|last| encode_cursor(&key(last)));
    let items: Vec<V> = rows.into_iter().map(item).collect();
    let mut resp = Json(serde_json::to_value(&items)?).into_response();
    if let Some(cursor) = next {
        let link = format!("<{base}limit={limit}&cursor={cursor}>; rel=\"next\"");
        if let Ok(v) = HeaderValue::from_str(&link) {
            resp.headers_mut().insert(header::LINK, v);
        }
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_cursors() {
        assert_eq!(limit(None).expect("default"), DEFAULT_LIMIT);
        assert!(limit(Some(0)).is_err() && limit(Some(MAX_LIMIT + 1)).is_err());
        let c = encode_cursor(&("2026-01-01T00:00:00.000Z", "ab"));
        let back: Option<(String, String)> = decode_cursor(Some(&c)).expect("decodes");
        assert_eq!(back, Some(("2026-01-01T00:00:00.000Z".into(), "ab".into())));
        assert!(decode_cursor::<(String, String)>(Some("zz")).is_err());
        assert!(decode_cursor::<i64>(Some(&"0".repeat(5000))).is_err());
    }
}
