//! The raw dialect over real sockets: the embedded default's `ws://…/echo` answers text with
//! text and binary with binary, unchanged, up to the message limit; there is no handshake, the
//! server pings with WebSocket pings, and pushes and errors come as plain messages.

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use sockyard::config::{Dialect, EndpointConfig, DEFAULT_TOML};
use sockyard::Config;
use sockyard_test_support::server::{start_with, start_with_router, TestServer};
use sockyard_test_support::ws::{connect, expect_close, next};
use tokio_tungstenite::tungstenite::Message;

/// The embedded default, served with the demo's procedures (what `sockyard serve` runs).
async fn demo() -> (TestServer, Config) {
    let config = Config::from_toml_str(DEFAULT_TOML, "<embedded default>").unwrap();
    let server = start_with_router(config.clone(), sockyard::demo::router()).await;
    (server, config)
}

fn echo_url(server: &TestServer) -> String {
    format!("ws://{}/echo", server.addr)
}

fn raw_endpoint(path: &str, route: &str) -> EndpointConfig {
    let mut endpoint = EndpointConfig::default();
    endpoint.path = path.to_owned();
    endpoint.dialect = Dialect::Raw;
    endpoint.route = Some(route.to_owned());
    endpoint
}

#[tokio::test]
async fn the_demo_echoes_text_as_text_and_binary_as_binary_unchanged() {
    let (server, config) = demo().await;
    let limit = config.limits.max_message_bytes;
    let mut ws = connect(&echo_url(&server)).await;
    let large_text = "é".repeat(limit / 2);
    let large_binary: Vec<u8> = (0..limit).map(|i| (i % 251) as u8).collect();
    let messages = [
        Message::text("hello"),
        Message::text(r#"{"event":"echo","cid":1}"#),
        Message::text(""),
        Message::binary(vec![0u8, 1, 2, 0xFF]),
        Message::binary(Vec::new()),
        Message::text(large_text),
        Message::binary(large_binary),
    ];
    // Pipelined: the replies come back in order.
    for message in &messages {
        ws.send(message.clone()).await.unwrap();
    }
    for message in messages {
        assert_eq!(next(&mut ws).await, message);
    }
    // Above the limit: 1009, as on every endpoint.
    ws.send(Message::binary(vec![0u8; limit + 1]))
        .await
        .unwrap();
    assert_eq!(expect_close(&mut ws).await.0, 1009);
}

#[tokio::test]
async fn there_is_no_handshake_and_the_server_pings_with_websocket_pings() {
    let mut config = Config::default();
    config.limits.handshake_timeout_ms = 100;
    let echo = config
        .endpoints
        .iter_mut()
        .find(|endpoint| endpoint.path == "/echo")
        .expect("the default config has /echo");
    echo.ping_interval_ms = 100;
    echo.ping_timeout_ms = 1000;
    let server = start_with_router(config, sockyard::demo::router()).await;
    let mut ws = connect(&echo_url(&server)).await;
    // Well past the handshake timeout, the connection is open and pinged.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let first = tokio::time::timeout(Duration::from_secs(5), ws.next()).await;
    assert!(matches!(first, Ok(Some(Ok(Message::Ping(_))))), "{first:?}");
    ws.send(Message::text("still here")).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::text("still here"));
    // Read for longer than the ping timeout: pings keep coming, and the client's automatic
    // pongs keep the connection open.
    let until = tokio::time::Instant::now() + Duration::from_millis(1500);
    let mut pings = 0;
    while let Ok(next) = tokio::time::timeout_at(until, ws.next()).await {
        match next.expect("stream ended").expect("read error") {
            Message::Ping(_) => pings += 1,
            other => panic!("expected pings only, got {other:?}"),
        }
    }
    assert!(pings >= 5, "{pings} pings in 1.5 s");
    ws.send(Message::text("alive")).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::text("alive"));
}

#[tokio::test]
async fn pushes_are_plain_messages_and_errors_are_their_json() {
    let mut config = Config::default();
    config.endpoints = vec![
        raw_endpoint("/push", "pushToMe"),
        raw_endpoint("/nope", "nope"),
    ];
    let server = start_with(config).await;
    // `pushToMe` transmits its data back as an event and replies without data: one message.
    let mut ws = connect(&format!("ws://{}/push", server.addr)).await;
    ws.send(Message::binary(vec![9u8, 8])).await.unwrap();
    ws.send(Message::text("pushed")).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::binary(vec![9u8, 8]));
    assert_eq!(next(&mut ws).await, Message::text("pushed"));
    // A route that does not exist: the error as JSON text, and the connection stays open.
    let mut ws = connect(&format!("ws://{}/nope", server.addr)).await;
    for _ in 0..2 {
        ws.send(Message::text("x")).await.unwrap();
        assert_eq!(
            next(&mut ws).await,
            Message::text(r#"{"name":"NotFound","message":"Unknown procedure 'nope'"}"#)
        );
    }
}

#[test]
fn a_raw_endpoint_needs_a_route() {
    let err =
        Config::from_toml_str("[[endpoint]]\npath = \"/r\"\ndialect = \"raw\"\n", "t").unwrap_err();
    assert!(err.to_string().contains("`endpoint[0].route`"), "{err}");
}
