//! JSON plumbing shared by the V8 formats: a nesting-depth guard, parsing on a thread with a
//! large stack (heap profiles nest two JSON levels per stack frame), V8 call frames and labels.

use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::error::FlameError;
use crate::folded::sanitize_label;

/// Deepest JSON nesting we accept (~10 000 stack frames in a heap profile).
pub(crate) const MAX_DEPTH: usize = 20_000;
/// Stack for the parsing thread; serde recursion uses well under 8 KiB per level.
const PARSE_STACK: usize = 256 << 20;

/// A V8 `Runtime.CallFrame` (as in `.cpuprofile` and `.heapprofile`).
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CallFrame {
    #[serde(default)]
    pub function_name: String,
    #[serde(default)]
    pub url: String,
    /// 0-based; -1 when unknown.
    #[serde(default = "minus_one")]
    pub line_number: i64,
}

fn minus_one() -> i64 {
    -1
}

impl CallFrame {
    /// `functionName (url:line)` with a 1-based line, `(anonymous)` for an empty name, and just
    /// the name when there is no url (`(program)`, `(garbage collector)`, native code).
    pub(crate) fn label(&self) -> String {
        let name = if self.function_name.is_empty() { "(anonymous)" } else { self.function_name.as_str() };
        let label = match (self.url.is_empty(), self.line_number >= 0) {
            (true, _) => name.to_string(),
            (false, true) => format!("{name} ({}:{})", self.url, self.line_number + 1),
            (false, false) => format!("{name} ({})", self.url),
        };
        sanitize_label(&label)
    }

    pub(crate) fn is_root(&self) -> bool {
        self.function_name == "(root)"
    }
}

/// Maximum nesting depth of `{`/`[` outside strings (a cheap pre-scan before recursive parsing).
pub(crate) fn nesting_depth(bytes: &[u8]) -> usize {
    let (mut depth, mut max, mut in_str, mut escaped) = (0usize, 0usize, false, false);
    for &b in bytes {
        if in_str {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'{' | b'[' => {
                depth += 1;
                max = max.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// Parses `bytes` as `T` without serde_json's 128-level limit, on a thread with a big stack,
/// after checking the depth stays under [`MAX_DEPTH`]. `f` runs on that thread too, so deep
/// values are also dropped there.
pub(crate) fn parse_deep<T, R, F>(bytes: &[u8], format: &'static str, f: F) -> Result<R, FlameError>
where
    T: DeserializeOwned,
    R: Send,
    F: FnOnce(T) -> Result<R, FlameError> + Send,
{
    let depth = nesting_depth(bytes);
    if depth > MAX_DEPTH {
        return Err(FlameError::invalid(format, format!("JSON nesting depth {depth} exceeds {MAX_DEPTH}")));
    }
    let work = move || -> Result<R, FlameError> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        de.disable_recursion_limit();
        let value = T::deserialize(&mut de).map_err(|source| FlameError::Json { format, source })?;
        de.end().map_err(|source| FlameError::Json { format, source })?;
        f(value)
    };
    std::thread::scope(|scope| {
        let handle = std::thread::Builder::new()
            .name("flamegraph-json".into())
            .stack_size(PARSE_STACK)
            .spawn_scoped(scope, work)
            .map_err(|e| FlameError::io("spawning the JSON parsing thread", e))?;
        match handle.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(name: &str, url: &str, line: i64) -> CallFrame {
        CallFrame { function_name: name.into(), url: url.into(), line_number: line }
    }

    #[test]
    fn labels() {
        assert_eq!(frame("foo", "file:///a.js", 9).label(), "foo (file:///a.js:10)");
        assert_eq!(frame("", "/a.js", 0).label(), "(anonymous) (/a.js:1)");
        assert_eq!(frame("(program)", "", -1).label(), "(program)");
        assert_eq!(frame("f", "/a.js", -1).label(), "f (/a.js)");
        assert_eq!(frame("a;b", "", -1).label(), "a:b");
    }

    #[test]
    fn depth_ignores_strings() {
        assert_eq!(nesting_depth(br#"{"a":[1,{"b":"[[[{{"}]}"#), 3);
        assert_eq!(nesting_depth(br#""\"[""#), 0);
    }

    #[test]
    fn deep_json_parses_and_too_deep_is_refused() {
        let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
        let r = parse_deep::<serde_json::Value, _, _>(deep.as_bytes(), "test", |_| Ok(()));
        assert!(r.is_ok(), "{r:?}");
        let too_deep = "[".repeat(MAX_DEPTH + 1);
        let r = parse_deep::<serde_json::Value, _, _>(too_deep.as_bytes(), "test", |_| Ok(()));
        assert!(matches!(r, Err(FlameError::InvalidProfile { .. })), "{r:?}");
    }
}
