//! Error type of the crate.
//!
//! Every failure on input data (a cut-off upload, a file that is not a heap snapshot, a snapshot
//! whose `meta` we do not understand, inconsistent arrays) is reported as a `HeapError` value;
//! nothing in the crate panics on bad input.

use std::path::PathBuf;

/// Why a heap snapshot could not be analysed.
#[derive(Debug, thiserror::Error)]
pub enum HeapError {
    /// Reading the file failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Reading failed on an unnamed stream.
    #[error("I/O error: {0}")]
    Read(#[from] std::io::Error),
    /// The input ended before the snapshot was complete (e.g. an interrupted upload).
    #[error("truncated heap snapshot: input ended at byte {offset} while reading {context}")]
    Truncated { offset: u64, context: &'static str },
    /// The input is not a V8 heap snapshot at all.
    #[error("not a V8 heap snapshot: {0}")]
    NotSnapshot(String),
    /// A snapshot whose `meta` (field layout, types) this parser does not support.
    #[error("unsupported heap snapshot: {0}")]
    Unsupported(String),
    /// Syntactically or structurally broken content.
    #[error("corrupt heap snapshot at byte {offset}: {message}")]
    Corrupt { offset: u64, message: String },
    /// A request the analysis can't answer (e.g. a leak hunt of fewer than two snapshots).
    #[error("{0}")]
    Invalid(String),
}

impl HeapError {
    /// Shorthand for a [`HeapError::Corrupt`] error.
    pub(crate) fn corrupt(offset: u64, message: impl Into<String>) -> Self {
        HeapError::Corrupt { offset, message: message.into() }
    }
}
