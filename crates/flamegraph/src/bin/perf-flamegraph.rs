//! Small CLI over the library:
//! `perf-flamegraph render PROFILE -o OUT.svg [...]` (what `perf-hub flamegraph` runs) and
//! `perf-flamegraph perf-capture --pid PID --seconds N --frequency HZ --out-dir DIR` (the helper).

const USAGE: &str = "usage: perf-flamegraph render PROFILE -o OUT.svg [--title T] [--folded F]\n       \
                     perf-flamegraph perf-capture --pid PID --seconds N --frequency HZ --out-dir DIR";

fn main() {
    let mut args = std::env::args().skip(1);
    let code = match args.next().as_deref() {
        Some("render") => perf_flamegraph::flamegraph_main(args),
        Some("perf-capture") => perf_flamegraph::perf_capture::helper_main(args),
        _ => {
            eprintln!("{USAGE}");
            2
        }
    };
    std::process::exit(code);
}
