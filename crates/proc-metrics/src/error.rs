//! The one error type of this crate. Reading the OS can fail (file missing, permission,
//! process gone) and so can parsing (a kernel with other fields, truncated reads): both are
//! reported as data, never as a panic, because this runs inside the customer's process.

use std::path::Path;

/// Everything that can go wrong while reading or parsing a metrics source.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file under /proc or /sys could not be read.
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The text was read but did not have the expected shape.
    #[error("parsing {what}: {reason}")]
    Parse { what: &'static str, reason: String },
}

impl Error {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io { path: path.display().to_string(), source }
    }

    pub(crate) fn parse(what: &'static str, reason: impl Into<String>) -> Self {
        Error::Parse { what, reason: reason.into() }
    }
}

/// Reads a whole (small) procfs/sysfs file as text.
pub(crate) fn read_text(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|e| Error::io(path, e))
}

/// Parses one whitespace-free number, naming the source and field in the error.
pub(crate) fn parse_num<T: std::str::FromStr>(what: &'static str, field: &str, text: &str) -> Result<T, Error> {
    text.trim().parse::<T>().map_err(|_| Error::parse(what, format!("field {field}: not a number: {text:?}")))
}
