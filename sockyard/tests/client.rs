//! The Rust client against a real server: calls, transmits, server pushes and invokes, timeouts
//! and reconnection.

use std::time::Duration;

use serde_json::json;
use sockyard::client::{Backoff, Client, ClientError, ClientEvent, ClientOptions};
use sockyard::protocol::socketcluster::ProtocolVersion;
use sockyard_test_support::client::{assert_remote_errors, next_event};
use sockyard_test_support::router::test_router;
use sockyard_test_support::server::{start, start_with};

fn quick() -> ClientOptions {
    let mut backoff = Backoff::default();
    backoff.initial = Duration::from_millis(50);
    backoff.randomness = Duration::from_millis(10);
    ClientOptions::default()
        .ack_timeout(Duration::from_secs(3))
        .backoff(backoff)
}

#[tokio::test]
async fn invokes_and_reports_remote_errors() {
    let server = start().await;
    let (client, mut events) = Client::connect(&server.url(), quick()).await.unwrap();
    assert!(matches!(
        next_event(&mut events).await,
        ClientEvent::Connected {
            is_authenticated: false,
            ..
        }
    ));
    assert_eq!(client.id().unwrap().len(), 20);
    assert_eq!(
        client.invoke("echo", json!({"x": [1, 2]})).await,
        Ok(Some(json!({"x": [1, 2]})))
    );
    assert_eq!(client.invoke("nothing", ()).await, Ok(None));
    assert_remote_errors(&client).await;
    let err = client
        .invoke_with_timeout("sleep", 500, Duration::from_millis(50))
        .await
        .unwrap_err();
    assert_eq!(err, ClientError::Timeout("sleep".into()));
    client.close(1000, "bye").await;
    assert!(matches!(
        client.invoke("echo", 1).await,
        Err(ClientError::Closed)
    ));
}

#[tokio::test]
async fn receives_server_transmits_and_answers_server_invokes() {
    let server = start().await;
    let (client, mut events) = Client::connect(&server.url(), quick()).await.unwrap();
    next_event(&mut events).await;
    client.transmit("pushToMe", "hello").unwrap();
    match next_event(&mut events).await {
        ClientEvent::Transmit { event, data } => {
            assert_eq!(event, "serverEvent");
            assert_eq!(data, Some(json!("hello")));
        }
        other => panic!("{other:?}"),
    }
    let caller = client.clone();
    let call = tokio::spawn(async move { caller.invoke("callClient", json!({"q": 1})).await });
    match next_event(&mut events).await {
        ClientEvent::Invoke(incoming) => {
            assert_eq!(incoming.event, "clientProc");
            assert_eq!(incoming.data, Some(json!({"q": 1})));
            incoming.respond(Ok(Some(json!({"answer": 2}))));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(call.await.unwrap(), Ok(Some(json!({"answer": 2}))));

    // An invoke dropped unanswered is answered with an error, so the server does not hang.
    let caller = client.clone();
    let call = tokio::spawn(async move { caller.invoke("callClient", 1).await });
    match next_event(&mut events).await {
        ClientEvent::Invoke(incoming) => drop(incoming),
        other => panic!("{other:?}"),
    }
    assert!(matches!(call.await.unwrap(), Err(ClientError::Remote(e)) if e.name == "NoResponse"));
}

#[tokio::test]
async fn answers_pings_of_either_version() {
    for version in [ProtocolVersion::V1, ProtocolVersion::V2] {
        let mut config = sockyard::Config::default();
        config.endpoints[0].ping_interval_ms = 100;
        config.endpoints[0].ping_timeout_ms = 300;
        let server = start_with(config).await;
        let options = quick().protocol_version(version);
        let (client, _events) = Client::connect(&server.url(), options).await.unwrap();
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert_eq!(
            client.invoke("echo", 1).await,
            Ok(Some(json!(1))),
            "{version:?}"
        );
    }
}

#[tokio::test]
async fn reconnects_after_a_drop_but_not_after_a_permanent_close() {
    let server = start().await;
    let (client, mut events) = Client::connect(&server.url(), quick()).await.unwrap();
    let first = client.id().unwrap();
    next_event(&mut events).await;
    client
        .invoke("closeMe", json!({"code": 4001, "reason": "again"}))
        .await
        .ok();
    let mut saw_disconnect = false;
    loop {
        match next_event(&mut events).await {
            ClientEvent::Disconnected { code, .. } => {
                assert_eq!(code, 4001);
                saw_disconnect = true;
            }
            ClientEvent::Connected { id, .. } => {
                assert!(saw_disconnect);
                assert_ne!(id, first);
                break;
            }
            _ => {}
        }
    }
    assert_eq!(client.invoke("echo", "back").await, Ok(Some(json!("back"))));

    client
        .invoke("closeMe", json!({"code": 4500, "reason": "banned"}))
        .await
        .ok();
    loop {
        match next_event(&mut events).await {
            ClientEvent::Disconnected { code, .. } => {
                assert_eq!(code, 4500);
                break;
            }
            ClientEvent::Connected { .. } => panic!("reconnected after 4500"),
            _ => {}
        }
    }
    assert!(tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn keeps_retrying_with_backoff_until_the_server_is_back() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let url = format!("ws://{addr}/socketcluster/");
    let routes = test_router().build().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let first = tokio::spawn(
        sockyard::Server::new(&sockyard::Config::default(), routes)
            .unwrap()
            .serve(listener, async {
                let _ = stopped.await;
            }),
    );
    let (client, mut events) = Client::connect(&url, quick()).await.unwrap();
    next_event(&mut events).await;
    let _ = stop.send(());
    first.await.unwrap().unwrap();
    assert!(matches!(
        next_event(&mut events).await,
        ClientEvent::Disconnected { code: 1001, .. }
    ));
    // Nothing listens for a while; then a new server takes the same port.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let routes = test_router().build().unwrap();
    tokio::spawn(
        sockyard::Server::new(&sockyard::Config::default(), routes)
            .unwrap()
            .serve(listener, std::future::pending()),
    );
    assert!(matches!(
        next_event(&mut events).await,
        ClientEvent::Connected { .. }
    ));
    assert_eq!(client.invoke("echo", 7).await, Ok(Some(json!(7))));
}

#[tokio::test]
async fn connect_errors_are_reported() {
    assert!(matches!(
        Client::connect("http://x", quick()).await,
        Err(ClientError::Url(_))
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = Client::connect(&format!("ws://{addr}/socketcluster/"), quick())
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Connect(_)), "{err:?}");
}

#[tokio::test]
async fn gives_up_on_a_server_whose_pings_stop_and_reconnects() {
    use futures_util::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::Message;
    // A server that completes the handshake, promises pings every 200 ms, and never sends one.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/socketcluster/", listener.local_addr().unwrap());
    let (closes_tx, mut closes) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let closes = closes_tx.clone();
            tokio::spawn(async move {
                let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
                while let Some(Ok(message)) = ws.next().await {
                    match message {
                        Message::Text(text) => {
                            let call: serde_json::Value =
                                serde_json::from_str(text.as_str()).unwrap();
                            let reply = json!({"rid": call["cid"], "data": {"id": "x", "pingTimeout": 200, "isAuthenticated": false}});
                            ws.send(Message::text(reply.to_string())).await.unwrap();
                        }
                        Message::Close(frame) => {
                            let _ = closes.send(frame.map(|f| u16::from(f.code)));
                            break;
                        }
                        _ => {}
                    }
                }
            });
        }
    });
    let (_client, mut events) = Client::connect(&url, quick()).await.unwrap();
    next_event(&mut events).await;
    assert!(matches!(
        next_event(&mut events).await,
        ClientEvent::Disconnected { code: 4000, .. }
    ));
    assert_eq!(closes.recv().await, Some(Some(4000)));
    assert!(matches!(
        next_event(&mut events).await,
        ClientEvent::Connected { .. }
    ));
}
