//! Input format detection from content.
//!
//! JSON with `nodes` → `.cpuprofile`; JSON with `head` → `.heapprofile`; text whose first
//! record is a `perf script` event line followed by a stack line → perf script; `stack count`
//! lines → folded.

use inferno::collapse::perf::Folder;
use inferno::collapse::Collapse;
use serde::de::IgnoredAny;
use serde::Deserialize;

use crate::folded::looks_folded;
use crate::json::parse_deep;

/// The profile formats we fold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InputFormat {
    /// V8 CPU profile JSON (`.cpuprofile`), weight = samples.
    CpuProfile,
    /// V8 sampling heap profile JSON (`.heapprofile`), weight = bytes.
    HeapProfile,
    /// `perf script` text, weight = samples.
    PerfScript,
    /// Folded stacks (`a;b;c 12`), passed through.
    Folded,
}

impl InputFormat {
    /// What the weights count: `"bytes"` for heap profiles, else `"samples"`.
    pub fn count_name(self) -> &'static str {
        match self {
            InputFormat::HeapProfile => "bytes",
            _ => "samples",
        }
    }

    /// A default flame graph title for the format.
    pub fn default_title(self) -> &'static str {
        match self {
            InputFormat::CpuProfile => "CPU flame graph (V8 cpuprofile)",
            InputFormat::HeapProfile => "Allocation flame graph (V8 sampling heap profile)",
            InputFormat::PerfScript => "CPU flame graph (perf)",
            InputFormat::Folded => "Flame graph",
        }
    }
}

/// What the first bytes say, before a JSON document is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sniff {
    Json,
    Text(InputFormat),
    Unknown,
}

/// Sniffs a prefix of the input (a few KiB is enough; a cut last line is ignored).
pub(crate) fn sniff(prefix: &[u8]) -> Sniff {
    let prefix = prefix.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(prefix);
    let first = prefix.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'{') {
        return Sniff::Json;
    }
    let complete = match prefix.iter().rposition(|&b| b == b'\n') {
        Some(end) if end + 1 < prefix.len() => &prefix[..=end],
        _ => prefix,
    };
    let text = String::from_utf8_lossy(complete);
    if Folder::default().is_applicable(&text) == Some(true) {
        Sniff::Text(InputFormat::PerfScript)
    } else if looks_folded(&text) {
        Sniff::Text(InputFormat::Folded)
    } else {
        Sniff::Unknown
    }
}

#[derive(Deserialize)]
struct Probe {
    nodes: Option<IgnoredAny>,
    head: Option<IgnoredAny>,
}

/// Which V8 JSON profile a complete document is, if any.
pub(crate) fn json_kind(json: &[u8]) -> Option<InputFormat> {
    let probe = parse_deep::<Probe, _, _>(json, "JSON", |p| Ok((p.nodes.is_some(), p.head.is_some())));
    match probe {
        Ok((true, _)) => Some(InputFormat::CpuProfile),
        Ok((false, true)) => Some(InputFormat::HeapProfile),
        _ => None,
    }
}

/// Detects the format of `content` (the whole document for JSON; a prefix is enough for text).
pub fn detect_format(content: &[u8]) -> Option<InputFormat> {
    match sniff(content) {
        Sniff::Json => json_kind(content),
        Sniff::Text(format) => Some(format),
        Sniff::Unknown => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PERF: &str = "node 1234 [001] 100.000001:   10101010 cpu-clock:pppH: \n\
        \t    7f0000001000 spin (/tmp/perf-1234.map)\n\
        \t    55550000abcd v8::internal::Execution::Call (/usr/bin/node)\n\
        \n";

    #[test]
    fn detects_each_format() {
        assert_eq!(detect_format(br#" {"nodes":[],"samples":[]}"#), Some(InputFormat::CpuProfile));
        assert_eq!(detect_format(br#"{"head":{"children":[]}}"#), Some(InputFormat::HeapProfile));
        assert_eq!(detect_format(PERF.as_bytes()), Some(InputFormat::PerfScript));
        assert_eq!(detect_format(b"main;foo 3\nmain;bar 1\n"), Some(InputFormat::Folded));
    }

    #[test]
    fn rejects_unknown() {
        assert_eq!(detect_format(br#"{"other":1}"#), None);
        assert_eq!(detect_format(b"{ not json"), None);
        assert_eq!(detect_format(b"hello world\n"), None);
        assert_eq!(detect_format(b""), None);
    }

    #[test]
    fn cut_last_line_is_ignored() {
        let mut cut = PERF.repeat(3).into_bytes();
        cut.extend_from_slice(b"node 1234 [001] 100.0");
        assert_eq!(detect_format(&cut), Some(InputFormat::PerfScript));
    }
}
