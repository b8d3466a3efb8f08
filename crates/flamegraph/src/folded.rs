//! Folded stacks: an ordered map `stack -> weight`, frame labels, and folded-text parsing.

use std::collections::BTreeMap;
use std::io::{self, BufRead, Write};

/// Folded stacks, keyed by the `;`-joined frames (root first). Sorted, so output is stable.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Folded {
    stacks: BTreeMap<String, u64>,
}

/// Counts of a folded text.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FoldedSummary {
    /// Distinct stacks (lines).
    pub stacks: usize,
    /// Sum of all weights (samples or bytes).
    pub total: u64,
}

impl Folded {
    /// Adds `weight` to the stack made of `frames` (root first). Zero weights are ignored.
    pub fn add<S: AsRef<str>>(&mut self, frames: &[S], weight: u64) {
        if weight == 0 || frames.is_empty() {
            return;
        }
        let mut key = String::new();
        for (i, frame) in frames.iter().enumerate() {
            if i > 0 {
                key.push(';');
            }
            key.push_str(frame.as_ref());
        }
        let slot = self.stacks.entry(key).or_insert(0);
        *slot = slot.saturating_add(weight);
    }

    /// Iterates `(stack, weight)` in sorted order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.stacks.iter().map(|(k, v)| (k.as_str(), *v))
    }

    /// Number of distinct stacks and their total weight.
    pub fn summary(&self) -> FoldedSummary {
        FoldedSummary { stacks: self.stacks.len(), total: self.stacks.values().fold(0u64, |a, b| a.saturating_add(*b)) }
    }

    /// Writes `stack count` lines.
    pub fn write_to<W: Write>(&self, mut out: W) -> io::Result<()> {
        for (stack, weight) in &self.stacks {
            writeln!(out, "{stack} {weight}")?;
        }
        out.flush()
    }

    /// The folded text as bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Writing to a Vec cannot fail.
        let _ = self.write_to(&mut out);
        out
    }
}

/// Makes a frame label safe for folded text: `;` separates frames and a line is one stack.
pub(crate) fn sanitize_label(label: &str) -> String {
    label
        .chars()
        .map(|c| match c {
            ';' => ':',
            '\n' | '\r' | '\t' => ' ',
            c => c,
        })
        .collect()
}

/// Splits a folded line into `(stack, count)`; `None` if it is not one.
pub(crate) fn parse_line(line: &str) -> Option<(&str, u64)> {
    let line = line.trim_end();
    let (stack, count) = line.rsplit_once(' ')?;
    let count = count.parse::<u64>().ok()?;
    let stack = stack.trim_end();
    if stack.is_empty() {
        return None;
    }
    Some((stack, count))
}

/// True if the first meaningful lines of `text` are folded-stack lines.
pub(crate) fn looks_folded(text: &str) -> bool {
    let mut seen = 0;
    for line in text.lines().map(str::trim_end) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if parse_line(line).is_none() {
            return false;
        }
        seen += 1;
        if seen >= 20 {
            break;
        }
    }
    seen > 0
}

/// Copies folded text through, dropping blank/comment/malformed lines, and sums it up.
pub(crate) fn pass_through<R: BufRead, W: Write>(mut input: R, mut out: W) -> io::Result<FoldedSummary> {
    let mut summary = FoldedSummary::default();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        if input.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        let line = String::from_utf8_lossy(&buf);
        if line.trim_start().starts_with('#') {
            continue;
        }
        if let Some((stack, count)) = parse_line(&line) {
            writeln!(out, "{stack} {count}")?;
            summary.stacks += 1;
            summary.total = summary.total.saturating_add(count);
        }
    }
    out.flush()?;
    Ok(summary)
}

/// Sums up folded text (e.g. inferno's collapser output).
pub(crate) fn summarize(folded: &[u8]) -> FoldedSummary {
    let text = String::from_utf8_lossy(folded);
    let mut summary = FoldedSummary::default();
    for (_, count) in text.lines().filter_map(parse_line) {
        summary.stacks += 1;
        summary.total = summary.total.saturating_add(count);
    }
    summary
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_merges_and_sorts() {
        let mut f = Folded::default();
        f.add(&["b", "c"], 2);
        f.add(&["a"], 1);
        f.add(&["b", "c"], 3);
        f.add(&["z"], 0);
        assert_eq!(String::from_utf8(f.to_bytes()).unwrap(), "a 1\nb;c 5\n");
        assert_eq!(f.summary(), FoldedSummary { stacks: 2, total: 6 });
    }

    #[test]
    fn labels_are_sanitized() {
        assert_eq!(sanitize_label("a;b\nc"), "a:b c");
    }

    #[test]
    fn parse_and_detect_folded() {
        assert_eq!(parse_line("main;foo (x.js:3) 12\n"), Some(("main;foo (x.js:3)", 12)));
        assert_eq!(parse_line("main;foo"), None);
        assert_eq!(parse_line(" 12"), None);
        assert!(looks_folded("# comment\na;b 1\na;c 2\n"));
        assert!(!looks_folded("a;b 1\nnot folded\n"));
        assert!(!looks_folded(""));
    }

    #[test]
    fn pass_through_filters_and_counts() {
        let mut out = Vec::new();
        let s = pass_through(&b"a;b 1\n\n# c\nbad line\nc 4\n"[..], &mut out).unwrap();
        assert_eq!(out, b"a;b 1\nc 4\n");
        assert_eq!(s, FoldedSummary { stacks: 2, total: 5 });
        assert_eq!(summarize(&out), s);
    }
}
