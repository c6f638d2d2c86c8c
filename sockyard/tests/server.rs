//! The HTTP side and the server's life: health, metrics, paths that are not endpoints, and
//! graceful shutdown.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sockyard_test_support::http::{
    get_request, http_1_0_upgrade_request, http_get, http_raw, HttpReply, UPGRADE_HEADERS,
};
use sockyard_test_support::server::{start, start_with, TestServer};
use sockyard_test_support::socketcluster::*;
use sockyard_test_support::ws::*;
use tokio_tungstenite::tungstenite::Message;

/// `GET path` with `extra_headers` (each line ending in `\r\n`).
async fn get_with(server: &TestServer, path: &str, extra_headers: &str) -> HttpReply {
    http_raw(server.addr, &get_request(path, extra_headers)).await
}

#[tokio::test]
async fn health_reports_version_and_uptime() {
    let server = start().await;
    let _ws = handshaken(&server.url()).await;
    let reply = http_get(server.addr, "/health").await;
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .header("content-type")
            .is_some_and(|v| v.to_ascii_lowercase().starts_with("application/json")),
        "{reply:?}"
    );
    let body = reply.json();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert!(body["uptime_seconds"].as_f64().unwrap() >= 0.0);
    assert_eq!(body["connections"], 1);
}

#[tokio::test]
async fn metrics_count_connections_messages_and_errors() {
    let server = start().await;
    let mut ws = handshaken(&server.url()).await;
    send(&mut ws, &echo(2, json!(1))).await;
    next_json(&mut ws).await;
    send(&mut ws, r#"{"event":"nope","cid":3}"#).await;
    next_json(&mut ws).await;
    let reply = http_get(server.addr, "/metrics").await;
    assert_eq!(reply.status, 200);
    let body = reply.body;
    for needle in [
        "sockyard_connections_open 1",
        "sockyard_connections_total 1",
        "sockyard_messages_in_total 3",
        "sockyard_messages_out_total 3",
        "sockyard_errors_total{kind=\"not_found\"} 1",
    ] {
        assert!(body.contains(needle), "missing {needle:?} in:\n{body}");
    }
}

#[tokio::test]
async fn only_endpoint_paths_upgrade() {
    let server = start().await;
    let upgrade = UPGRADE_HEADERS;
    // SocketCluster matches the path exactly: no trailing slash, no endpoint.
    assert_eq!(
        get_with(&server, "/socketcluster", upgrade).await.status,
        404
    );
    assert_eq!(get_with(&server, "/elsewhere", upgrade).await.status, 404);
    assert_eq!(http_get(server.addr, "/elsewhere").await.status, 404);
    let reply = http_get(server.addr, "/socketcluster/").await;
    assert_eq!(reply.status, 426);
    assert!(
        reply
            .header("upgrade")
            .is_some_and(|v| v.to_ascii_lowercase().starts_with("websocket")),
        "{reply:?}"
    );
    let bad_version = upgrade.replace("Version: 13", "Version: 8");
    assert_eq!(
        get_with(&server, "/socketcluster/", &bad_version)
            .await
            .status,
        400
    );
    // A query string does not change the path.
    let mut ws = handshaken(&format!("{}?foo=bar", server.url())).await;
    send(&mut ws, &echo(2, json!("q"))).await;
    assert_eq!(next_json(&mut ws).await["data"], "q");
}

#[tokio::test]
async fn shutdown_closes_sockets_with_1001_after_queued_messages() {
    let server = start().await;
    let mut idle = handshaken(&server.url()).await;
    let mut busy = handshaken(&server.url()).await;
    send(
        &mut busy,
        r#"{"event":"pushToMe","data":"last words","cid":2}"#,
    )
    .await;
    // Let the push be queued, then shut down.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    let shutdown = tokio::spawn(server.shutdown());
    let mut seen = Vec::new();
    let close = loop {
        match next(&mut busy).await {
            Message::Text(text) if !is_ping(text.as_str()) => {
                seen.push(serde_json::from_str::<Value>(text.as_str()).unwrap());
            }
            Message::Close(frame) => break frame.unwrap(),
            _ => {}
        }
    };
    assert_eq!(u16::from(close.code), 1001);
    assert!(
        seen.contains(&json!({"event": "serverEvent", "data": "last words"})),
        "{seen:?}"
    );
    assert_eq!(expect_close(&mut idle).await.0, 1001);
    drop((idle, busy));
    tokio::time::timeout(Duration::from_secs(6), shutdown)
        .await
        .unwrap()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(6));
}

#[tokio::test]
async fn shutdown_is_bounded_even_if_clients_never_answer_the_close() {
    let mut config = sockyard::Config::default();
    config.server.shutdown_timeout_ms = 500;
    config.limits.close_timeout_ms = 200;
    let server = start_with(config).await;
    // Keep the socket open but never read from it.
    let _silent = handshaken(&server.url()).await;
    let started = Instant::now();
    server.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn upgrades_need_http_1_1_and_a_single_key() {
    let server = start().await;
    // RFC 6455 §4.1: the request is at least HTTP/1.1.
    let reply = http_raw(
        server.addr,
        &http_1_0_upgrade_request("/socketcluster/", ""),
    )
    .await;
    assert_eq!(reply.status, 400, "{reply:?}");
    assert_eq!(reply.body, "WebSocket upgrade requires HTTP/1.1 or later\n");
    // §4.2.1: one Sec-WebSocket-Key header, even one repeating the same key.
    let twice = format!("{UPGRADE_HEADERS}Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n");
    let reply = get_with(&server, "/socketcluster/", &twice).await;
    assert_eq!(reply.status, 400, "{reply:?}");
    assert_eq!(reply.body, "more than one Sec-WebSocket-Key header\n");
    assert_eq!(
        server
            .handle
            .metrics()
            .error_count(sockyard::metrics::ErrorKind::upgrade_rejected),
        2
    );
}

#[tokio::test]
async fn an_endpoints_origin_list_refuses_other_sites_pages_with_403() {
    let mut config = sockyard::Config::default();
    config.endpoints[0].origins =
        vec!["app.example".to_owned(), "http://localhost:8080".to_owned()];
    let server = start_with(config).await;
    let url = server.url();
    let before = metric_value(&server, "sockyard_errors_total{kind=\"upgrade_rejected\"}").await;
    for origin in ["https://evil.example", "http://localhost:9999", "null"] {
        let (status, body) = refusal_with(&url, &[("Origin", origin)]).await;
        assert_eq!(
            (status, body.as_str()),
            (403, "Origin not allowed\n"),
            "{origin}"
        );
    }
    let after = metric_value(&server, "sockyard_errors_total{kind=\"upgrade_rejected\"}").await;
    assert_eq!(after - before, 3.0, "each refusal is counted");
    // Listed origins, and clients that send none (not browsers), are let in.
    for origin in ["https://app.example", "http://localhost:8080"] {
        let mut ws = connect_with(&url, &[("Origin", origin)])
            .await
            .unwrap_or_else(|e| panic!("{origin}: {e}"));
        handshake(&mut ws).await;
        send(&mut ws, &echo(2, json!(origin))).await;
        assert_eq!(next_json(&mut ws).await, json!({"rid": 2, "data": origin}));
    }
    let _ws = handshaken(&url).await;
    // An endpoint without a list takes any origin.
    let ct = server.url_of("/ctproto");
    assert!(connect_with(&ct, &[("Origin", "https://evil.example")])
        .await
        .is_ok());
}

/// The value of metric `series` (name and labels, as written), 0 when absent.
async fn metric_value(server: &TestServer, series: &str) -> f64 {
    let text = http_get(server.addr, "/metrics").await.body;
    sockyard_test_support::http::metric(&text, series).unwrap_or(0.0)
}
