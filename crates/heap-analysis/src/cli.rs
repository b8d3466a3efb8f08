//! Command line of `heap-analyze` (and of `perf-hub analyze` / `perf-hub diff`, which delegate
//! here): `analyze FILE [--json]`, `diff BEFORE AFTER [--json]`, and for benchmarks of what the
//! hub does with snapshots: `leak FIRST SECOND [MORE...]` (the leak hunt's report, the function
//! the hub's `leak_hunt` calls) and `explore FILE` (builds the heap explorer's index and prints
//! its size).
//!
//! Results go to stdout (text tables, or one JSON document with `--json`); progress and errors go
//! to stderr. Exit status: 0 on success, 1 when the analysis failed, 2 on bad usage.

use std::io::{IsTerminal, Write};

use crate::{analyze_path, diff_paths, hunt_paths, render, AnalyzeOptions, Explorer, Progress, Stage};

const USAGE: &str = "usage:
  analyze FILE.heapsnapshot [--json] [--top N] [--no-paths] [--model devtools|memlab] [--quiet]
  diff BEFORE.heapsnapshot AFTER.heapsnapshot [--json] [--top N] [--no-paths] [--model devtools|memlab] [--quiet]
  leak FIRST.heapsnapshot SECOND.heapsnapshot [MORE.heapsnapshot...] [--json] [--quiet]
  explore FILE.heapsnapshot [--quiet]";

/// Parsed command line: one file for `analyze` and `explore`, two (before, after) for `diff`,
/// two or more (in the order taken) for `leak`.
pub struct Command {
    pub files: Vec<String>,
    pub json: bool,
    pub quiet: bool,
    pub opts: AnalyzeOptions,
}

fn parse_args(args: &[String]) -> Result<(String, Command), String> {
    let mut it = args.iter();
    let sub = it.next().ok_or("missing command")?.clone();
    let mut cmd = Command { files: Vec::new(), json: false, quiet: false, opts: AnalyzeOptions::default() };
    while let Some(a) = it.next() {
        match a.as_str() {
            "--json" => cmd.json = true,
            "--quiet" | "-q" => cmd.quiet = true,
            "--no-paths" => cmd.opts.paths = false,
            "--model" => {
                cmd.opts.model = match it.next().map(String::as_str) {
                    Some("devtools") => crate::Model::DevTools,
                    Some("memlab") => crate::Model::Memlab,
                    other => return Err(format!("--model takes devtools or memlab, got {other:?}")),
                };
            }
            "--top" => {
                let n = it.next().ok_or("--top needs a number")?;
                let n: usize = n.parse().map_err(|_| format!("--top: not a number: {n}"))?;
                cmd.opts.top_objects = n;
                cmd.opts.top_new_objects = n;
            }
            s if s.starts_with('-') && s.len() > 1 => return Err(format!("unknown option {s}")),
            _ => cmd.files.push(a.clone()),
        }
    }
    files_fit(&sub, cmd.files.len())?;
    Ok((sub, cmd))
}

/// Checks the number of files a subcommand takes.
fn files_fit(sub: &str, got: usize) -> Result<(), String> {
    let (min, max, want) = match sub {
        "analyze" | "explore" => (1, 1, "1 file argument"),
        "diff" => (2, 2, "2 file arguments"),
        "leak" => (2, usize::MAX, "2 or more file arguments"),
        other => return Err(format!("unknown command {other}")),
    };
    if got < min || got > max {
        return Err(format!("{sub} takes {want}, got {got}"));
    }
    Ok(())
}

/// Runs the command line `args` (without the program name: `["analyze", "FILE", "--json"]`).
/// Returns the process exit status.
pub fn cli_main(args: &[String]) -> i32 {
    let (sub, cmd) = match parse_args(args) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {e}\n{USAGE}");
            return 2;
        }
    };
    run(&sub, &cmd)
}

/// Runs `analyze` (one file), `diff` (two), `leak` (two or more) or `explore` (one) with already
/// parsed options (for callers with their own argument parser, such as `perf-hub`). Returns the
/// process exit status.
pub fn run(sub: &str, cmd: &Command) -> i32 {
    if let Err(e) = files_fit(sub, cmd.files.len()) {
        eprintln!("error: {e}\n{USAGE}");
        return 2;
    }
    let files = u8::try_from(cmd.files.len()).unwrap_or(u8::MAX);
    let mut printer = ProgressPrinter::new(cmd.quiet, files);
    let mut progress = |p: Progress| printer.report(p);
    let output = match sub {
        "analyze" => analyze_path(&cmd.files[0], &cmd.opts, &mut progress)
            .and_then(|a| Ok(if cmd.json { to_json(&a)? } else { render::render_analysis_text(&a) })),
        "diff" => diff_paths(&cmd.files[0], &cmd.files[1], &cmd.opts, &mut progress)
            .and_then(|d| Ok(if cmd.json { to_json(&d)? } else { render::render_diff_text(&d) })),
        // The report is JSON only (the console renders it).
        "leak" => hunt_paths(&cmd.files, &cmd.opts, &mut progress).and_then(|r| to_json(&r)),
        _ => Explorer::open(&cmd.files[0], &mut progress).and_then(|x| to_json(&index_size(&x))),
    };
    printer.finish();
    match output {
        Ok(text) => {
            let mut out = std::io::stdout().lock();
            if out.write_all(text.as_bytes()).and_then(|_| out.flush()).is_err() {
                return 1;
            }
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

/// What `explore` prints: the size of the explorer's index.
#[derive(serde::Serialize)]
struct IndexSize {
    node_count: u32,
    total_size: u64,
    /// [`Explorer::heap_bytes`]: what the hub's cache budget counts.
    heap_bytes: u64,
}

fn index_size(x: &Explorer) -> IndexSize {
    IndexSize { node_count: x.node_count(), total_size: x.total_size(), heap_bytes: x.heap_bytes() }
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String, crate::HeapError> {
    let mut s =
        serde_json::to_string_pretty(v).map_err(|e| crate::HeapError::Unsupported(format!("JSON output: {e}")))?;
    s.push('\n');
    Ok(s)
}

/// Progress lines on stderr: rewritten in place on a terminal, every 10% otherwise.
struct ProgressPrinter {
    quiet: bool,
    tty: bool,
    files: u8,
    last: Option<(u8, Stage, u64)>,
    dirty: bool,
}

impl ProgressPrinter {
    fn new(quiet: bool, files: u8) -> Self {
        ProgressPrinter { quiet, tty: std::io::stderr().is_terminal(), files, last: None, dirty: false }
    }

    fn report(&mut self, p: Progress) {
        if self.quiet {
            return;
        }
        let pct = (p.done.min(p.total) * 100).checked_div(p.total).unwrap_or(0);
        let step = if self.tty { 1 } else { 10 };
        let bucket = pct / step;
        if let Some((s, st, b)) = self.last {
            if s == p.snapshot && st == p.stage && b == bucket {
                return;
            }
            if s == p.snapshot && st == p.stage && p.stage != Stage::Reading {
                return;
            }
        }
        self.last = Some((p.snapshot, p.stage, bucket));
        let which = if self.files > 1 { format!("[{}/{}] ", p.snapshot + 1, self.files) } else { String::new() };
        let line = match p.stage {
            Stage::Reading => format!("{which}reading {pct:>3}% ({} / {} MiB)", p.done >> 20, p.total >> 20),
            Stage::Dominators => format!("{which}computing dominators and retained sizes"),
            Stage::Summary => format!("{which}summarising constructors"),
            Stage::Paths => format!("{which}finding retainer paths"),
        };
        let mut err = std::io::stderr().lock();
        let _ = if self.tty { write!(err, "\r\x1b[2K{line}") } else { writeln!(err, "{line}") };
        self.dirty = self.tty;
    }

    fn finish(&mut self) {
        if self.dirty {
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn usage_errors() {
        assert_eq!(cli_main(&args("")), 2);
        assert_eq!(cli_main(&args("frobnicate x")), 2);
        assert_eq!(cli_main(&args("analyze")), 2);
        assert_eq!(cli_main(&args("diff a")), 2);
        assert_eq!(cli_main(&args("leak a")), 2);
        assert_eq!(cli_main(&args("explore a b")), 2);
        assert_eq!(cli_main(&args("leak /nonexistent/a /nonexistent/b --quiet")), 1);
        assert_eq!(cli_main(&args("explore /nonexistent/a --quiet")), 1);
        assert_eq!(cli_main(&args("analyze a --bogus")), 2);
        assert_eq!(cli_main(&args("analyze /nonexistent/x.heapsnapshot --quiet")), 1);
    }
}
