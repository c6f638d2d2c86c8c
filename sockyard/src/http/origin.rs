//! The `Origin` allow-list of WebSocket upgrades, for `[[endpoint]] origins`, `[[room]]
//! origins` and `sockyard wrap --origin`: a browser's cross-site connection from a page not
//! listed is refused (403) before the upgrade.

use http::header;

/// Whether the request's `Origin` is one of `allowed` (a full origin such as
/// `https://example.com`, or `host[:port]`). No list: every origin.
pub(crate) fn origin_allowed(headers: &http::HeaderMap, allowed: &[String]) -> bool {
    if allowed.is_empty() {
        return true;
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        // Non-browser clients send no Origin; the list guards against other sites' pages.
        return true;
    };
    let host = origin.split_once("://").map_or(origin, |(_, host)| host);
    allowed
        .iter()
        .any(|entry| entry.eq_ignore_ascii_case(origin) || entry.eq_ignore_ascii_case(host))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn origins_match_whole_or_by_host() {
        let mut headers = http::HeaderMap::new();
        let allowed = vec!["example.com".to_owned(), "http://localhost:8080".to_owned()];
        assert!(origin_allowed(&headers, &allowed), "no Origin header");
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://example.com"),
        );
        assert!(origin_allowed(&headers, &allowed));
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://localhost:8080"),
        );
        assert!(origin_allowed(&headers, &allowed));
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        assert!(!origin_allowed(&headers, &allowed));
        assert!(origin_allowed(&headers, &[]));
    }
}
