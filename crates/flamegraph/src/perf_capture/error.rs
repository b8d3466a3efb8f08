//! Errors of a perf capture, and how a failed `perf record` is explained.

use std::io;
use std::path::PathBuf;

use crate::error::FlameError;

/// Why a perf capture failed. Messages say what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum PerfError {
    #[error(
        "perf is not installed (could not run {}): install it (Debian: `apt-get install linux-perf`, \
         Ubuntu: `apt-get install linux-tools-$(uname -r)`) or point PERF_AGENT_PERF_BIN at it",
        bin.display()
    )]
    NotInstalled { bin: PathBuf },
    #[error("perf is not permitted to profile this process: {}", permission_advice(*paranoid, detail))]
    NotPermitted { paranoid: Option<i32>, detail: String },
    #[error("process {pid} not found")]
    ProcessNotFound { pid: u32 },
    #[error("process {pid} exited during the capture before any sample was taken")]
    TargetExited { pid: u32 },
    #[error("seconds must be between {min} and {max} (got {0})", min = super::MIN_SECONDS, max = super::MAX_SECONDS)]
    InvalidSeconds(u32),
    #[error(
        "frequency must be between 1 and {max} Hz (got {hz}); the kernel's limit is \
             /proc/sys/kernel/perf_event_max_sample_rate"
    )]
    InvalidFrequency { hz: u32, max: u32 },
    #[error("no samples: process {pid} used no CPU during the capture (idle?)")]
    NoSamples { pid: u32 },
    #[error("perf record did not finish within {seconds} s and was killed")]
    Timeout { seconds: u64 },
    #[error("perf record failed ({status}): {stderr}")]
    RecordFailed { status: String, stderr: String },
    #[error("perf script failed ({status}): {stderr}")]
    ScriptFailed { status: String, stderr: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Flame(#[from] FlameError),
}

impl PerfError {
    /// A stable machine-readable name for result.json / the hub.
    pub fn kind(&self) -> &'static str {
        match self {
            PerfError::NotInstalled { .. } => "not_installed",
            PerfError::NotPermitted { .. } => "not_permitted",
            PerfError::ProcessNotFound { .. } => "process_not_found",
            PerfError::TargetExited { .. } => "target_exited",
            PerfError::InvalidSeconds(_) => "invalid_seconds",
            PerfError::InvalidFrequency { .. } => "invalid_frequency",
            PerfError::NoSamples { .. } => "no_samples",
            PerfError::Timeout { .. } => "timeout",
            PerfError::RecordFailed { .. } => "record_failed",
            PerfError::ScriptFailed { .. } => "script_failed",
            PerfError::Io { .. } => "io",
            PerfError::Flame(_) => "flamegraph",
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        PerfError::Io { context: context.into(), source }
    }
}

/// True when perf's stderr says the kernel refused to open the events.
pub(crate) fn is_permission_error(stderr: &str) -> bool {
    const MARKERS: [&str; 5] = [
        "Permission denied",
        "perf_event_paranoid",
        "No permission",
        "Operation not permitted",
        "Access to performance monitoring and observability operations is limited",
    ];
    MARKERS.iter().any(|m| stderr.contains(m))
}

/// Explains which setting or capability perf needs, given `kernel.perf_event_paranoid`.
pub(crate) fn permission_advice(paranoid: Option<i32>, detail: &str) -> String {
    let level = match paranoid {
        Some(p) => format!("kernel.perf_event_paranoid is {p}"),
        None => "kernel.perf_event_paranoid is unreadable".to_string(),
    };
    let detail = detail.trim();
    let detail = if detail.is_empty() { String::new() } else { format!(" (perf said: {detail})") };
    format!(
        "{level}. Run the agent's helper as root, or give it CAP_PERFMON (Linux >= 5.8; \
         CAP_SYS_ADMIN before) plus CAP_SYS_PTRACE for processes of other users, or lower the \
         setting: `sysctl -w kernel.perf_event_paranoid=1` (user+kernel stacks of your own \
         processes; 2 = user space only, Debian's 3 forbids all unprivileged use). In a container \
         the seccomp profile must also allow perf_event_open{detail}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_permission_errors() {
        let debian = "Error:\nAccess to performance monitoring and observability operations is limited.\n\
                      Consider adjusting /proc/sys/kernel/perf_event_paranoid setting";
        assert!(is_permission_error(debian));
        assert!(is_permission_error("Error: No permission to enable cpu-clock event."));
        assert!(is_permission_error("perf_event_open(...) failed: Operation not permitted"));
        assert!(!is_permission_error("Couldn't create thread/CPU maps: No such process"));
    }

    #[test]
    fn advice_names_the_setting_and_capability() {
        let msg = PerfError::NotPermitted { paranoid: Some(3), detail: "No permission".into() }.to_string();
        assert!(msg.contains("perf_event_paranoid is 3"), "{msg}");
        assert!(msg.contains("CAP_PERFMON"), "{msg}");
        assert!(msg.contains("No permission"), "{msg}");
        assert_eq!(PerfError::InvalidSeconds(0).kind(), "invalid_seconds");
        assert!(PerfError::InvalidSeconds(700).to_string().contains("between 1 and 600"));
    }
}
