//! TLS for servers: an acceptor built from a PEM certificate chain and private key, so a server
//! can answer `wss://` and `https://` on its port.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file could not be read or holds no certificate.
    #[error("cannot read the certificate chain in {path}: {message}")]
    Certificate {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// The key file could not be read or holds no private key.
    #[error("cannot read the private key in {path}: {message}")]
    Key {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// The key does not fit the certificate, or rustls refused them.
    #[error("the certificate and key cannot be used together: {0}")]
    Config(String),
}

/// Accepts TLS connections with one certificate chain and key.
#[derive(Clone)]
pub struct Tls {
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").finish_non_exhaustive()
    }
}

impl Tls {
    /// Reads a PEM certificate chain (leaf first) and a PEM private key (PKCS#8, PKCS#1 or
    /// SEC1).
    pub fn from_pem_files(certificate: &Path, key: &Path) -> Result<Self, TlsError> {
        let chain = CertificateDer::pem_file_iter(certificate)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|err| TlsError::Certificate {
                path: certificate.display().to_string(),
                message: err.to_string(),
            })?;
        if chain.is_empty() {
            return Err(TlsError::Certificate {
                path: certificate.display().to_string(),
                message: "no certificate found".to_owned(),
            });
        }
        let key = PrivateKeyDer::from_pem_file(key).map_err(|err| TlsError::Key {
            path: key.display().to_string(),
            message: err.to_string(),
        })?;
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|err| TlsError::Config(err.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|err| TlsError::Config(err.to_string()))?;
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }

    /// Completes the TLS handshake of a connection accepted from `peer` within `deadline`;
    /// `None` (logged at debug level) when it fails or takes longer.
    pub async fn accept(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        deadline: Duration,
    ) -> Option<TlsStream<TcpStream>> {
        match tokio::time::timeout(deadline, self.acceptor.accept(stream)).await {
            Ok(Ok(stream)) => Some(stream),
            Ok(Err(err)) => {
                tracing::debug!(%peer, error = %err, "TLS handshake failed");
                None
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake timed out");
                None
            }
        }
    }
}
