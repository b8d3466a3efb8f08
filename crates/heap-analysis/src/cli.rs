//! Command line of `heap-analyze` (and of `perf-hub analyze` / `perf-hub diff`, which delegate
//! here): `analyze FILE [--json]`, `diff BEFORE AFTER [--json]`.
//!
//! Results go to stdout (text tables, or one JSON document with `--json`); progress and errors go
//! to stderr. Exit status: 0 on success, 1 when the analysis failed, 2 on bad usage.

use std::io::{IsTerminal, Write};

use crate::{analyze_path, diff_paths, render, AnalyzeOptions, Progress, Stage};

const USAGE: &str = "usage:
  analyze FILE.heapsnapshot [--json] [--top N] [--no-paths] [--model devtools|memlab] [--quiet]
  diff BEFORE.heapsnapshot AFTER.heapsnapshot [--json] [--top N] [--no-paths] [--model devtools|memlab] [--quiet]";

/// Parsed command line: one file for `analyze`, two (before, after) for `diff`.
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
    let want = match sub.as_str() {
        "analyze" => 1,
        "diff" => 2,
        other => return Err(format!("unknown command {other}")),
    };
    if cmd.files.len() != want {
        return Err(format!("{sub} takes {want} file argument(s), got {}", cmd.files.len()));
    }
    Ok((sub, cmd))
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

/// Runs `analyze` (one file) or `diff` (two) with already parsed options (for callers with
/// their own argument parser, such as `perf-hub`). Returns the process exit status.
pub fn run(sub: &str, cmd: &Command) -> i32 {
    let want = if sub == "diff" { 2 } else { 1 };
    if cmd.files.len() != want || !matches!(sub, "analyze" | "diff") {
        eprintln!("error: {sub} takes {want} file argument(s)\n{USAGE}");
        return 2;
    }
    let mut printer = ProgressPrinter::new(cmd.quiet, if sub == "diff" { 2 } else { 1 });
    let mut progress = |p: Progress| printer.report(p);
    let output = if sub == "analyze" {
        analyze_path(&cmd.files[0], &cmd.opts, &mut progress)
            .and_then(|a| Ok(if cmd.json { to_json(&a)? } else { render::render_analysis_text(&a) }))
    } else {
        diff_paths(&cmd.files[0], &cmd.files[1], &cmd.opts, &mut progress)
            .and_then(|d| Ok(if cmd.json { to_json(&d)? } else { render::render_diff_text(&d) }))
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
        assert_eq!(cli_main(&args("analyze a --bogus")), 2);
        assert_eq!(cli_main(&args("analyze /nonexistent/x.heapsnapshot --quiet")), 1);
    }
}
