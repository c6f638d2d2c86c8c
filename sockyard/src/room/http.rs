//! The HTTP side of rooms: the WebSocket upgrade into a room (origin, token and admission
//! checked before answering 101, so refusals are plain HTTP statuses), the room API
//! (`/api/rooms`, `/api/<room>/…`) and static files.

use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};

use http::header;
use http::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use percent_encoding::percent_decode_str;

use super::program::Creator;
use super::{Refusal, Rooms};
use crate::http::origin::origin_allowed;
use crate::http::response::{respond, switching_protocols};
use crate::http::HttpResponse;
use crate::ws::handshake;

fn refusal(refusal: &Refusal) -> HttpResponse {
    let status = StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::BAD_REQUEST);
    respond(status, "text/plain", format!("{}\n", refusal.message))
}

/// The room named by a path like `/lobby` (or `/lobby/`), percent-decoded; `None` for any
/// other shape.
pub(crate) fn room_of_path(path: &str) -> Option<Result<String, Refusal>> {
    let rest = path.strip_prefix('/')?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() || rest.contains('/') {
        return None;
    }
    Some(
        percent_decode_str(rest)
            .decode_utf8()
            .map(|name| name.into_owned())
            .map_err(|_| Refusal {
                status: 400,
                message: "Invalid room".to_owned(),
            }),
    )
}

/// The token a client presents: `?token=…` or `Authorization: Bearer …`.
fn token_of(request: &Request<hyper::body::Incoming>) -> Option<String> {
    token_in(request.headers(), request.uri().query())
}

/// The token in an `Authorization` header (scheme `Bearer`, in any case, as RFC 7235 says
/// schemes are) or else in the query's `token` parameter.
fn token_in(headers: &http::HeaderMap, query: Option<&str>) -> Option<String> {
    if let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim_start().split_once(' '))
        .and_then(|(scheme, token)| scheme.eq_ignore_ascii_case("bearer").then_some(token))
    {
        return Some(value.trim().to_owned());
    }
    let query = query?;
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == "token").then(|| percent_decode_str(value).decode_utf8_lossy().into_owned())
    })
}

/// Checks the token when the rooms require one: valid, and if it names rooms (`room` or
/// `rooms` claims), naming this one.
fn check_token(
    rooms: &Rooms,
    request: &Request<hyper::body::Incoming>,
    name: &str,
) -> Result<(), Refusal> {
    let Some(auth) = &rooms.service.auth else {
        return Ok(());
    };
    let unauthorized = |message: &str| Refusal {
        status: 401,
        message: message.to_owned(),
    };
    let token = token_of(request).ok_or_else(|| unauthorized("A token is required"))?;
    let claims = auth
        .verify(&token)
        .map_err(|err| unauthorized(&err.to_api_error().message))?;
    let allowed = match (claims.get("room"), claims.get("rooms")) {
        (None, None) => true,
        (Some(room), _) if room.as_str() == Some(name) => true,
        (_, Some(serde_json::Value::Array(list))) => list.iter().any(|r| r.as_str() == Some(name)),
        _ => false,
    };
    if allowed {
        Ok(())
    } else {
        Err(Refusal {
            status: 403,
            message: "The token does not open this room".to_owned(),
        })
    }
}

/// The query string the program sees: as sent, without the `token` parameter when rooms
/// require tokens (a credential is not the program's business).
fn program_query(query: &str, tokens: bool) -> String {
    if !tokens {
        return query.to_owned();
    }
    query
        .split('&')
        .filter(|pair| pair.split('=').next() != Some("token"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Answers a WebSocket upgrade into room `name`: on success 101, and the client runs on the
/// rooms' task tracker.
pub(crate) fn upgrade(
    rooms: &Rooms,
    request: &mut Request<hyper::body::Incoming>,
    peer: SocketAddr,
    name: &str,
    origins: &[String],
) -> HttpResponse {
    let accept = match handshake::accept(request.method(), request.version(), request.headers()) {
        Ok(accept) => accept,
        Err(err) => return respond(StatusCode::BAD_REQUEST, "text/plain", format!("{err}\n")),
    };
    if !origin_allowed(request.headers(), origins) {
        return respond(StatusCode::FORBIDDEN, "text/plain", "Origin not allowed\n");
    }
    if let Err(refused) = check_token(rooms, request, name) {
        return refusal(&refused);
    }
    let creator = Creator {
        remote_addr: peer.to_string(),
        query_string: program_query(
            request.uri().query().unwrap_or_default(),
            rooms.service.auth.is_some(),
        ),
    };
    let ticket = match rooms.admit(name, &creator) {
        Ok(ticket) => ticket,
        Err(refused) => return refusal(&refused),
    };
    let on_upgrade = hyper::upgrade::on(request);
    rooms.service.tracker.spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => super::client::run(TokioIo::new(upgraded), ticket).await,
            Err(err) => tracing::debug!(error = %err, "upgrade failed"),
        }
    });
    switching_protocols(&accept)
}

/// Answers an upgrade request for `path` (within the mount: `/<room>`): the upgrade into that
/// room, or 400 for a name that is not one; `None` when the path names no room at all.
pub(crate) fn upgrade_at(
    rooms: &Rooms,
    request: &mut Request<hyper::body::Incoming>,
    peer: SocketAddr,
    path: &str,
    origins: &[String],
) -> Option<HttpResponse> {
    Some(match room_of_path(path)? {
        Ok(name) => upgrade(rooms, request, peer, &name, origins),
        Err(refused) => respond(
            StatusCode::BAD_REQUEST,
            "text/plain",
            format!("{}\n", refused.message),
        ),
    })
}

/// Answers `GET /api/…` (`rest` is what follows `/api/`): `rooms` lists the running rooms,
/// `<room>` gives one room, `<room>/connections` its client count, `<room>/metadata` the
/// metadata its program set. Reading never creates a room or a metric.
pub(crate) fn api(rooms: &Rooms, rest: &str) -> HttpResponse {
    let rest = rest.trim_end_matches('/');
    let json =
        |value: serde_json::Value| respond(StatusCode::OK, "application/json", value.to_string());
    if rest == "rooms" {
        return json(serde_json::to_value(rooms.list()).unwrap_or_default());
    }
    let (room, field) = rest.split_once('/').unwrap_or((rest, ""));
    let Ok(room) = percent_decode_str(room).decode_utf8() else {
        return respond(StatusCode::BAD_REQUEST, "text/plain", "Invalid room\n");
    };
    if room.is_empty() {
        return respond(StatusCode::NOT_FOUND, "text/plain", "Not found\n");
    }
    let summary = rooms.summary(&room);
    match field {
        "connections" => json(serde_json::json!(summary.connections)),
        "metadata" => json(summary.metadata.unwrap_or(serde_json::Value::Null)),
        _ => json(serde_json::to_value(summary).unwrap_or_default()),
    }
}

/// The file under `root` that `path` (a request path) names: percent-decoded, `..` refused,
/// a directory meaning its `index.html`.
pub(crate) fn static_file(root: &Path, path: &str) -> Option<PathBuf> {
    let decoded = percent_decode_str(path).decode_utf8().ok()?;
    let mut file = root.to_path_buf();
    for component in Path::new(decoded.trim_start_matches('/')).components() {
        match component {
            Component::Normal(part) => file.push(part),
            Component::CurDir => {}
            // `..`, a root or a prefix inside the path would leave the directory.
            _ => return None,
        }
    }
    if decoded.ends_with('/') || file == root || file.is_dir() {
        file.push("index.html");
    }
    Some(file)
}

/// The content type of a file, by extension.
pub(crate) fn content_type(path: &Path) -> &'static str {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("json") => "application/json",
        Some("txt") => "text/plain; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("ico") => "image/x-icon",
        Some("wasm") => "application/wasm",
        Some("woff2") => "font/woff2",
        _ => "application/octet-stream",
    }
}

/// Where `file` (a path under `root`) really is, if that is inside `root` once every symbolic
/// link is resolved: a link out of the directory names no file.
async fn inside(root: &Path, file: &Path) -> Option<PathBuf> {
    let root = tokio::fs::canonicalize(root).await.ok()?;
    let file = tokio::fs::canonicalize(file).await.ok()?;
    file.starts_with(&root).then_some(file)
}

/// Serves a static file, or 404. Unless `follow_symlinks`, a file whose real path (symbolic
/// links resolved) is outside `root` is not found.
pub(crate) async fn serve_static(root: &Path, path: &str, follow_symlinks: bool) -> HttpResponse {
    let not_found = || respond(StatusCode::NOT_FOUND, "text/plain", "Not found\n");
    let Some(mut file) = static_file(root, path) else {
        return not_found();
    };
    if !follow_symlinks {
        match inside(root, &file).await {
            // The resolved path is the one read, so the check holds for what is served.
            Some(real) => file = real,
            None => return not_found(),
        }
    }
    match tokio::fs::read(&file).await {
        Ok(bytes) => respond(StatusCode::OK, content_type(&file), bytes),
        Err(_) => not_found(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn tokens_are_kept_from_the_program() {
        assert_eq!(program_query("a=1&token=x.y.z&b=2", true), "a=1&b=2");
        assert_eq!(program_query("token=x", true), "");
        assert_eq!(program_query("a=1&token=x", false), "a=1&token=x");
        assert_eq!(program_query("tokens=1", true), "tokens=1");
    }

    #[test]
    fn rooms_are_one_decoded_path_segment() {
        assert_eq!(room_of_path("/lobby"), Some(Ok("lobby".to_owned())));
        assert_eq!(room_of_path("/lobby/"), Some(Ok("lobby".to_owned())));
        assert_eq!(room_of_path("/a%20b"), Some(Ok("a b".to_owned())));
        assert_eq!(room_of_path("/a/b"), None);
        assert_eq!(room_of_path("/"), None);
        assert!(matches!(room_of_path("/%ff"), Some(Err(_))));
        // An encoded slash is part of the name, which the name check then refuses.
        assert_eq!(room_of_path("/a%2Fb"), Some(Ok("a/b".to_owned())));
    }

    #[test]
    fn tokens_come_from_a_bearer_header_in_any_case_or_the_query() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(
            token_in(&headers, Some("a=1&token=x%2Ey")),
            Some("x.y".to_owned())
        );
        assert_eq!(token_in(&headers, Some("a=1")), None);
        for value in ["Bearer abc", "bearer abc", "BEARER  abc "] {
            headers.insert(header::AUTHORIZATION, HeaderValue::from_static(value));
            assert_eq!(
                token_in(&headers, Some("token=q")),
                Some("abc".to_owned()),
                "{value}"
            );
        }
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(token_in(&headers, Some("token=q")), Some("q".to_owned()));
    }

    #[test]
    fn static_paths_stay_inside_the_directory() {
        let root = Path::new("/srv/site");
        assert_eq!(static_file(root, "/"), Some(root.join("index.html")));
        assert_eq!(static_file(root, "/a/b.txt"), Some(root.join("a/b.txt")));
        assert_eq!(static_file(root, "/a/"), Some(root.join("a/index.html")));
        assert_eq!(static_file(root, "/a%20b.txt"), Some(root.join("a b.txt")));
        assert_eq!(static_file(root, "/../etc/passwd"), None);
        assert_eq!(static_file(root, "/a/%2e%2e/%2e%2e/etc/passwd"), None);
        assert_eq!(
            content_type(Path::new("x.JS")),
            "text/javascript; charset=utf-8"
        );
    }
}
