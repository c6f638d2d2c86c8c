//! Raw HTTP/1.1 for tests: a request written by hand over a new connection (plain, or any
//! stream such as TLS), the response parsed, a series read from a `/metrics` text, and a check
//! that the server drops a connection that never finishes its request.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::wait::WAIT;
use crate::ws::Io;

/// An HTTP response.
#[derive(Debug, Clone)]
pub struct HttpReply {
    /// The status code.
    pub status: u16,
    /// The header block (lower-cased names), as text.
    pub headers: String,
    /// The body.
    pub body: String,
}

impl HttpReply {
    /// The value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key.trim().eq_ignore_ascii_case(name)).then(|| value.trim().to_owned())
        })
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }
}

/// The bytes of `GET path` with `Connection: close` and `extra_headers` (each line ending in
/// `\r\n`), the path sent exactly as given.
pub fn get_request(path: &str, extra_headers: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra_headers}\r\n")
        .into_bytes()
}

/// The headers of a WebSocket upgrade request, each line ending in `\r\n` (the key is RFC 6455's
/// example).
pub const UPGRADE_HEADERS: &str = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

/// An upgrade request for `path` ([`UPGRADE_HEADERS`] and `extra_headers`) sent as HTTP/1.0,
/// which RFC 6455 §4.1 does not allow.
pub fn http_1_0_upgrade_request(path: &str, extra_headers: &str) -> Vec<u8> {
    let request = get_request(path, &format!("{UPGRADE_HEADERS}{extra_headers}"));
    String::from_utf8_lossy(&request)
        .replacen(" HTTP/1.1\r\n", " HTTP/1.0\r\n", 1)
        .into_bytes()
}

/// `GET path` over a new connection, the path sent exactly as given.
pub async fn http_get(addr: SocketAddr, path: &str) -> HttpReply {
    http_raw(addr, &get_request(path, "")).await
}

/// Sends `request` bytes over a new connection and reads the response until the server closes.
pub async fn http_raw(addr: SocketAddr, request: &[u8]) -> HttpReply {
    let stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
        .await
        .expect("connecting timed out")
        .expect("connect");
    http_exchange(stream, request).await
}

/// Sends `request` bytes over `stream` and reads the response until the server closes.
pub async fn http_exchange(mut stream: impl Io, request: &[u8]) -> HttpReply {
    let exchange = async {
        stream.write_all(request).await.expect("write request");
        let mut bytes = Vec::new();
        stream.read_to_end(&mut bytes).await.expect("read response");
        bytes
    };
    let bytes = tokio::time::timeout(WAIT, exchange)
        .await
        .expect("HTTP request timed out");
    parse_http(&bytes)
}

/// Parses an HTTP/1.1 response with a `Content-Length` body.
pub fn parse_http(bytes: &[u8]) -> HttpReply {
    let text = String::from_utf8_lossy(bytes);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    let (status_line, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    HttpReply {
        status,
        headers: headers.to_owned(),
        body: body.to_owned(),
    }
}

/// Waits until the server drops `stream`, a connection that sent nothing (or unfinished
/// headers); returns how long that took. Panics when it is still open after `limit`.
pub async fn dropped_within(mut stream: impl AsyncRead + Unpin, limit: Duration) -> Duration {
    let started = Instant::now();
    let mut rest = Vec::new();
    // Closed or reset: either way it was dropped.
    let _closed_or_reset = tokio::time::timeout(limit, stream.read_to_end(&mut rest))
        .await
        .expect("the server kept a connection that never finished its handshake");
    started.elapsed()
}

/// The value of `series` (a metric name with its labels as rendered, e.g.
/// `sockyard_room_connections_open{room="a"}`) in an OpenMetrics text.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?.strip_prefix(' ')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}
