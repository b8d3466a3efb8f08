//! Uploads a spooled artifact to the hub on its own TCP connection, resuming from the offset the
//! hub already holds, and retrying with backoff until the hub confirms size and checksum.

use crate::backoff::Backoff;
use crate::spool::SpoolFile;
use crate::transport::{BoxRead, BoxWrite, Transport};
use perf_protocol::{ErrorCode, FrameReader, FrameWriter, Message, ProtocolError, UploadHello, PROTOCOL_VERSION};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

const CHUNK: usize = 256 * 1024;
/// A checksum rejected this often means the spool itself is bad: stop retrying.
const MAX_CHECKSUM_FAILURES: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// Worth retrying: network, hub restart, timeouts.
    #[error("upload interrupted: {0}")]
    Transient(String),
    /// Retrying can't help (bad token, unknown artifact, too large).
    #[error("upload refused by the hub: {0}")]
    Refused(String),
    #[error("hub rejected the upload: {0}")]
    Rejected(String),
}

impl From<ProtocolError> for UploadError {
    fn from(e: ProtocolError) -> Self {
        UploadError::Transient(e.to_string())
    }
}

impl From<std::io::Error> for UploadError {
    fn from(e: std::io::Error) -> Self {
        UploadError::Transient(e.to_string())
    }
}

pub struct UploadJob {
    /// The hub's agent port, over TLS when the agent is configured for it.
    pub transport: Arc<Transport>,
    pub command_id: String,
    pub token: String,
    pub file: SpoolFile,
}

/// Retries until stored, refused for good, or `cancel` fires. Returns the final outcome.
pub async fn upload_with_retry(
    job: &UploadJob,
    mut backoff: Backoff,
    mut cancel: tokio::sync::watch::Receiver<bool>,
) -> Result<(), UploadError> {
    let mut checksum_failures = 0;
    loop {
        let err = match upload_once(job).await {
            Ok(()) => return Ok(()),
            Err(e @ UploadError::Refused(_)) => return Err(e),
            Err(UploadError::Rejected(m)) => {
                checksum_failures += 1;
                if checksum_failures >= MAX_CHECKSUM_FAILURES {
                    return Err(UploadError::Rejected(m));
                }
                UploadError::Rejected(m)
            }
            Err(e) => e,
        };
        let delay = backoff.next_delay();
        tracing::warn!(artifact = %job.command_id, error = %err, ?delay, "upload failed, retrying");
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = cancel.changed() => return Err(UploadError::Transient("agent stopped".into())),
        }
    }
}

async fn upload_once(job: &UploadJob) -> Result<(), UploadError> {
    // TLS problems are retried like a hub that is down: never a fallback to plaintext.
    let (r, w) = job.transport.connect().await.map_err(|e| UploadError::Transient(e.to_string()))?;
    let mut reader = FrameReader::new(r);
    let mut writer = FrameWriter::new(w);
    writer
        .send(&Message::UploadHello(UploadHello {
            protocol_version: PROTOCOL_VERSION,
            command_id: job.command_id.clone(),
            token: job.token.clone(),
            size: job.file.size,
            sha256: job.file.sha256.clone(),
        }))
        .await?;
    let offset = match read_reply(&mut reader).await? {
        Message::UploadOffset { offset } => offset.min(job.file.size),
        Message::UploadAck { ok: true, .. } => return Ok(()),
        Message::UploadAck { ok: false, error } => return Err(UploadError::Rejected(error.unwrap_or_default())),
        // Another stream of ours still holds the artifact (a connection the hub hasn't seen
        // close yet): try again later.
        Message::Error { code: ErrorCode::Busy, message } => return Err(UploadError::Transient(message)),
        Message::Error { message, .. } => return Err(UploadError::Refused(message)),
        other => return Err(UploadError::Transient(format!("unexpected {}", other.name()))),
    };
    send_file_from(&mut writer, job, offset).await?;
    writer.send(&Message::UploadDone).await?;
    match read_reply(&mut reader).await? {
        Message::UploadAck { ok: true, .. } => Ok(()),
        Message::UploadAck { ok: false, error } => Err(UploadError::Rejected(error.unwrap_or_default())),
        other => Err(UploadError::Transient(format!("unexpected {}", other.name()))),
    }
}

/// Waits for the hub's answer; verifying a large file takes it a while.
async fn read_reply(reader: &mut FrameReader<BoxRead>) -> Result<Message, UploadError> {
    tokio::time::timeout(Duration::from_secs(600), reader.read_message())
        .await
        .map_err(|_| UploadError::Transient("no answer from the hub".into()))?
        .map_err(UploadError::from)
}

async fn send_file_from(writer: &mut FrameWriter<BoxWrite>, job: &UploadJob, offset: u64) -> Result<(), UploadError> {
    let mut f = tokio::fs::File::open(&job.file.path).await?;
    f.seek(std::io::SeekFrom::Start(offset)).await?;
    let mut buf = vec![0u8; CHUNK];
    let mut sent = offset;
    while sent < job.file.size {
        let want = CHUNK.min((job.file.size - sent) as usize);
        let n = f.read(&mut buf[..want]).await?;
        if n == 0 {
            return Err(UploadError::Refused("spool file is shorter than recorded".into()));
        }
        writer.send_data(&buf[..n]).await?;
        sent += n as u64;
    }
    Ok(())
}
