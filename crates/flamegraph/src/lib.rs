//! perf-flamegraph: flame graphs for perf-agent.
//!
//! * [`fold_reader`] / [`fold_file`]: turn a V8 `.cpuprofile`, a V8 `.heapprofile`,
//!   `perf script` text or already folded stacks into folded-stack text
//!   (`root;child;leaf count`, one line per stack). The format is detected from the content
//!   ([`detect_format`]).
//! * [`render_svg`] / [`write_svg`]: folded stacks → SVG flame graph (inferno's renderer).
//! * [`render_differential_svg`] / [`hotter_functions`]: compare two profiles (differential
//!   flame graph; the functions that got hotter first).
//! * [`render_file`]: the whole path for `perf-hub flamegraph PROFILE -o out.svg`.
//! * [`perf_capture`]: run `perf record` / `perf script` against a pid and fold the stream
//!   (used from a helper child process; see [`perf_capture::helper_main`]).
//!
//! `perf script` input is streamed (it can be hundreds of MB); JSON profiles are read whole
//! (they are small) and parsed with typed serde structs.

mod cli;
mod cpuprofile;
mod detect;
mod differential;
mod error;
mod folded;
mod heapprofile;
mod json;
mod perf_script;
mod pipeline;
mod render;

pub mod perf_capture;

pub use cli::{flamegraph_main, run_args as run_flamegraph_args, Args as FlamegraphArgs};
pub use cpuprofile::fold_cpuprofile;
pub use detect::{detect_format, InputFormat};
pub use differential::{differential_folded, hotter_functions, render_differential_svg, FunctionDelta};
pub use error::FlameError;
pub use folded::{Folded, FoldedSummary};
pub use heapprofile::fold_heapprofile;
pub use perf_script::collapse_perf_script;
pub use pipeline::{fold_file, fold_reader, render_file, write_svg, FoldOutput, Stats};
pub use render::{render_svg, render_svg_str, RenderOptions};
