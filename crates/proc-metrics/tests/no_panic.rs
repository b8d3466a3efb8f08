//! Garbage in, error out: every parser is fed truncations and random bytes of real-looking
//! text and must return (Ok or Err), never panic.

use perf_proc_metrics::*;

const SAMPLES: &[&str] = &[
    "2940 (node) S 2931 2931 1875 0 -1 4194304 97 0 0 0 250 50 0 0 20 0 11 0 33322 3133440 382 1 2 3\n",
    "Name:\tnode\nVmSize:\t 1000 kB\nVmHWM:\t 60 kB\nVmRSS:\t 50 kB\nThreads:\t11\n",
    "MemTotal: 24684096 kB\nMemFree: 24149472 kB\nMemAvailable: 24349372 kB\n",
    "0.44 0.14 0.04 1/85 3097\n",
    "4:memory:/a/b\n0::/\n",
    "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n41 31 0:38 / /u\\040x rw - cgroup2 cgroup2 rw\n",
    "inactive_file 4096\nhierarchical_memory_limit 9223372036854771712\n",
];

fn feed(t: &str) {
    let _ = parse_stat(t);
    let _ = parse_status(t);
    let _ = parse_meminfo(t);
    let _ = parse_loadavg(t);
    let _ = parse_uptime(t);
    let _ = parse_proc_cgroup(t);
    let _ = parse_mountinfo(t);
    let _ = parse_limit(t);
    let _ = parse_memory_stat(t, "inactive_file");
    let _ = count_cpuinfo(t);
}

#[test]
fn truncations_never_panic() {
    for s in SAMPLES {
        for (i, _) in s.char_indices() {
            feed(&s[..i]);
            feed(&s[i..]);
        }
    }
}

#[test]
fn random_mutations_never_panic() {
    // xorshift: deterministic, no rand dependency.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let alphabet = b" \t\n:()\\-0123456789kBmax/,";
    for _ in 0..20_000 {
        let base = SAMPLES[(next() % SAMPLES.len() as u64) as usize].as_bytes();
        let mut b = base.to_vec();
        for _ in 0..(next() % 6) {
            let i = (next() % b.len() as u64) as usize;
            b[i] = alphabet[(next() % alphabet.len() as u64) as usize];
        }
        feed(&String::from_utf8_lossy(&b));
    }
}
