//! One command in flight: from dispatch to the executor, through chunks and progress, to the
//! spooled file that the upload takes over. The executor (the inspector worker, in the addon)
//! drives it through [`JobHandle`]; every call returns an error value instead of panicking.

use crate::spool::{SpoolError, SpoolFile, SpoolWriter};
use perf_protocol::CommandKind;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What the executor needs to run a command (the JSON the worker receives).
#[derive(Debug, Clone, serde::Serialize)]
pub struct JobSpec {
    pub id: String,
    #[serde(flatten)]
    pub kind: CommandKind,
    pub force: bool,
    /// The JS thread was blocked (no heartbeat) when the command arrived: a CPU profile then
    /// makes V8 recompile the stuck code so it can be named (costly on a healthy process).
    pub main_blocked: bool,
}

/// Why a step of a command could not be taken; the binding hands it to JS as text.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("agent state poisoned")]
    Poisoned,
    #[error("command already finished")]
    Finished,
    #[error("the spool file was handed to another writer")]
    HandedOver,
    #[error("this command's spool file is not available for a snapshot")]
    SpoolUnavailable,
    #[error("command {0} is not a heap snapshot")]
    NotASnapshot(String),
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// An earlier chunk failed; the capture can't be completed.
    #[error("{0}")]
    Capture(String),
    /// The preflight refused the capture (the reason was sent to the hub).
    #[error("{0}")]
    Refused(String),
}

pub(crate) enum JobState {
    // Boxed: the spool's write buffer struct is large and `Finished` is empty.
    Capturing {
        spool: Box<SpoolWriter>,
        error: Option<String>,
    },
    /// The spool file was handed to a writer outside the agent (V8's own snapshot writer on the
    /// main thread); size and checksum are taken when it is done.
    WrittenExternally {
        path: PathBuf,
        limit: u64,
    },
    Finished,
}

pub(crate) struct Job {
    pub spec: JobSpec,
    pub upload_token: String,
    pub state: Mutex<JobState>,
    pub last_progress: Mutex<Option<Instant>>,
}

/// Progress is sent at most this often; V8 reports it far more often for big heaps.
pub(crate) const PROGRESS_EVERY: Duration = Duration::from_millis(250);

impl Job {
    pub fn new(spec: JobSpec, upload_token: String, spool: SpoolWriter) -> Self {
        Self {
            spec,
            upload_token,
            state: Mutex::new(JobState::Capturing { spool: Box::new(spool), error: None }),
            last_progress: Mutex::new(None),
        }
    }

    /// Appends a chunk; after the first failure further chunks are dropped and the error kept
    /// for `finish` (V8 can't be stopped mid-snapshot, but the host must not suffer).
    pub fn write(&self, chunk: &[u8]) -> Result<(), JobError> {
        let mut st = self.state.lock().map_err(|_| JobError::Poisoned)?;
        match &mut *st {
            JobState::Capturing { error: Some(e), .. } => Err(JobError::Capture(e.clone())),
            JobState::Capturing { spool, error } => spool.write(chunk).map_err(|e| {
                *error = Some(e.to_string());
                JobError::Spool(e)
            }),
            JobState::WrittenExternally { .. } => Err(JobError::HandedOver),
            JobState::Finished => Err(JobError::Finished),
        }
    }

    /// Hands the (still empty) spool file to a writer outside the agent and returns its path.
    /// Refused once anything was written through [`Job::write`] or the job ended.
    pub fn hand_over_file(&self) -> Result<PathBuf, JobError> {
        let mut st = self.state.lock().map_err(|_| JobError::Poisoned)?;
        match std::mem::replace(&mut *st, JobState::Finished) {
            JobState::Capturing { spool, error: None } if spool.written() == 0 => {
                let (path, limit) = spool.close_empty()?;
                *st = JobState::WrittenExternally { path: path.clone(), limit };
                Ok(path)
            }
            other => {
                *st = other;
                Err(JobError::SpoolUnavailable)
            }
        }
    }

    /// Bytes written so far to the spool file (for progress), whoever writes it.
    pub fn spooled_bytes(&self) -> u64 {
        let Ok(st) = self.state.lock() else { return 0 };
        match &*st {
            JobState::Capturing { spool, .. } => spool.written(),
            JobState::WrittenExternally { path, .. } => std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
            JobState::Finished => 0,
        }
    }

    /// Whether a progress message is due now.
    pub fn progress_due(&self) -> bool {
        let Ok(mut last) = self.last_progress.lock() else {
            return false;
        };
        let due = last.is_none_or(|t| t.elapsed() >= PROGRESS_EVERY);
        if due {
            *last = Some(Instant::now());
        }
        due
    }

    /// Closes the spool: the file if the capture succeeded, else the error.
    pub fn take_spool(&self) -> Result<SpoolFile, JobError> {
        let mut st = self.state.lock().map_err(|_| JobError::Poisoned)?;
        match std::mem::replace(&mut *st, JobState::Finished) {
            JobState::Capturing { spool, error: None } => Ok(spool.finish()?),
            JobState::Capturing { spool, error: Some(e) } => {
                let _ = std::fs::remove_file(spool.path());
                Err(JobError::Capture(e))
            }
            JobState::WrittenExternally { path, limit } => SpoolFile::seal(&path, limit).map_err(|e| {
                let _ = std::fs::remove_file(&path);
                JobError::Spool(e)
            }),
            JobState::Finished => Err(JobError::Finished),
        }
    }

    /// Drops the spool file of a capture that won't complete.
    pub fn discard(&self) {
        if let Ok(mut st) = self.state.lock() {
            match std::mem::replace(&mut *st, JobState::Finished) {
                JobState::Capturing { spool, .. } => {
                    let _ = std::fs::remove_file(spool.path());
                }
                JobState::WrittenExternally { path, .. } => {
                    let _ = std::fs::remove_file(path);
                }
                JobState::Finished => {}
            }
        }
    }
}
