//! perf-proc-metrics: the figures of a Node.js process that can be read WITHOUT its JS
//! thread, so they keep flowing while the event loop is stuck.
//!
//! - [`ProcessSampler`]: RSS, VM size, threads, open fds, CPU user/system % (`/proc/<pid>/*`).
//! - [`read_host`]: load average, memory, CPU count, uptime (`/proc/loadavg|meminfo|uptime`).
//! - [`read_cgroup_memory`]: memory limit/usage of the process's cgroup (v2 and v1).
//! - [`memory_headroom`]: bytes the process may still grow before an OOM kill is likely.
//! - [`StallDetector`]: JS heartbeat → Running / Blocked, a pure state machine.
//! - [`NativeSampler`]: all of the above in one sample, each part failing on its own.
//!
//! How the agent's native thread is meant to drive it (the JS side calls `js_beat` from an
//! unref'd timer every ~250 ms; the native thread samples and checks every tick):
//!
//! ```
//! use std::time::{Duration, Instant};
//! use perf_proc_metrics::{NativeSampler, StallDetector};
//!
//! let mut sampler = NativeSampler::new();
//! let mut stall = StallDetector::new(Duration::from_millis(1000));
//! stall.js_beat(Instant::now()); // from JS, through the addon
//! let sample = sampler.sample(); // from the native thread, JS not needed
//! let state = stall.check(Instant::now()).report(); // {"state":"running"} here
//! assert!(!stall.check(Instant::now()).is_blocked());
//! # let _ = (sample, state);
//! ```
//!
//! Linux only (procfs/cgroupfs); elsewhere every read returns [`Error::Io`]. Parsers are pure
//! functions over `&str` and return errors, never panic, on malformed text. No allocation
//! beyond a few small strings per sample; no threads of its own: the caller's thread drives it.

mod cgroup;
mod error;
mod headroom;
mod host;
mod process;
mod stall;

pub use cgroup::{
    locate as locate_memory_cgroup, parse_limit, parse_memory_stat, parse_mountinfo, parse_proc_cgroup,
    read_cgroup_memory, CgroupLine, CgroupMemory, CgroupMount,
};
pub use error::Error;
pub use headroom::{headroom_from, memory_headroom, Headroom, HeadroomBound};
pub use host::{
    count_cpuinfo, cpu_count, parse_loadavg, parse_meminfo, parse_uptime, read_host, read_host_from, HostSample,
    LoadAvg, MemInfo,
};
pub use process::{
    cpu_percent, parse_stat, parse_status, ProcessSample, ProcessSampler, StatFields, StatusFields, USER_HZ,
};
pub use stall::{StallDetector, StallReport, StallState, DEFAULT_STALL_THRESHOLD};

use serde::Serialize;

/// Everything the native thread reads in one go. A part that failed is None and its error
/// text is in `errors`, so one unreadable file never hides the rest.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NativeSample {
    pub process: Option<ProcessSample>,
    pub host: Option<HostSample>,
    /// None when there is no memory cgroup (or it could not be read: see `errors`).
    pub cgroup: Option<CgroupMemory>,
    pub errors: Vec<String>,
}

/// Samples the calling process, the host and the cgroup together.
#[derive(Debug, Default)]
pub struct NativeSampler {
    process: ProcessSampler,
}

impl NativeSampler {
    pub fn new() -> Self {
        Self::default()
    }

    /// One sample; CPU % covers the time since the previous call.
    pub fn sample(&mut self) -> NativeSample {
        let mut errors = Vec::new();
        let process = keep(self.process.sample(), &mut errors);
        let host = keep(read_host(), &mut errors);
        let cgroup = keep(read_cgroup_memory(), &mut errors).flatten();
        NativeSample { process, host, cgroup, errors }
    }
}

fn keep<T>(r: Result<T, Error>, errors: &mut Vec<String>) -> Option<T> {
    r.map_err(|e| errors.push(e.to_string())).ok()
}
