//! How the agent reaches the hub: a TCP connection, inside TLS when the config asks for it (the
//! control link and every upload alike). The hub's certificate is verified against the CA file
//! of [`TlsSettings::ca`], or the system's root certificates (`rustls-native-certs`: the
//! company's own CA is usually installed there, which Mozilla's bundle in `webpki-roots` would
//! not have). An agent with TLS configured never falls back to plaintext: every TLS problem is
//! an error of the connection attempt, retried with backoff like a hub that is down.

use crate::config::{AgentConfig, TlsSettings};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::TlsConnector;

/// Read and write halves of a plaintext or TLS connection alike.
pub type BoxRead = Box<dyn AsyncRead + Send + Unpin>;
pub type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// Most bytes of a CA file read (a bundle of a few hundred certificates is ~200 KB).
const MAX_CA_FILE_BYTES: u64 = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot connect to hub {hub}: {msg}")]
    Connect { hub: String, msg: String },
    #[error("TLS: cannot use the CA file {path}: {msg}")]
    CaFile { path: PathBuf, msg: String },
    #[error("TLS: {0}")]
    Setup(String),
    #[error("TLS handshake with hub {hub} failed: {msg}")]
    Handshake { hub: String, msg: String },
}

/// The way to the hub's agent port.
pub struct Transport {
    hub: String,
    connect_timeout: Duration,
    tls: Option<TlsClient>,
}

struct TlsClient {
    settings: TlsSettings,
    /// Built on first use and kept once it worked (a bad CA file is retried on the next attempt).
    connector: Mutex<Option<TlsConnector>>,
}

impl Transport {
    pub fn new(config: &AgentConfig) -> Self {
        Self {
            hub: config.hub.clone(),
            connect_timeout: config.connect_timeout,
            tls: config.tls.clone().map(|settings| TlsClient { settings, connector: Mutex::new(None) }),
        }
    }

    /// Plain TCP to `hub` (tests, and agents configured without TLS).
    pub fn plaintext(hub: &str) -> Self {
        Self { hub: hub.to_string(), connect_timeout: Duration::from_secs(10), tls: None }
    }

    pub fn hub(&self) -> &str {
        &self.hub
    }

    /// A new connection to the hub, through the TLS handshake when configured.
    pub async fn connect(&self) -> Result<(BoxRead, BoxWrite), TransportError> {
        // Build (or fail to build) the TLS client before touching the network.
        let tls = match &self.tls {
            Some(client) => Some((client.connector()?, client.server_name(&self.hub)?)),
            None => None,
        };
        let conn_err = |msg: String| TransportError::Connect { hub: self.hub.clone(), msg };
        let stream = tokio::time::timeout(self.connect_timeout, TcpStream::connect(&self.hub))
            .await
            .map_err(|_| conn_err("timed out".into()))?
            .map_err(|e| conn_err(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        let Some((connector, name)) = tls else {
            let (r, w) = stream.into_split();
            return Ok((Box::new(r), Box::new(w)));
        };
        let handshake_err = |msg: String| TransportError::Handshake { hub: self.hub.clone(), msg };
        let tls_stream = tokio::time::timeout(self.connect_timeout, connector.connect(name, stream))
            .await
            .map_err(|_| handshake_err("timed out".into()))?
            .map_err(|e| handshake_err(e.to_string()))?;
        let (r, w) = tokio::io::split(tls_stream);
        Ok((Box::new(r), Box::new(w)))
    }
}

impl TlsClient {
    fn connector(&self) -> Result<TlsConnector, TransportError> {
        if let Some(c) = self.connector.lock().ok().and_then(|c| c.clone()) {
            return Ok(c);
        }
        let roots = match &self.settings.ca {
            Some(path) => roots_from_ca_file(path)?,
            None => system_roots()?,
        };
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| TransportError::Setup(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = TlsConnector::from(Arc::new(config));
        if let Ok(mut slot) = self.connector.lock() {
            *slot = Some(connector.clone());
        }
        Ok(connector)
    }

    /// The name the hub's certificate must carry: the configured one, or the host part of the
    /// hub address (an IP address there is checked against the certificate's IP entries).
    fn server_name(&self, hub: &str) -> Result<ServerName<'static>, TransportError> {
        let name = match &self.settings.servername {
            Some(n) => n.clone(),
            None => host_part(hub).to_string(),
        };
        ServerName::try_from(name.clone()).map_err(|_| {
            TransportError::Setup(format!("'{name}' is not a valid TLS server name (option tls.servername)"))
        })
    }
}

/// `host` of `host:port` or `[v6]:port`.
pub fn host_part(hub: &str) -> &str {
    if let Some(rest) = hub.strip_prefix('[') {
        return rest.split_once(']').map_or(rest, |(h, _)| h);
    }
    hub.rsplit_once(':').map_or(hub, |(h, _)| h)
}

fn roots_from_ca_file(path: &std::path::Path) -> Result<rustls::RootCertStore, TransportError> {
    let err = |msg: String| TransportError::CaFile { path: path.to_path_buf(), msg };
    let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
    if meta.len() > MAX_CA_FILE_BYTES {
        return Err(err(format!("larger than {MAX_CA_FILE_BYTES} bytes")));
    }
    let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(format!("not a PEM certificate file: {e}")))?;
    let mut roots = rustls::RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(err("no usable CERTIFICATE in it".into()));
    }
    Ok(roots)
}

fn system_roots() -> Result<rustls::RootCertStore, TransportError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        let why = found.errors.first().map(|e| format!(" ({e})")).unwrap_or_default();
        return Err(TransportError::Setup(format!(
            "no system root certificates found{why}: give the hub's CA with PERF_AGENT_TLS_CA or tls.ca"
        )));
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_of_an_address() {
        assert_eq!(host_part("127.0.0.1:7070"), "127.0.0.1");
        assert_eq!(host_part("hub.corp.example:7070"), "hub.corp.example");
        assert_eq!(host_part("[::1]:7070"), "::1");
        assert_eq!(host_part("hub"), "hub");
    }

    #[test]
    fn bad_ca_files_are_clear_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").expect("write");
        let e = roots_from_ca_file(&dir.path().join("missing.pem")).unwrap_err().to_string();
        assert!(e.contains("missing.pem") && e.contains("CA file"), "{e}");
        let e = roots_from_ca_file(&junk).unwrap_err().to_string();
        assert!(e.contains("junk.pem") && e.contains("no usable CERTIFICATE"), "{e}");
    }
}
