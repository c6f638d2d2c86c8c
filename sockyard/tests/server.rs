//! The HTTP side and the server's life: health, metrics, paths that are not endpoints, and
//! graceful shutdown.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

async fn http_get(server: &TestServer, path: &str, extra_headers: &str) -> (u16, String, String) {
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra_headers}\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(5), tcp.read_to_string(&mut response))
        .await
        .unwrap()
        .unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_owned(), body.to_owned())
}

#[tokio::test]
async fn health_reports_version_and_uptime() {
    let server = start().await;
    let _ws = handshaken(&server.url()).await;
    let (status, head, body) = http_get(&server, "/health", "").await;
    assert_eq!(status, 200);
    assert!(head
        .to_ascii_lowercase()
        .contains("content-type: application/json"));
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert!(body["uptime_seconds"].as_f64().unwrap() >= 0.0);
    assert_eq!(body["connections"], 1);
}

#[tokio::test]
async fn metrics_count_connections_messages_and_errors() {
    let server = start().await;
    let mut ws = handshaken(&server.url()).await;
    send_text(&mut ws, &echo(2, json!(1))).await;
    next_json(&mut ws).await;
    send_text(&mut ws, r#"{"event":"nope","cid":3}"#).await;
    next_json(&mut ws).await;
    let (status, _, body) = http_get(&server, "/metrics", "").await;
    assert_eq!(status, 200);
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
    let upgrade = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    // SocketCluster matches the path exactly: no trailing slash, no endpoint.
    assert_eq!(http_get(&server, "/socketcluster", upgrade).await.0, 404);
    assert_eq!(http_get(&server, "/elsewhere", upgrade).await.0, 404);
    assert_eq!(http_get(&server, "/elsewhere", "").await.0, 404);
    let (status, head, _) = http_get(&server, "/socketcluster/", "").await;
    assert_eq!(status, 426);
    assert!(head.to_ascii_lowercase().contains("upgrade: websocket"));
    let bad_version = upgrade.replace("Version: 13", "Version: 8");
    assert_eq!(
        http_get(&server, "/socketcluster/", &bad_version).await.0,
        400
    );
    // A query string does not change the path.
    let mut ws = handshaken(&format!("{}?foo=bar", server.url())).await;
    send_text(&mut ws, &echo(2, json!("q"))).await;
    assert_eq!(next_json(&mut ws).await["data"], "q");
}

#[tokio::test]
async fn shutdown_closes_sockets_with_1001_after_queued_messages() {
    let server = start().await;
    let mut idle = handshaken(&server.url()).await;
    let mut busy = handshaken(&server.url()).await;
    send_text(
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
        match next_message(&mut busy).await {
            tokio_tungstenite::tungstenite::Message::Text(text)
                if !text.is_empty() && text.as_str() != "#1" =>
            {
                seen.push(serde_json::from_str::<Value>(text.as_str()).unwrap());
            }
            tokio_tungstenite::tungstenite::Message::Close(frame) => break frame.unwrap(),
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
