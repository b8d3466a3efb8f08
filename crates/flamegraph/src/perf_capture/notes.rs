//! The human-readable remarks on a capture: perf warnings, and how much of it is JS
//! (named through a perf map, or unnamed JIT code).

use super::process::JsSymbols;

/// perf warnings worth passing on (lost samples, unreadable data, a late script failure).
pub(crate) fn perf_warnings(record_err: &str, script_err: &str, failed_late: bool) -> Vec<String> {
    let mut notes: Vec<String> = record_err
        .lines()
        .chain(script_err.lines())
        .filter(|l| l.contains("lost") || l.contains("LOST") || l.contains("Warning"))
        .take(5)
        .map(|l| format!("perf: {}", l.trim()))
        .collect();
    if failed_late {
        notes.push("perf script exited with an error after producing stacks; the graph may be incomplete".into());
    }
    notes
}

/// Samples with JIT frames: `(named, unnamed)`. inferno marks frames from a perf map `_[j]`;
/// without the map file perf reports the JIT region itself, shown as `[perf-PID.map]_[j]`.
pub(crate) fn jit_samples(folded: &[u8]) -> (u64, u64) {
    let (mut named, mut unnamed) = (0u64, 0u64);
    for line in String::from_utf8_lossy(folded).lines() {
        let Some((stack, count)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(count) = count.parse::<u64>() else {
            continue;
        };
        let jit = stack.split(';').filter(|f| f.ends_with("_[j]"));
        let (mut has_named, mut has_unnamed) = (false, false);
        for frame in jit {
            if frame.starts_with('[') {
                has_unnamed = true;
            } else {
                has_named = true;
            }
        }
        if has_named {
            named += count;
        } else if has_unnamed {
            unnamed += count;
        }
    }
    (named, unnamed)
}

pub(crate) fn js_share_notes(js: JsSymbols, (named, unnamed): (u64, u64), total: u64) -> Vec<String> {
    let pct = |n: u64| n as f64 * 100.0 / total.max(1) as f64;
    let mut notes = Vec::new();
    if named > 0 {
        notes.push(format!("{named} of {total} samples ({:.0}%) include named JS frames", pct(named)));
    } else if js.symbolized() {
        notes.push("no named JS frames were sampled: the process spent the capture in native code or idle".into());
    }
    if unnamed > 0 {
        notes.push(format!(
            "{unnamed} of {total} samples ({:.0}%) are in JIT-compiled JS without names \
             ([perf-PID.map] frames)",
            pct(unnamed)
        ));
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_js_samples() {
        let folded = b"node;a;spin_[j] 5\nnode;b 3\nnode;x_[j];y 2\nnode;[perf-9.map]_[j] 4\n";
        assert_eq!(jit_samples(folded), (7, 4));
        let notes = js_share_notes(JsSymbols::PerfMap, (7, 0), 10);
        assert!(notes[0].contains("70%"), "{notes:?}");
        let notes = js_share_notes(JsSymbols::NotEnabled, (0, 4), 10);
        assert_eq!(notes.len(), 1);
        assert!(notes[0].contains("without names"), "{notes:?}");
        assert!(js_share_notes(JsSymbols::NotEnabled, (0, 0), 10).is_empty());
    }

    #[test]
    fn passes_on_perf_warnings() {
        let notes = perf_warnings("Warning:\nProcessed 10 events and lost 2 chunks!\n", "", true);
        assert_eq!(notes.len(), 3, "{notes:?}");
        assert!(notes[2].contains("incomplete"));
    }
}
