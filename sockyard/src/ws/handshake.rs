//! The HTTP side of opening a WebSocket (RFC 6455 §4.2): request checks and the accept key.

use base64::Engine as _;
use http::HeaderMap;
use sha1::{Digest, Sha1};
use thiserror::Error;

/// The GUID every server appends to the client's key (RFC 6455 §1.3).
const ACCEPT_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Why an HTTP request cannot be upgraded; each becomes an HTTP 400 with this text.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum UpgradeError {
    /// The request is not a GET.
    #[error("WebSocket upgrade requires GET")]
    NotGet,
    /// The request is older than HTTP/1.1 (RFC 6455 §4.1).
    #[error("WebSocket upgrade requires HTTP/1.1 or later")]
    OldHttp,
    /// `Upgrade: websocket` or `Connection: upgrade` is missing.
    #[error("missing Upgrade: websocket / Connection: upgrade headers")]
    NotUpgrade,
    /// `Sec-WebSocket-Version` is not 13.
    #[error("unsupported Sec-WebSocket-Version (only 13 is supported)")]
    BadVersion,
    /// `Sec-WebSocket-Key` is missing or not 16 bytes of base64.
    #[error("missing or malformed Sec-WebSocket-Key")]
    BadKey,
    /// `Sec-WebSocket-Key` appears more than once (RFC 6455 §4.2.1 allows one).
    #[error("more than one Sec-WebSocket-Key header")]
    DuplicateKey,
}

/// Whether the headers ask for a WebSocket upgrade at all (as opposed to a plain HTTP request).
pub fn wants_upgrade(headers: &HeaderMap) -> bool {
    header_has_token(headers, http::header::UPGRADE, "websocket")
}

/// Checks an upgrade request (its method, HTTP version and headers) and returns the
/// `Sec-WebSocket-Accept` value to answer with.
pub fn accept(
    method: &http::Method,
    version: http::Version,
    headers: &HeaderMap,
) -> Result<String, UpgradeError> {
    if method != http::Method::GET {
        return Err(UpgradeError::NotGet);
    }
    if version < http::Version::HTTP_11 {
        return Err(UpgradeError::OldHttp);
    }
    if !wants_upgrade(headers) || !header_has_token(headers, http::header::CONNECTION, "upgrade") {
        return Err(UpgradeError::NotUpgrade);
    }
    if headers
        .get(http::header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        return Err(UpgradeError::BadVersion);
    }
    let mut keys = headers.get_all(http::header::SEC_WEBSOCKET_KEY).iter();
    let key = keys.next().ok_or(UpgradeError::BadKey)?.as_bytes();
    if keys.next().is_some() {
        return Err(UpgradeError::DuplicateKey);
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(key)
        .map_err(|_| UpgradeError::BadKey)?;
    if decoded.len() != 16 {
        return Err(UpgradeError::BadKey);
    }
    Ok(accept_key(key))
}

/// `base64(sha1(key ++ GUID))`.
pub fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(ACCEPT_GUID);
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

fn header_has_token(headers: &HeaderMap, name: http::header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|value| {
        value
            .to_str()
            .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            .unwrap_or(false)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Version;

    const HTTP_11: Version = Version::HTTP_11;

    fn request_headers() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("upgrade", "websocket".parse().unwrap());
        headers.insert("connection", "keep-alive, Upgrade".parse().unwrap());
        headers.insert("sec-websocket-version", "13".parse().unwrap());
        headers.insert(
            "sec-websocket-key",
            "dGhlIHNhbXBsZSBub25jZQ==".parse().unwrap(),
        );
        headers
    }

    #[test]
    fn computes_the_rfc_example_accept_key() {
        // RFC 6455 §1.3.
        assert_eq!(
            accept(&http::Method::GET, HTTP_11, &request_headers()).unwrap(),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn rejects_incomplete_requests() {
        assert_eq!(
            accept(&http::Method::POST, HTTP_11, &request_headers()),
            Err(UpgradeError::NotGet)
        );
        let mut headers = request_headers();
        headers.remove("connection");
        assert_eq!(
            accept(&http::Method::GET, HTTP_11, &headers),
            Err(UpgradeError::NotUpgrade)
        );
        let mut headers = request_headers();
        headers.insert("sec-websocket-version", "8".parse().unwrap());
        assert_eq!(
            accept(&http::Method::GET, HTTP_11, &headers),
            Err(UpgradeError::BadVersion)
        );
        let mut headers = request_headers();
        headers.insert("sec-websocket-key", "c2hvcnQ=".parse().unwrap());
        assert_eq!(
            accept(&http::Method::GET, HTTP_11, &headers),
            Err(UpgradeError::BadKey)
        );
    }

    #[test]
    fn refuses_http_1_0_and_a_repeated_key() {
        for version in [Version::HTTP_10, Version::HTTP_09] {
            assert_eq!(
                accept(&http::Method::GET, version, &request_headers()),
                Err(UpgradeError::OldHttp)
            );
        }
        let mut headers = request_headers();
        headers.append(
            "sec-websocket-key",
            "dGhlIHNhbXBsZSBub25jZQ==".parse().unwrap(),
        );
        assert_eq!(
            accept(&http::Method::GET, HTTP_11, &headers),
            Err(UpgradeError::DuplicateKey)
        );
    }
}
