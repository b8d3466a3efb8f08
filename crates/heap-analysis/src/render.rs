//! Plain-text tables of an [`Analysis`] or [`Diff`] for terminals (`perf-hub analyze FILE`).

use std::fmt::Write;

use crate::diff::Diff;
use crate::summary::{Analysis, ObjectReport, PathStep, SnapshotInfo, SuspectKind};

/// Rows of the constructor table shown in text output.
const TEXT_ROWS: usize = 30;

/// Human size: `512 B`, `1.5 KiB`, `3.2 MiB`, `1.1 GiB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// Signed human size: `+1.5 KiB`, `-200 B`.
pub fn human_delta(delta: i64) -> String {
    let sign = if delta < 0 { "-" } else { "+" };
    format!("{sign}{}", human_size(delta.unsigned_abs()))
}

fn snapshot_line(s: &SnapshotInfo) -> String {
    let mut line = format!(
        "{} file, {} nodes, {} edges, total heap {}",
        human_size(s.file_size),
        s.node_count,
        s.edge_count,
        human_size(s.total_size)
    );
    if s.unreachable_nodes > 0 {
        let _ = write!(line, " ({} nodes unreachable from the GC roots)", s.unreachable_nodes);
    }
    line
}

/// Retainer path as one line: `(GC roots) -[1]-> (Global handles) -keep-> Array@7`.
pub fn path_line(path: &[PathStep], truncated: bool) -> String {
    if path.is_empty() {
        return "(no retainer path)".into();
    }
    let mut out = String::new();
    for (i, step) in path.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        if truncated && i == 8 {
            out.push_str("… ");
        }
        let _ = write!(out, "-{}-> {}@{}", step.edge, step_label(step), step.id);
    }
    out
}

/// How a node is named in a path: class for objects, `name()` for functions, the node's own
/// name for internal and synthetic nodes.
fn step_label(step: &PathStep) -> String {
    match step.node_type.as_str() {
        "object" | "native" => step.class.clone(),
        "closure" => format!("{}()", step.name),
        "string" | "concatenated string" | "sliced string" => {
            format!("\"{}\"", truncate(&step.name, 30))
        }
        _ if !step.name.is_empty() => truncate(&step.name, 60),
        _ => step.class.clone(),
    }
}

fn object_lines(out: &mut String, i: usize, o: &ObjectReport) {
    let name = if o.name.is_empty() || o.name == o.class { String::new() } else { format!(" \"{}\"", o.name) };
    let _ = writeln!(
        out,
        "{:>3}. {}@{}{} ({})  retained {} ({:.2}%), self {}",
        i + 1,
        o.class,
        o.id,
        name,
        o.node_type,
        human_size(o.retained_size),
        o.retained_percent,
        human_size(o.self_size)
    );
    let _ = writeln!(out, "     path: {}", path_line(&o.path, o.path_truncated));
}

/// Text report of one snapshot.
pub fn render_analysis_text(a: &Analysis) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Heap snapshot: {}", snapshot_line(&a.snapshot));
    let _ = writeln!(out);
    let _ =
        writeln!(out, "Constructors by retained size (top {} of {}):", TEXT_ROWS.min(a.classes.len()), a.classes.len());
    let _ = writeln!(out, "{:>12} {:>7} {:>12} {:>10}  Constructor", "Retained", "%", "Shallow", "Count");
    for c in a.classes.iter().take(TEXT_ROWS) {
        let _ = writeln!(
            out,
            "{:>12} {:>6.2}% {:>12} {:>10}  {}",
            human_size(c.retained_size),
            c.retained_percent,
            human_size(c.shallow_size),
            c.count,
            located(&c.name, c.location)
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "Largest objects by retained size:");
    for (i, o) in a.largest_objects.iter().enumerate() {
        object_lines(&mut out, i, o);
    }
    let _ = writeln!(out);
    if a.leak_suspects.is_empty() {
        let _ = writeln!(out, "Leak suspects: none");
    } else {
        let _ = writeln!(out, "Leak suspects:");
        for s in &a.leak_suspects {
            let kind = match s.kind {
                SuspectKind::Object => "object",
                SuspectKind::Class => "class",
            };
            let _ = writeln!(out, "  - [{kind}] {}", s.reason);
            if let Some(o) = &s.object {
                let _ = writeln!(out, "    path: {}", path_line(&o.path, o.path_truncated));
            }
        }
    }
    out
}

/// Text report of a diff.
pub fn render_diff_text(d: &Diff) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Before: {}", snapshot_line(&d.before));
    let _ = writeln!(out, "After:  {}", snapshot_line(&d.after));
    let _ = writeln!(
        out,
        "Heap {}; {} new objects ({}), {} deleted ({})",
        human_delta(d.total_size_delta),
        d.new_objects_count,
        human_size(d.new_objects_size),
        d.deleted_objects_count,
        human_size(d.deleted_objects_size)
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Classes that changed, most grown first (top {} of {}):",
        TEXT_ROWS.min(d.classes.len()),
        d.classes.len()
    );
    let _ = writeln!(
        out,
        "{:>12} {:>12} {:>9} {:>9} {:>9}  Constructor",
        "ΔRetained", "ΔShallow", "ΔCount", "New", "Deleted"
    );
    for c in d.classes.iter().take(TEXT_ROWS) {
        let _ = writeln!(
            out,
            "{:>12} {:>12} {:>+9} {:>9} {:>9}  {}",
            human_delta(c.retained_delta),
            human_delta(c.shallow_delta),
            c.count_delta,
            c.new_count,
            c.deleted_count,
            located(&c.name, c.location)
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "New objects by retained size:");
    for (i, o) in d.new_objects.iter().enumerate() {
        object_lines(&mut out, i, o);
    }
    out
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut t: String = s.chars().take(max).collect();
    t.push('…');
    t
}

/// A constructor name, with its script location when one name has several.
fn located(name: &str, location: Option<crate::summary::Location>) -> String {
    match location {
        Some(l) => format!("{} (script {} line {} column {})", truncate(name, 100), l.script_id, l.line, l.column),
        None => truncate(name, 100),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(human_size(10), "10 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(3 << 30), "3.0 GiB");
        assert_eq!(human_delta(-2048), "-2.0 KiB");
    }
}
