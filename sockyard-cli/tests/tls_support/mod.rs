//! TLS helpers the integration tests share: a throwaway self-signed certificate for 127.0.0.1
//! (made with openssl) and a client connection that trusts only it.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use tokio_rustls::rustls;

/// A self-signed certificate for 127.0.0.1 made with openssl, or `None` (test skipped) when
/// openssl is missing outside CI.
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
    match made {
        Ok(out) if out.status.success() => Some((cert, key)),
        Ok(out) => panic!("openssl failed: {}", String::from_utf8_lossy(&out.stderr)),
        Err(err) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "openssl is needed in CI: {err}"
            );
            eprintln!("skipped: openssl is not available ({err})");
            None
        }
    }
}

/// A TLS connection to `addr` that trusts only `cert`.
pub async fn tls_connect(
    addr: std::net::SocketAddr,
    cert: &Path,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    use rustls_pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for der in rustls_pki_types::CertificateDer::pem_file_iter(cert).unwrap() {
        roots.add(der.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    connector.connect(name, tcp).await
}

/// A WebSocket over TLS to `path` on `addr`, trusting only `cert`.
pub async fn wss_connect(
    addr: std::net::SocketAddr,
    cert: &Path,
    path: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let tls = tls_connect(addr, cert).await.expect("TLS handshake");
    let url = format!("wss://{addr}{path}");
    let (ws, _) = tokio_tungstenite::client_async(url.as_str(), tls)
        .await
        .expect("WebSocket over TLS");
    ws
}

/// Waits until the server drops `stream`, a connection that sent nothing (or unfinished
/// headers); returns how long that took. Panics when it is still open after `limit`.
pub async fn dropped_within(
    mut stream: impl tokio::io::AsyncRead + Unpin,
    limit: std::time::Duration,
) -> std::time::Duration {
    use tokio::io::AsyncReadExt as _;
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    // Closed or reset: either way it was dropped.
    let _closed_or_reset = tokio::time::timeout(limit, stream.read_to_end(&mut rest))
        .await
        .expect("the server kept a connection that never finished its handshake");
    started.elapsed()
}
