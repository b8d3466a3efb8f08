//! Comparing two profiles of the same program: a differential flame graph (inferno's
//! differential folding: every stack carries its weight before and after, the graph is drawn with
//! the *after* shape and coloured red where a frame grew, blue where it shrank) and the list of
//! functions that got hotter, hottest first.
//!
//! The two profiles may differ in length or load, so the comparison is made on shares of the
//! total: the before profile is normalized to the after profile's total (inferno's `normalize`),
//! and the function list compares percentages.

use std::collections::HashMap;
use std::io::Write;

use inferno::differential;
use inferno::flamegraph::{self, Options};

use crate::error::FlameError;
use crate::folded::parse_line;
use crate::pipeline::FoldOutput;

/// How one function's share of the profile changed between two profiles.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FunctionDelta {
    /// The frame's label as in the flame graph (name and location).
    pub function: String,
    /// Share of all samples (or bytes) with this function on top of the stack, before and after (0–100).
    pub self_before: f64,
    pub self_after: f64,
    /// `self_after - self_before`, in percentage points: what the list is sorted by.
    pub self_delta: f64,
    /// Share of samples with this function anywhere on the stack, before and after (0–100).
    pub total_before: f64,
    pub total_after: f64,
}

/// Folded text with two counts per line (`stack before after`), the input of a differential graph.
pub fn differential_folded(before: &FoldOutput, after: &FoldOutput) -> Result<Vec<u8>, FlameError> {
    if before.summary.total == 0 || after.summary.total == 0 {
        return Err(FlameError::NoSamples);
    }
    let opts = differential::Options { normalize: true, strip_hex: false };
    let mut out = Vec::new();
    differential::from_readers(opts, &before.folded[..], &after.folded[..], &mut out)
        .map_err(|e| FlameError::io("folding the two profiles", e))?;
    Ok(out)
}

/// Renders the differential flame graph of `before` → `after` as SVG on `out`.
pub fn render_differential_svg<W: Write>(
    before: &FoldOutput,
    after: &FoldOutput,
    title: &str,
    out: W,
) -> Result<(), FlameError> {
    let folded = differential_folded(before, after)?;
    let text = String::from_utf8_lossy(&folded);
    let mut o = Options::default();
    o.title = title.to_string();
    o.subtitle = Some("red: grew, blue: shrank (shares of all samples; the shape is the second profile)".into());
    o.count_name = after.count_name.to_string();
    o.hash = true;
    o.min_width = 0.1;
    flamegraph::from_lines(&mut o, text.lines(), out).map_err(|e| match e.kind() {
        std::io::ErrorKind::InvalidData => FlameError::NoSamples,
        _ => FlameError::Render(e),
    })
}

/// Per-function self and total shares of one profile (percent of its total weight).
fn shares(fold: &FoldOutput) -> HashMap<String, (f64, f64)> {
    let total = fold.summary.total.max(1) as f64;
    let mut weights: HashMap<String, (u64, u64)> = HashMap::new();
    let text = String::from_utf8_lossy(&fold.folded);
    for (stack, count) in text.lines().filter_map(parse_line) {
        let frames: Vec<&str> = stack.split(';').collect();
        if let Some(leaf) = frames.last() {
            weights.entry((*leaf).to_string()).or_default().0 += count;
        }
        // A recursive function counts once per stack in its total.
        let mut seen: Vec<&str> = Vec::with_capacity(frames.len());
        for f in frames {
            if !seen.contains(&f) {
                seen.push(f);
                weights.entry(f.to_string()).or_default().1 += count;
            }
        }
    }
    weights.into_iter().map(|(k, (s, t))| (k, (100.0 * s as f64 / total, 100.0 * t as f64 / total))).collect()
}

/// Functions whose self share grew the most first; at most `limit` of them, including those that
/// shrank (at the end) so the list also shows what got cooler.
pub fn hotter_functions(before: &FoldOutput, after: &FoldOutput, limit: usize) -> Vec<FunctionDelta> {
    let (b, a) = (shares(before), shares(after));
    let mut names: Vec<&String> = a.keys().chain(b.keys()).collect();
    names.sort();
    names.dedup();
    let mut out: Vec<FunctionDelta> = names
        .into_iter()
        .map(|name| {
            let (sb, tb) = b.get(name).copied().unwrap_or_default();
            let (sa, ta) = a.get(name).copied().unwrap_or_default();
            FunctionDelta {
                function: name.clone(),
                self_before: sb,
                self_after: sa,
                self_delta: sa - sb,
                total_before: tb,
                total_after: ta,
            }
        })
        .collect();
    out.sort_by(|x, y| y.self_delta.total_cmp(&x.self_delta).then_with(|| x.function.cmp(&y.function)));
    out.truncate(limit);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::fold_reader;
    use crate::InputFormat;

    fn folded(text: &str) -> FoldOutput {
        fold_reader(text.as_bytes(), Some(InputFormat::Folded)).expect("folded")
    }

    #[test]
    fn the_function_that_got_hotter_comes_first() {
        let before = folded("main;idle 90\nmain;work 10\n");
        let after = folded("main;idle 40\nmain;work 10\nmain;work;spin 50\n");
        let list = hotter_functions(&before, &after, 10);
        assert_eq!(list[0].function, "spin");
        assert!((list[0].self_delta - 50.0).abs() < 1e-9, "{list:?}");
        assert_eq!(list.last().map(|d| d.function.as_str()), Some("idle"), "cooler last");
        let work = list.iter().find(|d| d.function == "work").expect("work");
        assert!((work.total_after - 60.0).abs() < 1e-9 && (work.total_before - 10.0).abs() < 1e-9);
        assert_eq!(hotter_functions(&before, &after, 1).len(), 1);
    }

    #[test]
    fn differential_folding_normalizes_the_first_profile() {
        let before = folded("a;b 10\n");
        let after = folded("a;b 50\na;c 50\n");
        let text = String::from_utf8(differential_folded(&before, &after).expect("diff")).expect("utf8");
        assert!(text.contains("a;b 100 50"), "{text}");
        assert!(text.contains("a;c 0 50"), "{text}");
    }

    #[test]
    fn differential_svg_names_the_new_function() {
        let before = folded("main;idle 90\n");
        let after = folded("main;idle 40\nmain;uniqueHotter 60\n");
        let mut svg = Vec::new();
        render_differential_svg(&before, &after, "cmp", &mut svg).expect("render");
        let svg = String::from_utf8(svg).expect("utf8");
        assert!(svg.contains("uniqueHotter") && svg.contains("cmp"));
        let empty = folded("");
        assert!(matches!(render_differential_svg(&empty, &after, "x", std::io::sink()), Err(FlameError::NoSamples)));
    }
}
