//! `perf script` text → folded stacks, with inferno's perf collapser (streamed: it reads the
//! input line by line and keeps only the distinct stacks).
//!
//! Like FlameGraph's stackcollapse-perf.pl, inferno weighs a sample by its event period when
//! `perf script` prints one (nanoseconds for `cpu-clock`), else counts 1 per sample;
//! [`weight_name`] tells which from the first event line.
//!
//! Frames from a perf map (`/tmp/perf-PID.map`, written by node `--perf-basic-prof`) get a
//! `_[j]` suffix and kernel frames `_[k]`, which inferno's `js` palette colours apart.

use std::io::{self, BufRead, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};

use inferno::collapse::perf::{Folder, Options};
use inferno::collapse::Collapse;

use crate::error::FlameError;

/// Collapses `perf script` output from `input` into folded text on `out`.
pub fn collapse_perf_script<R: BufRead, W: Write>(input: R, out: W) -> Result<(), FlameError> {
    let mut options = Options::default();
    options.annotate_jit = true;
    options.annotate_kernel = true;
    options.nthreads = threads();
    let mut folder = Folder::from(options);
    // inferno asserts on some malformed inputs; a bad file must be an error, not a crash.
    match catch_unwind(AssertUnwindSafe(|| folder.collapse(input, out))) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) if e.kind() == io::ErrorKind::InvalidData => Err(FlameError::invalid("perf script", e.to_string())),
        Ok(Err(e)) => Err(FlameError::io("collapsing perf script output", e)),
        Err(_) => Err(FlameError::invalid("perf script", "the collapser rejected the input")),
    }
}

/// What the collapsed weights count, judged from the first event line of `text`:
/// `"samples"` without a period field, `"ns"` for cpu-clock/task-clock periods, else `"events"`.
pub(crate) fn weight_name(text: &str) -> &'static str {
    let Some(event_line) =
        text.lines().find(|l| !l.trim().is_empty() && !l.starts_with('#') && !l.starts_with(char::is_whitespace))
    else {
        return "samples";
    };
    let mut tokens = event_line.split_whitespace();
    let is_time = |t: &str| {
        t.strip_suffix(':').is_some_and(|t| t.contains('.') && t.chars().all(|c| c.is_ascii_digit() || c == '.'))
    };
    if tokens.by_ref().find(|t| is_time(t)).is_none() {
        return "samples";
    }
    match (tokens.next(), tokens.next()) {
        (Some(period), Some(event)) if period.chars().all(|c| c.is_ascii_digit()) => {
            let event = event.split(':').next().unwrap_or("");
            if event == "cpu-clock" || event == "task-clock" {
                "ns"
            } else {
                "events"
            }
        }
        _ => "samples",
    }
}

#[cfg(feature = "multithreaded")]
fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(not(feature = "multithreaded"))]
fn threads() -> usize {
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    const PERF: &str = "node 1234 [001] 100.000001:   10101010 cpu-clock:pppH: \n\
        \t    7f0000001000 LazyCompile:*spin /app.js:3 (/tmp/perf-1234.map)\n\
        \t    55550000abcd v8::internal::Execution::Call (/usr/bin/node)\n\
        \t    7f00000000aa __libc_start_main (/usr/lib/x86_64-linux-gnu/libc.so.6)\n\
        \n\
        node 1234 [001] 100.000002:   10101010 cpu-clock:pppH: \n\
        \t    7f0000001000 LazyCompile:*spin /app.js:3 (/tmp/perf-1234.map)\n\
        \t    55550000abcd v8::internal::Execution::Call (/usr/bin/node)\n\
        \t    7f00000000aa __libc_start_main (/usr/lib/x86_64-linux-gnu/libc.so.6)\n\
        \n\
        node 1234 [001] 100.000003:   10101010 cpu-clock:pppH: \n\
        \tffffffff81000000 do_syscall_64 ([kernel.kallsyms])\n\
        \t    7f00000000aa __libc_start_main (/usr/lib/x86_64-linux-gnu/libc.so.6)\n\
        \n";

    #[test]
    fn collapses_with_annotations() {
        let mut out = Vec::new();
        collapse_perf_script(PERF.as_bytes(), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "node;__libc_start_main;do_syscall_64_[k] 10101010\n\
             node;__libc_start_main;v8::internal::Execution::Call;LazyCompile:*spin /app.js:3_[j] 20202020\n"
        );
        assert_eq!(weight_name(PERF), "ns");
    }

    #[test]
    fn without_period_counts_samples() {
        let no_period = PERF.replace("   10101010 cpu-clock:pppH:", " cpu-clock:");
        let mut out = Vec::new();
        collapse_perf_script(no_period.as_bytes(), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with("LazyCompile:*spin /app.js:3_[j] 2\n"), "{text}");
        assert_eq!(weight_name(&no_period), "samples");
        assert_eq!(weight_name("# c\nperf 9/9 [000] 5.5: 250000 cycles:u: \n\tx y (z)\n"), "events");
        assert_eq!(weight_name(""), "samples");
    }

    #[test]
    fn garbage_does_not_panic() {
        for bad in ["garbage\nmore\n\nx\n", "\n\n\n", "node 1 1.0: cpu-clock:\n\n\tx\n\n"] {
            let mut out = Vec::new();
            let _ = collapse_perf_script(bad.as_bytes(), &mut out);
        }
    }
}
