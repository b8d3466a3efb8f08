//! TLS for both hub ports (rustls on the `ring` provider): loads the PEM certificate chain and
//! private key given with `--tls-cert`/`--tls-key` into one [`TlsAcceptor`], and accepts a TLS
//! connection within a deadline, so a client that stalls its handshake only holds its own task.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::rustls;
pub use tokio_rustls::server::TlsStream;
pub use tokio_rustls::TlsAcceptor;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("--tls-cert and --tls-key go together (got only {0})")]
    Incomplete(&'static str),
    #[error("TLS certificate {path}: {msg}")]
    Cert { path: PathBuf, msg: String },
    #[error("TLS private key {path}: {msg}")]
    Key { path: PathBuf, msg: String },
    #[error("TLS certificate {cert} and key {key} don't fit together: {msg}")]
    Config { cert: PathBuf, key: PathBuf, msg: String },
}

/// The acceptor for `cert`/`key`, or `None` without TLS. One of the two without the other is an
/// error (a hub that silently fell back to plaintext would be worse than one that doesn't start).
pub fn acceptor(cert: Option<&Path>, key: Option<&Path>) -> Result<Option<TlsAcceptor>, TlsError> {
    match (cert, key) {
        (None, None) => Ok(None),
        (Some(_), None) => Err(TlsError::Incomplete("--tls-cert")),
        (None, Some(_)) => Err(TlsError::Incomplete("--tls-key")),
        (Some(cert), Some(key)) => Ok(Some(TlsAcceptor::from(Arc::new(server_config(cert, key)?)))),
    }
}

fn server_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, TlsError> {
    let chain = load_chain(cert)?;
    let key_der = load_key(key)?;
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, key_der))
        .map_err(|e| TlsError::Config { cert: cert.to_path_buf(), key: key.to_path_buf(), msg: e.to_string() })
}

fn load_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |msg: String| TlsError::Cert { path: path.to_path_buf(), msg };
    let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(format!("not a PEM certificate file: {e}")))?;
    if chain.is_empty() {
        return Err(err("no CERTIFICATE block in the file".into()));
    }
    Ok(chain)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let err = |msg: String| TlsError::Key { path: path.to_path_buf(), msg };
    let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| err(format!("no PKCS#8, PKCS#1 or SEC1 private key in the file ({e})")))
}

/// The TLS handshake of one accepted connection, bounded by `timeout`.
pub async fn accept(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    timeout: Duration,
) -> std::io::Result<TlsStream<TcpStream>> {
    tokio::time::timeout(timeout, acceptor.accept(stream))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_or_bad_files_are_clear_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("nope.pem");
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "hello").expect("write");
        assert!(matches!(acceptor(Some(&junk), None), Err(TlsError::Incomplete("--tls-cert"))));
        let e = acceptor(Some(&missing), Some(&junk)).err().expect("error").to_string();
        assert!(e.contains("nope.pem") && e.contains("certificate"), "{e}");
        let e = acceptor(Some(&junk), Some(&junk)).err().expect("error").to_string();
        assert!(e.contains("junk.pem") && e.contains("no CERTIFICATE"), "{e}");
        assert!(acceptor(None, None).expect("plaintext").is_none());
    }
}
