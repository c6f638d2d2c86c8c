//! TLS for tests: a throwaway self-signed certificate for 127.0.0.1 (made with openssl), and
//! TLS, HTTPS and WebSocket-over-TLS clients that trust only it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls;
use tokio_tungstenite::WebSocketStream;

use crate::http::{get_request, http_exchange, HttpReply};
use crate::skip::ok_or_skip;

/// A self-signed certificate for 127.0.0.1 made with openssl in `dir`: the certificate and key
/// files, or `None` (test skipped) when openssl is missing outside CI.
pub fn self_signed(dir: &Path) -> Option<(PathBuf, PathBuf)> {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output();
    let out = ok_or_skip("a test with TLS (openssl makes its certificate)", made)?;
    assert!(
        out.status.success(),
        "openssl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some((cert, key))
}

/// A TLS connection to `addr` that trusts only `cert`.
pub async fn tls_connect(addr: SocketAddr, cert: &Path) -> std::io::Result<TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    for der in CertificateDer::pem_file_iter(cert).unwrap() {
        roots.add(der.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("127.0.0.1").unwrap();
    connector.connect(name, tcp).await
}

/// `GET path` over a new TLS connection to `addr` that trusts only `cert`.
pub async fn https_get(addr: SocketAddr, cert: &Path, path: &str) -> HttpReply {
    let tls = tls_connect(addr, cert).await.expect("TLS handshake");
    http_exchange(tls, &get_request(path, "")).await
}

/// A WebSocket over TLS to `path` on `addr`, trusting only `cert`.
pub async fn wss_connect(
    addr: SocketAddr,
    cert: &Path,
    path: &str,
) -> WebSocketStream<TlsStream<TcpStream>> {
    let tls = tls_connect(addr, cert).await.expect("TLS handshake");
    let url = format!("wss://{addr}{path}");
    let (ws, _) = tokio_tungstenite::client_async(url.as_str(), tls)
        .await
        .expect("WebSocket over TLS");
    ws
}
