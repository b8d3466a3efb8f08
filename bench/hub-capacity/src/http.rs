//! A tiny HTTP/1.1 client for the hub's API: one request per connection (`Connection: close`),
//! content-length or chunked bodies, everything bounded in time and size. Enough to time
//! `GET /api/processes` and `POST …/commands` without pulling in an HTTP stack.

use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response body accepted (a list of 100k processes is ~50 MB).
const MAX_RESPONSE_BYTES: usize = 512 << 20;

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// From connect to the last byte of the body.
    pub elapsed: Duration,
}

impl Response {
    pub fn header<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers.iter().filter(move |(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Result<serde_json::Value, String> {
        serde_json::from_slice(&self.body).map_err(|e| format!("HTTP {}: body is not JSON: {e}", self.status))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body[..self.body.len().min(500)]).into_owned()
    }
}

pub struct Client {
    pub addr: SocketAddr,
    pub token: String,
}

impl Client {
    pub async fn get(&self, path: &str, timeout: Duration) -> Result<Response, String> {
        self.request("GET", path, None, timeout).await
    }

    pub async fn post_json(&self, path: &str, body: &str, timeout: Duration) -> Result<Response, String> {
        self.request("POST", path, Some(body), timeout).await
    }

    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        timeout: Duration,
    ) -> Result<Response, String> {
        let what = format!("{method} {path}");
        tokio::time::timeout(timeout, self.request_inner(method, path, body))
            .await
            .map_err(|_| format!("{what}: no complete response within {timeout:?}"))?
            .map_err(|e| format!("{what}: {e}"))
    }

    async fn request_inner(&self, method: &str, path: &str, body: Option<&str>) -> Result<Response, String> {
        let t0 = Instant::now();
        let mut s = TcpStream::connect(self.addr).await.map_err(|e| format!("connect {}: {e}", self.addr))?;
        let _ = s.set_nodelay(true);
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nAccept: application/json\r\nConnection: close\r\n",
            self.addr, self.token
        );
        if let Some(b) = body {
            req.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", b.len()));
        }
        req.push_str("\r\n");
        if let Some(b) = body {
            req.push_str(b);
        }
        s.write_all(req.as_bytes()).await.map_err(|e| format!("send: {e}"))?;
        let mut raw = Vec::with_capacity(64 * 1024);
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = s.read(&mut buf).await.map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                break;
            }
            raw.extend_from_slice(&buf[..n]);
            if raw.len() > MAX_RESPONSE_BYTES {
                return Err(format!("response larger than {MAX_RESPONSE_BYTES} bytes"));
            }
            // Stop as soon as a framed body is complete (don't rely on the server closing).
            if let Some(done) = complete_len(&raw) {
                raw.truncate(done);
                break;
            }
        }
        let elapsed = t0.elapsed();
        let mut r = parse(&raw)?;
        r.elapsed = elapsed;
        Ok(r)
    }
}

fn head_end(raw: &[u8]) -> Option<usize> {
    raw.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

fn parse_head(head: &str) -> Result<(u16, Vec<(String, String)>), String> {
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line '{status_line}'"))?;
    let headers =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect();
    Ok((status, headers))
}

fn is_chunked(headers: &[(String, String)]) -> bool {
    headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked"))
}

fn content_length(headers: &[(String, String)]) -> Option<usize> {
    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("content-length")).and_then(|(_, v)| v.parse().ok())
}

/// Length of the whole response in `raw` once it is complete, if its body is framed.
fn complete_len(raw: &[u8]) -> Option<usize> {
    let end = head_end(raw)?;
    let (_, headers) = parse_head(std::str::from_utf8(&raw[..end]).ok()?).ok()?;
    if is_chunked(&headers) {
        let (_, used) = dechunk(&raw[end..]).ok()??;
        Some(end + used)
    } else {
        let len = content_length(&headers)?;
        (raw.len() >= end + len).then_some(end + len)
    }
}

/// Decodes a chunked body: `Ok(None)` while incomplete, else the body and the bytes consumed.
fn dechunk(mut b: &[u8]) -> Result<Option<(Vec<u8>, usize)>, String> {
    let total = b.len();
    let mut out = Vec::new();
    loop {
        let Some(nl) = b.windows(2).position(|w| w == b"\r\n") else { return Ok(None) };
        let size_text = std::str::from_utf8(&b[..nl]).map_err(|_| "bad chunk size")?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| format!("bad chunk size '{size_text}'"))?;
        b = &b[nl + 2..];
        if size == 0 {
            // Trailers (none expected) end with an empty line.
            let Some(end) = b.windows(2).position(|w| w == b"\r\n") else { return Ok(None) };
            b = &b[end + 2..];
            return Ok(Some((out, total - b.len())));
        }
        if b.len() < size + 2 {
            return Ok(None);
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

fn parse(raw: &[u8]) -> Result<Response, String> {
    let end = head_end(raw).ok_or("connection closed before the response head")?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| "response head is not UTF-8")?;
    let (status, headers) = parse_head(head)?;
    let rest = &raw[end..];
    let body = if is_chunked(&headers) {
        dechunk(rest)?.ok_or("truncated chunked body")?.0
    } else if let Some(len) = content_length(&headers) {
        if rest.len() < len {
            return Err(format!("truncated body: {} of {len} bytes", rest.len()));
        }
        rest[..len].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Response { status, headers, body, elapsed: Duration::ZERO })
}

/// The target of a `Link: <…>; rel="next"` header, as a path (an absolute URL loses its origin).
pub fn next_link<'a>(values: impl Iterator<Item = &'a str>) -> Option<String> {
    for v in values {
        for part in v.split(',') {
            let part = part.trim();
            let (Some(open), Some(close)) = (part.find('<'), part.find('>')) else { continue };
            if close <= open {
                continue;
            }
            let params = &part[close + 1..];
            let is_next = params.split(';').any(|p| {
                let p = p.trim().replace(' ', "");
                p == "rel=\"next\"" || p == "rel=next"
            });
            if !is_next {
                continue;
            }
            let target = &part[open + 1..close];
            let path = match target.find("://") {
                Some(i) => match target[i + 3..].find('/') {
                    Some(j) => &target[i + 3 + j..],
                    None => "/",
                },
                None => target,
            };
            return Some(path.to_string());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_and_chunked_bodies() {
        let raw = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nlink: </x?cursor=1>; rel=\"next\"\r\n\r\nhello";
        assert_eq!(complete_len(raw), Some(raw.len()));
        let r = parse(raw).expect("parse");
        assert_eq!((r.status, r.body.as_slice()), (200, &b"hello"[..]));
        assert_eq!(next_link(r.header("Link")).as_deref(), Some("/x?cursor=1"));

        let raw = b"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(complete_len(raw), Some(raw.len()));
        assert_eq!(complete_len(&raw[..raw.len() - 3]), None);
        let r = parse(raw).expect("parse");
        assert_eq!((r.status, r.body.as_slice()), (202, &b"abcde"[..]));
    }

    #[test]
    fn link_headers() {
        let v = ["<http://127.0.0.1:1/api/processes?limit=10&cursor=ab>; rel=\"next\", </p>; rel=\"prev\""];
        assert_eq!(next_link(v.into_iter()).as_deref(), Some("/api/processes?limit=10&cursor=ab"));
        assert_eq!(next_link(["</p>; rel=\"prev\""].into_iter()), None);
    }
}
