//! The error type of folding and rendering.

use std::io;

/// Why a profile could not be folded or rendered.
#[derive(Debug, thiserror::Error)]
pub enum FlameError {
    /// Reading the input or writing the output failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    /// The input looked like JSON of a known kind but did not parse as it.
    #[error("invalid {format} JSON: {source}")]
    Json {
        format: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// The content is none of the supported formats.
    #[error(
        "unrecognised profile format: expected a V8 .cpuprofile or .heapprofile (JSON), \
         `perf script` output, or folded stacks (`a;b;c 12` lines)"
    )]
    UnknownFormat,
    /// The input parsed but is inconsistent (dangling ids, cycles, too deep, ...).
    #[error("invalid {format}: {reason}")]
    InvalidProfile { format: &'static str, reason: String },
    /// Nothing to draw: no samples / no allocations.
    #[error("the profile holds no samples (the process used no CPU during the capture, or the input is empty)")]
    NoSamples,
    /// inferno failed to render the SVG.
    #[error("rendering the flame graph failed: {0}")]
    Render(#[source] io::Error),
}

impl FlameError {
    /// Wraps an I/O error with what we were doing.
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        FlameError::Io { context: context.into(), source }
    }

    pub(crate) fn invalid(format: &'static str, reason: impl Into<String>) -> Self {
        FlameError::InvalidProfile { format, reason: reason.into() }
    }
}
