//! Host-wide figures: load average, memory, CPU count, uptime.

use std::path::Path;

use serde::Serialize;

use crate::error::{parse_num, read_text, Error};
use crate::process::parse_kb;

/// One host sample.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostSample {
    pub load_avg_1: f64,
    pub load_avg_5: f64,
    pub load_avg_15: f64,
    pub mem_total_bytes: u64,
    pub mem_free_bytes: u64,
    /// MemAvailable: what can be allocated without swapping (free + reclaimable cache).
    pub mem_available_bytes: u64,
    /// CPUs this process may use (honours affinity and cgroup CPU quota; see [`cpu_count`]).
    pub cpu_count: u32,
    pub uptime_seconds: f64,
}

/// `/proc/loadavg`: 1, 5 and 15 minute averages.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadAvg {
    pub one: f64,
    pub five: f64,
    pub fifteen: f64,
}

/// The `/proc/meminfo` lines we use, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemInfo {
    pub total_bytes: u64,
    pub free_bytes: u64,
    /// MemAvailable; kernels before 3.14 lack it and get MemFree + Buffers + Cached instead.
    pub available_bytes: u64,
}

/// Parses `/proc/loadavg` ("0.44 0.14 0.04 1/85 3097").
pub fn parse_loadavg(text: &str) -> Result<LoadAvg, Error> {
    const WHAT: &str = "/proc/loadavg";
    let mut it = text.split_ascii_whitespace();
    let mut next = |name: &str| -> Result<f64, Error> {
        let v = it.next().ok_or_else(|| Error::parse(WHAT, format!("missing {name}")))?;
        parse_num(WHAT, name, v)
    };
    Ok(LoadAvg { one: next("1m")?, five: next("5m")?, fifteen: next("15m")? })
}

/// Parses `/proc/meminfo`. MemTotal and MemFree are required.
pub fn parse_meminfo(text: &str) -> Result<MemInfo, Error> {
    const WHAT: &str = "/proc/meminfo";
    let (mut total, mut free, mut avail) = (None, None, None);
    let (mut buffers, mut cached) = (0u64, 0u64);
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        match key {
            "MemTotal" => total = Some(parse_kb(WHAT, key, value)?),
            "MemFree" => free = Some(parse_kb(WHAT, key, value)?),
            "MemAvailable" => avail = Some(parse_kb(WHAT, key, value)?),
            "Buffers" => buffers = parse_kb(WHAT, key, value)?,
            "Cached" => cached = parse_kb(WHAT, key, value)?,
            _ => {}
        }
    }
    let total = total.ok_or_else(|| Error::parse(WHAT, "MemTotal missing"))?;
    let free = free.ok_or_else(|| Error::parse(WHAT, "MemFree missing"))?;
    let available = avail.unwrap_or_else(|| free.saturating_add(buffers).saturating_add(cached));
    Ok(MemInfo { total_bytes: total, free_bytes: free, available_bytes: available.min(total) })
}

/// Parses `/proc/uptime` ("355.14 679.97"): seconds since boot.
pub fn parse_uptime(text: &str) -> Result<f64, Error> {
    let first = text.split_ascii_whitespace().next().ok_or_else(|| Error::parse("/proc/uptime", "empty"))?;
    parse_num("/proc/uptime", "uptime", first)
}

/// Counts "processor" lines of `/proc/cpuinfo` (the fallback CPU count).
pub fn count_cpuinfo(text: &str) -> u32 {
    let n = text.lines().filter(|l| l.split(':').next().map(str::trim) == Some("processor")).count();
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// CPUs this process may use: `available_parallelism` (which in Rust's std honours the
/// affinity mask and cgroup v1/v2 CPU quotas, i.e. what a container really gets), else the
/// processor count of /proc/cpuinfo, else 1.
pub fn cpu_count() -> u32 {
    if let Ok(n) = std::thread::available_parallelism() {
        return u32::try_from(n.get()).unwrap_or(u32::MAX);
    }
    read_text(Path::new("/proc/cpuinfo")).map(|t| count_cpuinfo(&t)).ok().filter(|&n| n > 0).unwrap_or(1)
}

/// Reads the current host sample from `/proc`.
pub fn read_host() -> Result<HostSample, Error> {
    read_host_from(Path::new("/proc"))
}

/// Same as [`read_host`] over another procfs root.
pub fn read_host_from(proc_root: &Path) -> Result<HostSample, Error> {
    let load = parse_loadavg(&read_text(&proc_root.join("loadavg"))?)?;
    let mem = parse_meminfo(&read_text(&proc_root.join("meminfo"))?)?;
    let uptime = parse_uptime(&read_text(&proc_root.join("uptime"))?)?;
    Ok(HostSample {
        load_avg_1: load.one,
        load_avg_5: load.five,
        load_avg_15: load.fifteen,
        mem_total_bytes: mem.total_bytes,
        mem_free_bytes: mem.free_bytes,
        mem_available_bytes: mem.available_bytes,
        cpu_count: cpu_count(),
        uptime_seconds: uptime,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMINFO: &str = "MemTotal:       24684096 kB\nMemFree:        24149472 kB\nMemAvailable:   24349372 kB\nBuffers:           13760 kB\nCached:           381396 kB\nHugePages_Total:       0\n";

    #[test]
    fn loadavg() {
        let l = parse_loadavg("0.44 0.14 0.04 1/85 3097\n").unwrap();
        assert_eq!((l.one, l.five, l.fifteen), (0.44, 0.14, 0.04));
        assert!(parse_loadavg("").is_err());
        assert!(parse_loadavg("0.1 0.2").is_err());
        assert!(parse_loadavg("a b c").is_err());
    }

    #[test]
    fn meminfo() {
        let m = parse_meminfo(MEMINFO).unwrap();
        assert_eq!(m.total_bytes, 24_684_096 * 1024);
        assert_eq!(m.free_bytes, 24_149_472 * 1024);
        assert_eq!(m.available_bytes, 24_349_372 * 1024);
    }

    #[test]
    fn meminfo_old_kernel_without_available() {
        let text = MEMINFO.replace("MemAvailable:   24349372 kB\n", "");
        let m = parse_meminfo(&text).unwrap();
        assert_eq!(m.available_bytes, (24_149_472 + 13_760 + 381_396) * 1024);
    }

    #[test]
    fn meminfo_malformed() {
        assert!(parse_meminfo("").is_err());
        assert!(parse_meminfo("MemTotal: 10 kB\n").is_err());
        assert!(parse_meminfo("MemTotal: x kB\nMemFree: 1 kB\n").is_err());
    }

    #[test]
    fn uptime_and_cpuinfo() {
        assert_eq!(parse_uptime("355.14 679.97\n").unwrap(), 355.14);
        assert!(parse_uptime("").is_err());
        assert!(parse_uptime("abc 1").is_err());
        let cpuinfo = "processor\t: 0\nmodel name\t: x\n\nprocessor\t: 1\nmodel name\t: x\n";
        assert_eq!(count_cpuinfo(cpuinfo), 2);
        assert_eq!(count_cpuinfo(""), 0);
        assert!(cpu_count() >= 1);
    }
}
