//! What the benchmark reads about processes: the open-files limit, CPU time and memory from
//! `/proc` (Linux only), and the size of the hub's data directory.

use std::path::Path;

/// The open-files limit before and after raising the soft limit to the hard one.
#[derive(Debug, Clone, Copy)]
pub struct NoFile {
    pub soft_before: u64,
    pub soft: u64,
    pub hard: u64,
}

/// Raises RLIMIT_NOFILE's soft limit to the hard limit; children spawned afterwards inherit it.
pub fn raise_nofile() -> Result<NoFile, String> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(format!("getrlimit(RLIMIT_NOFILE): {}", std::io::Error::last_os_error()));
    }
    let soft_before = lim.rlim_cur;
    // An unlimited hard limit is still capped by the kernel's nr_open.
    let target = if lim.rlim_max == libc::RLIM_INFINITY { nr_open().unwrap_or(1 << 20) } else { lim.rlim_max };
    if target > lim.rlim_cur {
        let new = libc::rlimit { rlim_cur: target, rlim_max: lim.rlim_max };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } != 0 {
            return Err(format!("setrlimit(RLIMIT_NOFILE, {target}): {}", std::io::Error::last_os_error()));
        }
        lim.rlim_cur = target;
    }
    Ok(NoFile { soft_before, soft: lim.rlim_cur, hard: lim.rlim_max })
}

fn nr_open() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/fs/nr_open").ok()?.trim().parse().ok()
}

/// Number of local ports the kernel hands out for outgoing connections.
pub fn ephemeral_ports() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut it = s.split_whitespace().filter_map(|x| x.parse::<u64>().ok());
    let (lo, hi) = (it.next()?, it.next()?);
    Some(hi.saturating_sub(lo) + 1)
}

/// The 1-minute load average and the number of CPUs online (to tell a busy machine).
pub fn load() -> (Option<f64>, usize) {
    let l = std::fs::read_to_string("/proc/loadavg").ok().and_then(|s| s.split_whitespace().next()?.parse().ok());
    (l, std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
}

/// Clock ticks per second of utime/stime in /proc/PID/stat.
pub fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no memory effects.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// utime + stime of a process in seconds (`pid` None: this process).
pub fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // f[0] is field 3 (state); utime is field 14, stime field 15.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / clock_ticks())
}

/// CPU seconds (utime + stime) of each thread of a process, with the thread's name.
pub fn thread_cpu(pid: u32) -> Vec<(u32, String, f64)> {
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    let mut out = Vec::new();
    for e in rd.flatten().take(10_000) {
        let Some(tid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let base = e.path();
        let name = std::fs::read_to_string(base.join("comm")).unwrap_or_default().trim().to_string();
        let Ok(stat) = std::fs::read_to_string(base.join("stat")) else { continue };
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else { continue };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
        out.push((tid, name, (ticks(11) + ticks(12)) as f64 / clock_ticks()));
    }
    out
}

/// VmRSS and VmHWM in bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    pub rss: u64,
    pub hwm: u64,
}

pub fn memory(pid: u32) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = |key: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(key))?;
        line[key.len()..].split_whitespace().next()?.parse::<u64>().ok().map(|k| k * 1024)
    };
    Some(Memory { rss: kb("VmRSS:")?, hwm: kb("VmHWM:")? })
}

/// The soft "Max open files" of a running process.
pub fn max_open_files(pid: u32) -> Option<u64> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..].split_whitespace().next()?.parse().ok()
}

/// How many file descriptors a process has open.
pub fn open_fds(pid: u32) -> Option<u64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

/// Total size of the files under `dir` (bounded depth and count).
pub fn dir_size(dir: &Path) -> u64 {
    fn walk(dir: &Path, depth: u32, budget: &mut u32) -> u64 {
        let Ok(rd) = std::fs::read_dir(dir) else { return 0 };
        let mut total = 0;
        for e in rd.flatten() {
            if *budget == 0 {
                break;
            }
            *budget -= 1;
            let Ok(md) = e.metadata() else { continue };
            if md.is_dir() && depth < 8 {
                total += walk(&e.path(), depth + 1, budget);
            } else if md.is_file() {
                total += md.len();
            }
        }
        total
    }
    walk(dir, 0, &mut 100_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_figures() {
        assert!(cpu_seconds(None).is_some());
        let me = std::process::id();
        let m = memory(me).expect("status");
        assert!(m.rss > 0 && m.hwm >= m.rss);
        assert!(max_open_files(me).unwrap_or(0) > 0);
        assert!(open_fds(me).unwrap_or(0) > 0);
        assert!(!thread_cpu(me).is_empty());
    }
}
