//! Rooms declared in a `serve` configuration: `[[room]]` tables mount wrapped programs beside
//! the RPC endpoints, on the same port, with the server's auth key and metrics.

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::json;
use sockyard::{Config, Router, Server};
use sockyard_test_support::http::{
    get_request, http_1_0_upgrade_request, http_get, http_raw, UPGRADE_HEADERS,
};
use sockyard_test_support::server::{start_server, TestServer};
use sockyard_test_support::socketcluster::{echo, handshaken, next_json};
use sockyard_test_support::ws::{connect, expect_close, send, text};
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::Message;

const ROOMS: &str = r#"
[[room]]
path = "/chat/"
command = "cat"
join_message = "joined #ID"

[[room]]
path = "/private/"
command = "cat"
require_token = true
"#;

async fn serve() -> TestServer {
    let config = Config::from_toml_str(ROOMS, "test").expect("config");
    let server = Server::builder(&config)
        .routes(
            Router::new()
                .nest("", sockyard::demo::router())
                .build()
                .expect("routes"),
        )
        .build()
        .expect("server");
    start_server(server).await
}

#[tokio::test]
async fn rooms_run_beside_the_rpc_endpoints() {
    let server = serve().await;
    let mut a = connect(&server.url_of("/chat/lobby")).await;
    assert_eq!(text(&mut a).await, "joined 1");
    let mut b = connect(&server.url_of("/chat/lobby")).await;
    assert_eq!(text(&mut a).await, "joined 2");
    assert_eq!(text(&mut b).await, "joined 2");
    a.send(Message::text("hello")).await.unwrap();
    assert_eq!(text(&mut a).await, "hello");
    assert_eq!(text(&mut b).await, "hello");

    // The RPC endpoint on the same port is unaffected.
    let mut rpc = handshaken(&server.url()).await;
    send(&mut rpc, &echo(2, json!("rpc"))).await;
    assert_eq!(next_json(&mut rpc).await, json!({"rid": 2, "data": "rpc"}));

    let rooms = http_get(server.addr, "/chat/api/rooms").await;
    assert_eq!(rooms.status, 200);
    assert_eq!(
        rooms.json(),
        json!([{"connections": 2, "metadata": null, "name": "lobby"}])
    );
    let metrics = http_get(server.addr, "/metrics").await.body;
    assert!(
        metrics.contains(r#"sockyard_room_connections_total{room="/chat/lobby"} 2"#),
        "{metrics}"
    );
    assert!(metrics.contains("sockyard_connections_total"), "{metrics}");
    assert_eq!(metrics.matches("# EOF").count(), 1);
    assert_eq!(http_get(server.addr, "/chat/").await.status, 404);
}

#[tokio::test]
async fn rooms_can_require_the_servers_tokens() {
    let server = serve().await;
    let url = server.url_of("/private/vault");
    let refused = tokio_tungstenite::connect_async(&url).await.unwrap_err();
    assert!(refused.to_string().contains("401"), "{refused}");
    let token = server
        .handle
        .sign_token(
            json!({"username": "ann", "rooms": ["vault"]})
                .as_object()
                .unwrap()
                .clone(),
        )
        .unwrap();
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("{url}?token={token}"))
        .await
        .expect("a good token opens the room");
    ws.send(Message::text("secret")).await.unwrap();
    assert_eq!(text(&mut ws).await, "secret");
    // A token for other rooms does not open this one.
    let other = server
        .handle
        .sign_token(json!({"rooms": ["elsewhere"]}).as_object().unwrap().clone())
        .unwrap();
    let mut request = url.as_str().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {other}").parse().unwrap());
    let refused = tokio_tungstenite::connect_async(request).await.unwrap_err();
    assert!(refused.to_string().contains("403"), "{refused}");
}

#[tokio::test]
async fn shutdown_closes_room_clients_with_1001() {
    let server = serve().await;
    let mut ws = connect(&server.url_of("/chat/bye")).await;
    assert_eq!(text(&mut ws).await, "joined 1");
    let stopping = tokio::spawn(server.shutdown());
    let (code, reason) = expect_close(&mut ws).await;
    assert_eq!((code, reason.as_str()), (1001, "Server is shutting down"));
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("shutdown finishes")
        .unwrap();
    while let Some(Ok(_)) = ws.next().await {}
}

#[test]
fn room_paths_must_not_overlap_endpoints() {
    for (toml, key) in [
        (
            "[[room]]\npath = \"/socketcluster/\"\ncommand = \"cat\"\n",
            "room[0].path",
        ),
        (
            "[[room]]\npath = \"rooms\"\ncommand = \"cat\"\n",
            "room[0].path",
        ),
        ("[[room]]\npath = \"/rooms/\"\n", "room[0].command"),
    ] {
        let err = Config::from_toml_str(toml, "test").unwrap_err().to_string();
        assert!(err.contains(key), "{toml}: {err}");
    }
}

#[tokio::test]
async fn room_upgrades_need_http_1_1_and_a_single_key() {
    let server = serve().await;
    let reply = http_raw(server.addr, &http_1_0_upgrade_request("/chat/lobby", "")).await;
    assert_eq!(reply.status, 400, "{reply:?}");
    assert_eq!(reply.body, "WebSocket upgrade requires HTTP/1.1 or later\n");
    let twice = format!("{UPGRADE_HEADERS}Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n");
    let reply = http_raw(server.addr, &get_request("/chat/lobby", &twice)).await;
    assert_eq!(reply.status, 400, "{reply:?}");
    assert_eq!(reply.body, "more than one Sec-WebSocket-Key header\n");
    // Neither made a room.
    let rooms = http_get(server.addr, "/chat/api/rooms").await;
    assert!(!rooms.body.contains("lobby"), "{}", rooms.body);
}
