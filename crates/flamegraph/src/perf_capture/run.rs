//! Running perf: `perf record` with a watchdog, and `perf script` streamed into the collapser.

use std::io::{self, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::error::PerfError;
use crate::perf_script::collapse_perf_script;

/// Fields for `perf script`: no `period`, so every sample weighs 1 (counts are samples).
const SCRIPT_FIELDS: &str = "comm,pid,tid,time,event,ip,sym,dso";
/// Keep at most this much of perf's stderr for messages.
const STDERR_KEEP: usize = 16 * 1024;
const POLL: Duration = Duration::from_millis(50);

/// Outcome of `perf record`.
pub(crate) struct Recorded {
    pub status: ExitStatus,
    pub stderr: String,
}

/// Spawns perf, mapping "no such file" to [`PerfError::NotInstalled`].
fn spawn(perf_bin: &Path, args: &[String], stdout: Stdio) -> Result<Child, PerfError> {
    Command::new(perf_bin).args(args).stdin(Stdio::null()).stdout(stdout).stderr(Stdio::piped()).spawn().map_err(|e| {
        match e.kind() {
            io::ErrorKind::NotFound => PerfError::NotInstalled { bin: perf_bin.to_path_buf() },
            _ => PerfError::io(format!("running {}", perf_bin.display()), e),
        }
    })
}

/// Reads a child's stderr on a thread (so a chatty perf never blocks on a full pipe).
fn drain_stderr(child: &mut Child) -> Option<JoinHandle<String>> {
    let mut stderr = child.stderr.take()?;
    Some(std::thread::spawn(move || {
        let mut all = Vec::new();
        let _ = stderr.read_to_end(&mut all);
        let start = all.len().saturating_sub(STDERR_KEEP);
        String::from_utf8_lossy(&all[start..]).into_owned()
    }))
}

fn join_stderr(handle: Option<JoinHandle<String>>) -> String {
    handle.and_then(|h| h.join().ok()).unwrap_or_default()
}

/// Waits for `child`, killing it after `limit`.
fn wait_with_deadline(child: &mut Child, limit: Duration) -> Result<Option<ExitStatus>, PerfError> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().map_err(|e| PerfError::io("waiting for perf", e))? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::sleep(POLL);
    }
}

/// `perf record -g -F FREQ -e EVENT -p PID -o DATA -- sleep SECONDS`.
pub(crate) fn record(
    perf_bin: &Path,
    pid: u32,
    seconds: u32,
    frequency_hz: u32,
    event: &str,
    data: &Path,
) -> Result<Recorded, PerfError> {
    let args: Vec<String> = vec![
        "record".into(),
        "-g".into(),
        "-F".into(),
        frequency_hz.to_string(),
        "-e".into(),
        event.into(),
        "-p".into(),
        pid.to_string(),
        "-o".into(),
        data.display().to_string(),
        "--".into(),
        "sleep".into(),
        seconds.to_string(),
    ];
    let mut child = spawn(perf_bin, &args, Stdio::null())?;
    let stderr = drain_stderr(&mut child);
    // perf post-processes (build ids) after the sleep; give it time, then give up.
    let limit = Duration::from_secs(u64::from(seconds) + 60);
    let status = wait_with_deadline(&mut child, limit)?;
    let stderr = join_stderr(stderr);
    match status {
        Some(status) => Ok(Recorded { status, stderr }),
        None => Err(PerfError::Timeout { seconds: limit.as_secs() }),
    }
}

/// Outcome of `perf script` + collapsing.
pub(crate) struct Scripted {
    /// Folded text.
    pub folded: Vec<u8>,
    pub stderr: String,
    /// perf script exited non-zero but produced stacks (kept, with a note).
    pub failed_late: bool,
}

/// `perf script -i DATA` piped straight into inferno's collapser (streamed).
pub(crate) fn script_and_fold(perf_bin: &Path, data: &Path) -> Result<Scripted, PerfError> {
    let args: Vec<String> =
        vec!["script".into(), "-i".into(), data.display().to_string(), "-F".into(), SCRIPT_FIELDS.into()];
    let mut child = spawn(perf_bin, &args, Stdio::piped())?;
    let stderr = drain_stderr(&mut child);
    let Some(stdout) = child.stdout.take() else {
        let _ = child.kill();
        return Err(PerfError::io("perf script", io::Error::other("no stdout pipe")));
    };
    let mut folded = Vec::new();
    let collapsed = collapse_perf_script(BufReader::with_capacity(256 * 1024, stdout), &mut folded);
    if collapsed.is_err() {
        // Stop perf script, or it blocks on the pipe nobody reads any more.
        let _ = child.kill();
    }
    let status = child.wait().map_err(|e| PerfError::io("waiting for perf script", e))?;
    let stderr = join_stderr(stderr);
    collapsed?;
    if !status.success() && folded.is_empty() {
        return Err(PerfError::ScriptFailed { status: status.to_string(), stderr: stderr.trim().to_string() });
    }
    Ok(Scripted { folded, stderr, failed_late: !status.success() })
}
