//! `heap-analyze analyze FILE [--json]` / `heap-analyze diff A B [--json]` / `heap-analyze leak A B C`
//! / `heap-analyze explore FILE`: a thin wrapper over [`perf_heap_analysis::cli_main`] (perf-hub's
//! `analyze` and `diff` commands call the same function).

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(perf_heap_analysis::cli_main(&args));
}
