//! Per-process figures from `/proc/<pid>/stat`, `/proc/<pid>/status` and `/proc/<pid>/fd`.
//!
//! CPU time in `stat` is in clock ticks of `USER_HZ`. We take `USER_HZ = 100` instead of
//! calling `sysconf(_SC_CLK_TCK)`: the kernel fixes the value it exports to user space at 100
//! on every architecture Node.js ships for (x86_64, arm64, and others), whatever the kernel's
//! internal HZ, and it keeps this crate free of a libc dependency.
//!
//! CPU percentages are of ONE core: a process using two cores fully reports 200.

use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;

use crate::error::{parse_num, read_text, Error};

/// Clock ticks per second of the CPU times in `/proc/<pid>/stat` (see the module docs).
pub const USER_HZ: u64 = 100;

/// The fields of `/proc/<pid>/stat` that we use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatFields {
    /// One-letter scheduler state (R, S, D, Z, ...).
    pub state: char,
    /// User-mode CPU time, in `USER_HZ` ticks.
    pub utime_ticks: u64,
    /// Kernel-mode CPU time, in `USER_HZ` ticks.
    pub stime_ticks: u64,
    pub num_threads: u64,
    /// Process start, in ticks after boot.
    pub start_ticks: u64,
    pub vsize_bytes: u64,
}

/// The fields of `/proc/<pid>/status` that we use (all in bytes; the file says kB).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatusFields {
    pub vm_rss_bytes: u64,
    pub vm_hwm_bytes: u64,
    pub vm_size_bytes: u64,
    pub threads: u64,
}

/// One process sample. Serialized as-is to the hub (snake_case, bytes as u64).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcessSample {
    pub pid: u32,
    /// Resident set size.
    pub rss_bytes: u64,
    /// Peak resident set size since start (VmHWM).
    pub rss_peak_bytes: u64,
    /// Virtual memory size.
    pub vm_size_bytes: u64,
    pub threads: u64,
    /// Open file descriptors; None when /proc/<pid>/fd is not readable (another user's process).
    pub open_fds: Option<u64>,
    /// Percent of one core spent in user mode since the previous sample
    /// (since process start for the first sample).
    pub cpu_user_percent: f64,
    /// Percent of one core spent in the kernel, same window as `cpu_user_percent`.
    pub cpu_system_percent: f64,
    /// Cumulative CPU seconds (for Prometheus `process_cpu_*_seconds_total`).
    pub cpu_user_seconds_total: f64,
    pub cpu_system_seconds_total: f64,
}

/// Parses `/proc/<pid>/stat`. The command name (field 2) is in parentheses and may itself
/// contain spaces and ')', so fields are counted from the LAST ')'.
pub fn parse_stat(text: &str) -> Result<StatFields, Error> {
    const WHAT: &str = "/proc/<pid>/stat";
    let close = text.rfind(')').ok_or_else(|| Error::parse(WHAT, "no ')' after the command name"))?;
    // After ')': field 3 (state) is index 0, so field N is index N - 3.
    let rest: Vec<&str> = text[close + 1..].split_ascii_whitespace().collect();
    let field = |n: usize| -> Result<&str, Error> {
        rest.get(n - 3).copied().ok_or_else(|| Error::parse(WHAT, format!("missing field {n}")))
    };
    let state = field(3)?.chars().next().ok_or_else(|| Error::parse(WHAT, "empty state"))?;
    Ok(StatFields {
        state,
        utime_ticks: parse_num(WHAT, "utime", field(14)?)?,
        stime_ticks: parse_num(WHAT, "stime", field(15)?)?,
        num_threads: parse_num(WHAT, "num_threads", field(20)?)?,
        start_ticks: parse_num(WHAT, "starttime", field(22)?)?,
        vsize_bytes: parse_num(WHAT, "vsize", field(23)?)?,
    })
}

/// Parses `/proc/<pid>/status`. VmRSS and Threads are required; VmHWM and VmSize are taken
/// when present (kernel threads and zombies lack the Vm* lines).
pub fn parse_status(text: &str) -> Result<StatusFields, Error> {
    const WHAT: &str = "/proc/<pid>/status";
    let mut out = StatusFields::default();
    let (mut have_rss, mut have_threads) = (false, false);
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        match key {
            "VmRSS" => {
                out.vm_rss_bytes = parse_kb(WHAT, key, value)?;
                have_rss = true;
            }
            "VmHWM" => out.vm_hwm_bytes = parse_kb(WHAT, key, value)?,
            "VmSize" => out.vm_size_bytes = parse_kb(WHAT, key, value)?,
            "Threads" => {
                out.threads = parse_num(WHAT, "Threads", value)?;
                have_threads = true;
            }
            _ => {}
        }
    }
    if !have_rss || !have_threads {
        return Err(Error::parse(WHAT, "VmRSS or Threads missing"));
    }
    Ok(out)
}

/// Parses a `"   1234 kB"` value into bytes (used by status and meminfo).
pub(crate) fn parse_kb(what: &'static str, key: &str, value: &str) -> Result<u64, Error> {
    let number = value.trim().trim_end_matches("kB").trim();
    let kb: u64 = parse_num(what, key, number)?;
    kb.checked_mul(1024).ok_or_else(|| Error::parse(what, format!("field {key}: overflows u64")))
}

/// Percent of one core used by `delta_ticks` of CPU over `elapsed_secs` of wall time.
/// Zero when no wall time passed (two samples in the same instant), never NaN/inf.
pub fn cpu_percent(delta_ticks: u64, elapsed_secs: f64) -> f64 {
    // Also catches NaN: a comparison with NaN is false.
    if elapsed_secs.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
        return 0.0;
    }
    (delta_ticks as f64 / USER_HZ as f64) / elapsed_secs * 100.0
}

/// Samples one process; keeps the previous CPU reading so each sample covers the interval
/// since the last one.
#[derive(Debug)]
pub struct ProcessSampler {
    proc_root: PathBuf,
    /// "self" or a pid.
    target: String,
    prev: Option<(Instant, u64, u64)>,
}

impl Default for ProcessSampler {
    fn default() -> Self {
        Self::new()
    }
}

impl ProcessSampler {
    /// Samples the calling process through `/proc/self`.
    pub fn new() -> Self {
        Self::with_root("/proc", "self")
    }

    /// Samples another process by pid.
    pub fn for_pid(pid: u32) -> Self {
        Self::with_root("/proc", &pid.to_string())
    }

    /// Reads from another procfs root (tests, or a host /proc mounted elsewhere).
    pub fn with_root(proc_root: impl Into<PathBuf>, target: &str) -> Self {
        ProcessSampler { proc_root: proc_root.into(), target: target.to_string(), prev: None }
    }

    /// Takes one sample. The first one reports CPU % averaged since process start.
    pub fn sample(&mut self) -> Result<ProcessSample, Error> {
        self.sample_at(Instant::now())
    }

    /// Takes one sample with the caller's clock reading (so callers and tests share one `now`).
    pub fn sample_at(&mut self, now: Instant) -> Result<ProcessSample, Error> {
        let dir = self.proc_root.join(&self.target);
        let stat = parse_stat(&read_text(&dir.join("stat"))?)?;
        let status = parse_status(&read_text(&dir.join("status"))?)?;
        let (user_pct, sys_pct) = self.cpu_window(now, &stat)?;
        self.prev = Some((now, stat.utime_ticks, stat.stime_ticks));
        Ok(ProcessSample {
            pid: self.pid(&dir)?,
            rss_bytes: status.vm_rss_bytes,
            rss_peak_bytes: status.vm_hwm_bytes,
            vm_size_bytes: status.vm_size_bytes.max(stat.vsize_bytes),
            threads: status.threads,
            open_fds: self.count_fds(&dir),
            cpu_user_percent: user_pct,
            cpu_system_percent: sys_pct,
            cpu_user_seconds_total: stat.utime_ticks as f64 / USER_HZ as f64,
            cpu_system_seconds_total: stat.stime_ticks as f64 / USER_HZ as f64,
        })
    }

    /// CPU % since the previous sample, or since process start for the first one
    /// (start time from `stat`, wall clock from `/proc/uptime`).
    fn cpu_window(&self, now: Instant, stat: &StatFields) -> Result<(f64, f64), Error> {
        let (elapsed, du, ds) = match self.prev {
            Some((t, u, s)) => (
                now.saturating_duration_since(t).as_secs_f64(),
                stat.utime_ticks.saturating_sub(u),
                stat.stime_ticks.saturating_sub(s),
            ),
            None => {
                let uptime = crate::host::parse_uptime(&read_text(&self.proc_root.join("uptime"))?)?;
                let started = stat.start_ticks as f64 / USER_HZ as f64;
                (uptime - started, stat.utime_ticks, stat.stime_ticks)
            }
        };
        Ok((cpu_percent(du, elapsed), cpu_percent(ds, elapsed)))
    }

    /// The numeric pid; for "self" it is resolved through the /proc/self symlink.
    fn pid(&self, dir: &std::path::Path) -> Result<u32, Error> {
        if let Ok(pid) = self.target.parse::<u32>() {
            return Ok(pid);
        }
        let link = std::fs::read_link(dir).map_err(|e| Error::io(dir, e))?;
        parse_num("/proc/self link", "pid", &link.to_string_lossy())
    }

    /// Counts /proc/<pid>/fd entries. Listing /proc/self/fd opens one fd of its own, which
    /// shows up in the listing: it is subtracted.
    fn count_fds(&self, dir: &std::path::Path) -> Option<u64> {
        let entries = std::fs::read_dir(dir.join("fd")).ok()?;
        let n = entries.filter(|e| e.is_ok()).count() as u64;
        Some(if self.target == "self" { n.saturating_sub(1) } else { n })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "2940 (node worker) S 2931 2931 1875 0 -1 4194304 97 0 0 0 250 50 0 0 20 0 11 0 33322 3133440000 382 18446744073709551615 1 2 3 4 5 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n";
    const STATUS: &str = "Name:\tnode\nUmask:\t0022\nState:\tS (sleeping)\nVmPeak:\t 1100000 kB\nVmSize:\t 1000000 kB\nVmHWM:\t   60000 kB\nVmRSS:\t   50000 kB\nThreads:\t11\n";

    #[test]
    fn stat_fields() {
        let s = parse_stat(STAT).unwrap();
        assert_eq!(s.state, 'S');
        assert_eq!((s.utime_ticks, s.stime_ticks), (250, 50));
        assert_eq!(s.num_threads, 11);
        assert_eq!(s.start_ticks, 33322);
        assert_eq!(s.vsize_bytes, 3_133_440_000);
    }

    #[test]
    fn stat_comm_with_parens_and_spaces() {
        let text = STAT.replace("(node worker)", "(a) b (c))");
        assert_eq!(parse_stat(&text).unwrap().utime_ticks, 250);
    }

    #[test]
    fn stat_malformed() {
        assert!(parse_stat("").is_err());
        assert!(parse_stat("12 (x) S 1 2").is_err());
        assert!(parse_stat(&STAT.replace(" 250 ", " x ")).is_err());
        assert!(parse_stat("12 (x)").is_err());
    }

    #[test]
    fn status_fields() {
        let s = parse_status(STATUS).unwrap();
        assert_eq!(s.vm_rss_bytes, 50_000 * 1024);
        assert_eq!(s.vm_hwm_bytes, 60_000 * 1024);
        assert_eq!(s.vm_size_bytes, 1_000_000 * 1024);
        assert_eq!(s.threads, 11);
    }

    #[test]
    fn status_malformed() {
        assert!(parse_status("").is_err());
        assert!(parse_status("VmRSS:\tabc kB\nThreads:\t1\n").is_err());
        assert!(parse_status("VmRSS:\t1 kB\n").is_err());
        assert!(parse_status("VmRSS:\t99999999999999999999 kB\nThreads:\t1\n").is_err());
        assert!(parse_status("garbage\n\n::\n").is_err());
    }

    #[test]
    fn percent_math() {
        assert_eq!(cpu_percent(100, 1.0), 100.0); // one core for one second
        assert_eq!(cpu_percent(50, 1.0), 50.0);
        assert_eq!(cpu_percent(400, 2.0), 200.0);
        assert_eq!(cpu_percent(10, 0.0), 0.0);
        assert_eq!(cpu_percent(10, -1.0), 0.0);
        assert_eq!(cpu_percent(10, f64::NAN), 0.0);
    }

    #[test]
    fn sampler_over_fixture_root() {
        let root = std::env::temp_dir().join(format!("pm-fixture-{}", std::process::id()));
        let dir = root.join("4242");
        std::fs::create_dir_all(dir.join("fd")).unwrap();
        std::fs::write(dir.join("stat"), STAT).unwrap();
        std::fs::write(dir.join("status"), STATUS).unwrap();
        std::fs::write(dir.join("fd").join("0"), "").unwrap();
        std::fs::write(root.join("uptime"), "433.22 800.00\n").unwrap();
        let mut s = ProcessSampler::with_root(&root, "4242");
        let t0 = Instant::now();
        let first = s.sample_at(t0).unwrap();
        assert_eq!(first.pid, 4242);
        assert_eq!(first.open_fds, Some(1));
        // 2.5 s user over (433.22 - 333.22) = 100 s → 2.5 %.
        assert!((first.cpu_user_percent - 2.5).abs() < 1e-6, "{}", first.cpu_user_percent);
        std::fs::write(dir.join("stat"), STAT.replace(" 250 50 ", " 350 60 ")).unwrap();
        let second = s.sample_at(t0 + std::time::Duration::from_secs(2)).unwrap();
        assert!((second.cpu_user_percent - 50.0).abs() < 1e-6);
        assert!((second.cpu_system_percent - 5.0).abs() < 1e-6);
        assert_eq!(second.cpu_user_seconds_total, 3.5);
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn sampler_missing_process_is_error() {
        let mut s = ProcessSampler::with_root("/nonexistent-proc-root", "1");
        assert!(matches!(s.sample(), Err(Error::Io { .. })));
    }
}
