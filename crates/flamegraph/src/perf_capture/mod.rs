//! CPU flame graphs of a live process with Linux `perf` (native + JS frames).
//!
//! [`capture`] runs `perf record -g -F FREQ -e cpu-clock -p PID -o WORK/perf.data -- sleep N`,
//! then `perf script` whose stdout is streamed into inferno's collapser, and writes
//! `WORK/perf.folded` and `WORK/perf.svg`. It is meant to run in a helper child process
//! (see [`helper_main`]) so that perf's CPU and memory never land in the application.
//!
//! JS frames have names only when node runs with `--perf-basic-prof[-only-functions]`;
//! the result's `notes` say whether that was the case.

mod error;
mod helper;
mod notes;
mod process;
mod run;

use std::path::{Path, PathBuf};

pub use error::PerfError;
pub use helper::helper_main;
pub use process::JsSymbols;

use crate::detect::InputFormat;
use crate::folded::{summarize, FoldedSummary};
use crate::pipeline::{write_svg, FoldOutput};
use crate::render::RenderOptions;
use error::is_permission_error;
use notes::{jit_samples, js_share_notes, perf_warnings};
use process::{js_symbols, process_exists};
use run::{record, script_and_fold, Recorded};

pub const MIN_SECONDS: u32 = 1;
pub const MAX_SECONDS: u32 = 600;
/// Upper bound on `-F` regardless of the kernel's limit: beyond this perf's own overhead
/// dominates the process being measured.
pub const MAX_FREQUENCY_HZ: u32 = 10_000;
/// Environment variable naming the perf binary (default: `perf` on PATH).
pub const PERF_BIN_ENV: &str = "PERF_AGENT_PERF_BIN";

/// Everything a capture needs; [`CaptureOptions::new`] fills the defaults.
#[derive(Debug, Clone)]
pub struct CaptureOptions {
    pub pid: u32,
    pub seconds: u32,
    pub frequency_hz: u32,
    /// Where perf.data, perf.folded and perf.svg go (created if missing).
    pub work_dir: PathBuf,
    /// The perf binary: `$PERF_AGENT_PERF_BIN`, else `perf`.
    pub perf_bin: PathBuf,
    /// perf event; `cpu-clock` (software) works in VMs and containers without a PMU.
    pub event: String,
    /// Keep `perf.data` after folding (default: removed, it is useless off this host).
    pub keep_perf_data: bool,
}

impl CaptureOptions {
    pub fn new(pid: u32, seconds: u32, frequency_hz: u32, work_dir: &Path) -> Self {
        CaptureOptions {
            pid,
            seconds,
            frequency_hz,
            work_dir: work_dir.to_path_buf(),
            perf_bin: default_perf_bin(),
            event: "cpu-clock".to_string(),
            keep_perf_data: false,
        }
    }
}

/// `$PERF_AGENT_PERF_BIN` or `perf`.
pub fn default_perf_bin() -> PathBuf {
    std::env::var_os(PERF_BIN_ENV).filter(|v| !v.is_empty()).map_or_else(|| PathBuf::from("perf"), PathBuf::from)
}

/// A finished capture.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PerfCapture {
    pub pid: u32,
    pub seconds: u32,
    pub frequency_hz: u32,
    /// Folded stacks (`perf.folded`).
    pub folded: PathBuf,
    /// The flame graph (`perf.svg`).
    pub svg: PathBuf,
    /// `perf.data`, when kept.
    pub perf_data: Option<PathBuf>,
    /// Samples folded.
    pub samples: u64,
    /// Distinct stacks.
    pub stacks: usize,
    /// Whether JS frames could be named.
    pub js_symbols: JsSymbols,
    /// Samples whose stack holds at least one named JS frame.
    pub js_samples: u64,
    /// The target exited during the capture; the graph covers the time until then.
    pub target_exited: bool,
    /// Human-readable remarks (symbolization, partial data, perf warnings).
    pub notes: Vec<String>,
}

/// Captures `seconds` of on-CPU stacks of `pid` at `frequency_hz` into `work_dir`,
/// using `$PERF_AGENT_PERF_BIN` or `perf`.
pub fn capture(pid: u32, seconds: u32, frequency_hz: u32, work_dir: &Path) -> Result<PerfCapture, PerfError> {
    capture_with(&CaptureOptions::new(pid, seconds, frequency_hz, work_dir))
}

/// [`capture`] with every option explicit.
pub fn capture_with(opts: &CaptureOptions) -> Result<PerfCapture, PerfError> {
    validate(opts)?;
    prepare(opts)?;
    let (js, mut notes) = js_symbols(opts.pid);
    let data = opts.work_dir.join("perf.data");
    let (recorded, target_exited) = record_target(opts, &data)?;
    let scripted = script_and_fold(&opts.perf_bin, &data)?;
    let summary = non_empty(opts.pid, &scripted.folded, target_exited)?;
    notes.extend(perf_warnings(&recorded.stderr, &scripted.stderr, scripted.failed_late));
    notes.extend(exit_note(opts.pid, target_exited, summary.total));
    let jit = jit_samples(&scripted.folded);
    notes.extend(js_share_notes(js, jit, summary.total));
    let (folded, svg) = write_outputs(opts, scripted.folded, summary, js)?;
    Ok(PerfCapture {
        pid: opts.pid,
        seconds: opts.seconds,
        frequency_hz: opts.frequency_hz,
        folded,
        svg,
        perf_data: keep_or_remove(&data, opts.keep_perf_data),
        samples: summary.total,
        stacks: summary.stacks,
        js_symbols: js,
        js_samples: jit.0,
        target_exited,
        notes,
    })
}

/// The target must be alive; the work dir is created.
fn prepare(opts: &CaptureOptions) -> Result<(), PerfError> {
    if !process_exists(opts.pid) {
        return Err(PerfError::ProcessNotFound { pid: opts.pid });
    }
    std::fs::create_dir_all(&opts.work_dir)
        .map_err(|e| PerfError::io(format!("creating {}", opts.work_dir.display()), e))
}

/// Runs `perf record`; returns its outcome and whether the target exited meanwhile.
fn record_target(opts: &CaptureOptions, data: &Path) -> Result<(Recorded, bool), PerfError> {
    let _ = std::fs::remove_file(data);
    let recorded = record(&opts.perf_bin, opts.pid, opts.seconds, opts.frequency_hz, &opts.event, data)?;
    let target_exited = !process_exists(opts.pid);
    check_recorded(opts.pid, &recorded, target_exited, data)?;
    Ok((recorded, target_exited))
}

/// The folded summary, or why there is nothing to draw.
fn non_empty(pid: u32, folded: &[u8], target_exited: bool) -> Result<FoldedSummary, PerfError> {
    let summary = summarize(folded);
    match (summary.total, target_exited) {
        (0, true) => Err(PerfError::TargetExited { pid }),
        (0, false) => Err(PerfError::NoSamples { pid }),
        _ => Ok(summary),
    }
}

fn exit_note(pid: u32, target_exited: bool, samples: u64) -> Option<String> {
    target_exited.then(|| {
        format!(
            "process {pid} exited during the capture: the flame graph covers only the time \
             until it exited ({samples} samples kept)"
        )
    })
}

fn validate(opts: &CaptureOptions) -> Result<(), PerfError> {
    if !(MIN_SECONDS..=MAX_SECONDS).contains(&opts.seconds) {
        return Err(PerfError::InvalidSeconds(opts.seconds));
    }
    let max = max_frequency();
    if opts.frequency_hz == 0 || opts.frequency_hz > max {
        return Err(PerfError::InvalidFrequency { hz: opts.frequency_hz, max });
    }
    Ok(())
}

/// [`MAX_FREQUENCY_HZ`], lowered to the kernel's `perf_event_max_sample_rate` if smaller.
fn max_frequency() -> u32 {
    let kernel = read_proc_number("/proc/sys/kernel/perf_event_max_sample_rate")
        .and_then(|v| u32::try_from(v).ok())
        .filter(|&v| v > 0);
    kernel.map_or(MAX_FREQUENCY_HZ, |k| k.min(MAX_FREQUENCY_HZ))
}

fn read_proc_number(path: &str) -> Option<i64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Turns a failed `perf record` into the right error; a non-zero exit is fine when the
/// target exited mid-capture and perf.data was written (perf then stops early).
fn check_recorded(pid: u32, recorded: &Recorded, target_exited: bool, data: &Path) -> Result<(), PerfError> {
    if recorded.status.success() {
        return Ok(());
    }
    let data_written = std::fs::metadata(data).is_ok_and(|m| m.len() > 0);
    if target_exited && data_written {
        return Ok(());
    }
    let stderr = recorded.stderr.trim();
    if is_permission_error(stderr) {
        let paranoid = read_proc_number("/proc/sys/kernel/perf_event_paranoid").and_then(|v| i32::try_from(v).ok());
        return Err(PerfError::NotPermitted { paranoid, detail: last_lines(stderr, 3) });
    }
    if target_exited || stderr.contains("No such process") {
        return Err(if data_written { PerfError::TargetExited { pid } } else { PerfError::ProcessNotFound { pid } });
    }
    Err(PerfError::RecordFailed { status: recorded.status.to_string(), stderr: last_lines(stderr, 10) })
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

fn write_outputs(
    opts: &CaptureOptions,
    folded: Vec<u8>,
    summary: FoldedSummary,
    js: JsSymbols,
) -> Result<(PathBuf, PathBuf), PerfError> {
    let folded_path = opts.work_dir.join("perf.folded");
    std::fs::write(&folded_path, &folded)
        .map_err(|e| PerfError::io(format!("writing {}", folded_path.display()), e))?;
    let svg_path = opts.work_dir.join("perf.svg");
    let fold = FoldOutput { format: InputFormat::PerfScript, folded, summary, count_name: "samples", input_bytes: 0 };
    let render = RenderOptions {
        title: Some(format!("CPU flame graph (perf) of pid {}", opts.pid)),
        subtitle: Some(format!(
            "{} s at {} Hz ({}), JS frames {}",
            opts.seconds,
            opts.frequency_hz,
            opts.event,
            if js.symbolized() { "named" } else { "not symbolized" }
        )),
        ..RenderOptions::default()
    };
    write_svg(&fold, &svg_path, &render)?;
    Ok((folded_path, svg_path))
}

fn keep_or_remove(data: &Path, keep: bool) -> Option<PathBuf> {
    if keep {
        return Some(data.to_path_buf());
    }
    let _ = std::fs::remove_file(data);
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_ranges() {
        let dir = std::env::temp_dir();
        let me = std::process::id();
        let check = |s, f| validate(&CaptureOptions::new(me, s, f, &dir));
        assert!(check(1, 99).is_ok());
        assert!(check(600, 1).is_ok());
        assert!(matches!(check(0, 99), Err(PerfError::InvalidSeconds(0))));
        assert!(matches!(check(601, 99), Err(PerfError::InvalidSeconds(601))));
        assert!(matches!(check(5, 0), Err(PerfError::InvalidFrequency { hz: 0, .. })));
        assert!(matches!(check(5, 1_000_000), Err(PerfError::InvalidFrequency { .. })));
    }

    #[test]
    fn last_lines_joins_the_tail() {
        assert_eq!(last_lines("a\n\nb\nc\n", 2), "b | c");
    }
}
