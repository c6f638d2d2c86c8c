//! CTProto over real sockets: authorization and its deadline, the original's close codes, format
//! errors, routing, error envelopes that echo the request id, pushes to a filtered set of
//! connections, and channels shared with SocketCluster clients.

use std::time::{Duration, Instant};

use futures_util::SinkExt as _;
use serde_json::{json, Value};
use sockyard::auth::{Authenticator, Claims};
use sockyard::client::ctproto::CtClient;
use sockyard::client::ClientError;
use sockyard::config::Authorizer;
use sockyard::stages::Stages;
use sockyard::{ApiError, Config, Server};
use sockyard_test_support::client::next_update;
use sockyard_test_support::router::test_router;
use sockyard_test_support::server::{start_built, start_with, TestServer};
use sockyard_test_support::socketcluster::*;
use sockyard_test_support::ws::*;
use tokio_tungstenite::tungstenite::Message;

const KEY: &str = "ctproto-test-key";

fn config() -> Config {
    let mut config = Config::default();
    config.auth.key = KEY.to_owned();
    config
}

fn ct_url(server: &TestServer) -> String {
    server.url_of("/ctproto")
}

fn request(kind: &str, payload: Value, id: &str) -> String {
    json!({"type": kind, "payload": payload, "messageId": id}).to_string()
}

async fn authorized(server: &TestServer, payload: Value) -> Ws {
    let mut ws = connect(&ct_url(server)).await;
    send(&mut ws, &request("authorize", payload, "auth000001")).await;
    let reply = next_json(&mut ws).await;
    assert_eq!(reply["messageId"], "auth000001", "{reply}");
    ws
}

#[tokio::test]
async fn authorize_with_a_username_or_a_token() {
    let server = start_with(config()).await;
    let mut ws = connect(&ct_url(&server)).await;
    send(
        &mut ws,
        &request("authorize", json!({"username": "ann"}), "abcdeABCDE"),
    )
    .await;
    assert_eq!(
        next_json(&mut ws).await,
        json!({"messageId": "abcdeABCDE", "payload": {"username": "ann"}})
    );
    send(&mut ws, &request("whoami", json!({}), "0123456789")).await;
    assert_eq!(
        next_json(&mut ws).await,
        json!({"messageId": "0123456789", "payload": {"username": "ann"}})
    );
    // A second authorize is answered with an error envelope (the original ignores it), and
    // the connection keeps its auth data.
    send(
        &mut ws,
        &request("authorize", json!({"username": "eve"}), "abcdeABCDF"),
    )
    .await;
    assert_eq!(
        next_json(&mut ws).await,
        json!({
            "type": "error",
            "payload": {
                "error": "The connection is already authorized",
                "name": "InvalidActionError"
            },
            "messageId": "abcdeABCDF"
        })
    );
    send(&mut ws, &request("whoami", json!({}), "0123456780")).await;
    assert_eq!(next_json(&mut ws).await["payload"]["username"], "ann");

    let token = Authenticator::hs256(KEY.as_bytes(), Duration::from_secs(60))
        .sign(json!({"userId": "42"}).as_object().unwrap().clone())
        .unwrap();
    let mut ws = connect(&ct_url(&server)).await;
    send(
        &mut ws,
        &request("authorize", json!({"token": token}), "abcdeABCDE"),
    )
    .await;
    let reply = next_json(&mut ws).await;
    assert_eq!(reply["payload"]["userId"], "42");
    assert!(reply["payload"]["exp"].is_u64());
}

#[tokio::test]
async fn refused_authorizations_close_1008_with_the_reason() {
    let mut config = config();
    config.endpoints[1].authorizer = Authorizer::Token;
    let server = start_with(config).await;
    let wrong_key = Authenticator::hs256(b"other", Duration::from_secs(60))
        .sign(Claims::new())
        .unwrap();
    for (payload, reason) in [
        (
            json!({"token": wrong_key}),
            "Authorization failed: invalid signature",
        ),
        (
            json!({"token": "nonsense"}),
            "Authorization failed: jwt malformed",
        ),
        (
            json!({"username": "ann"}),
            "Authorization failed: payload must carry a token",
        ),
        (
            Value::Null,
            "Authorization failed: payload must carry a token",
        ),
    ] {
        let mut ws = connect(&ct_url(&server)).await;
        send(&mut ws, &request("authorize", payload, "abcdeABCDE")).await;
        assert_eq!(expect_close(&mut ws).await, (1008, reason.to_owned()));
    }
    let mut ws = connect(&ct_url(&server)).await;
    send(&mut ws, &request("echo", json!({}), "abcdeABCDE")).await;
    assert_eq!(
        expect_close(&mut ws).await,
        (1008, "Unauthorized".to_owned())
    );
}

#[tokio::test]
async fn no_authorize_before_the_deadline_closes_1013_even_after_a_bad_frame() {
    let mut config = config();
    config.endpoints[1].authorize_timeout_ms = 300;
    let server = start_with(config).await;
    let mut ws = connect(&ct_url(&server)).await;
    let started = Instant::now();
    assert_eq!(
        expect_close(&mut ws).await,
        (1013, "Authorization required".to_owned())
    );
    assert!(started.elapsed() >= Duration::from_millis(250));
    // An invalid frame gets its error envelope but does not stop the clock (the original's
    // loophole).
    let mut ws = connect(&ct_url(&server)).await;
    send(&mut ws, r#"{"type":"authorize","messageId":"abcdeABCDE"}"#).await;
    let error = next_json(&mut ws).await;
    assert_eq!(error["type"], "error");
    assert_eq!(
        error["payload"]["error"],
        "Message Format Error: 'payload' field missed"
    );
    assert_eq!(expect_close(&mut ws).await.0, 1013);
}

#[tokio::test]
async fn binary_frames_and_invalid_json_close_1003() {
    let server = start_with(config()).await;
    let mut ws = connect(&ct_url(&server)).await;
    ws.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    assert_eq!(
        expect_close(&mut ws).await,
        (1003, "Unsupported data".to_owned())
    );
    let mut ws = authorized(&server, json!({"username": "ann"})).await;
    send(&mut ws, "not json").await;
    let (code, reason) = expect_close(&mut ws).await;
    assert_eq!(code, 1003);
    assert!(!reason.is_empty());
}

#[tokio::test]
async fn format_errors_answer_without_closing() {
    let server = start_with(config()).await;
    let mut ws = authorized(&server, json!({"username": "ann"})).await;
    for (frame, error, echoed) in [
        (
            r#"{"type":"echo","payload":{}}"#,
            "Message Format Error: 'messageId' field missed",
            None,
        ),
        (
            r#"{"messageId":"abcdeABCDE","payload":{}}"#,
            "Message Format Error: 'type' field missed",
            Some("abcdeABCDE"),
        ),
        (
            r#"{"messageId":"abcdeABCDE","type":"echo"}"#,
            "Message Format Error: 'payload' field missed",
            Some("abcdeABCDE"),
        ),
        (
            r#"{"messageId":"abcdeABCDE","type":"echo","payload":5}"#,
            "Message Format Error: 'payload' should be an object",
            Some("abcdeABCDE"),
        ),
        (
            r#"{"messageId":"bad id","type":"echo","payload":{}}"#,
            "Message Format Error: Invalid message id",
            None,
        ),
    ] {
        send(&mut ws, frame).await;
        let reply = next_json(&mut ws).await;
        assert_eq!(reply["type"], "error", "{frame}");
        assert_eq!(
            reply["payload"],
            json!({"error": error, "name": "MessageFormatError"}),
            "{frame}"
        );
        let id = reply["messageId"].as_str().unwrap();
        match echoed {
            Some(expected) => assert_eq!(id, expected),
            None => assert_eq!(id.len(), 10),
        }
    }
    send(
        &mut ws,
        &request("echo", json!({"still": "open"}), "0123456789"),
    )
    .await;
    assert_eq!(
        next_json(&mut ws).await,
        json!({"messageId": "0123456789", "payload": {"still": "open"}})
    );
}

#[tokio::test]
async fn unknown_types_and_failing_handlers_answer_with_the_request_id() {
    let server = start_with(config()).await;
    let mut ws = authorized(&server, json!({"username": "ann"})).await;
    send(&mut ws, &request("nope", json!({}), "0123456789")).await;
    assert_eq!(
        next_json(&mut ws).await,
        json!({"type": "error", "payload": {"error": "Unknown procedure 'nope'", "name": "NotFound"}, "messageId": "0123456789"})
    );
    send(&mut ws, &request("fail", json!({}), "abcdefghij")).await;
    assert_eq!(
        next_json(&mut ws).await,
        json!({"type": "error", "payload": {"error": "bad thing", "name": "CustomError", "extra": 42}, "messageId": "abcdefghij"})
    );
    send(&mut ws, &request("panic", json!({}), "ABCDEFGHIJ")).await;
    let reply = next_json(&mut ws).await;
    assert_eq!(
        (
            reply["payload"]["name"].as_str(),
            reply["messageId"].as_str()
        ),
        (Some("InternalError"), Some("ABCDEFGHIJ"))
    );
    // Replies without data have no payload field.
    send(&mut ws, &request("nothing", json!({}), "0000000000")).await;
    assert_eq!(next_json(&mut ws).await, json!({"messageId": "0000000000"}));
}

#[tokio::test]
async fn requests_sent_during_authorization_wait_for_it() {
    let stages = Stages::new().authorize(|_connection, payload| async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        match payload.get("username").and_then(Value::as_str) {
            Some("ann") => Ok(json!({"username": "ann"}).as_object().unwrap().clone()),
            _ => Err(ApiError::new("AuthError", "unknown user")),
        }
    });
    let server = start_built(
        Server::builder(&config())
            .routes(test_router().build().unwrap())
            .stages(stages),
    )
    .await;
    let mut ws = connect(&ct_url(&server)).await;
    send(
        &mut ws,
        &request("authorize", json!({"username": "ann"}), "abcdeABCDE"),
    )
    .await;
    send(&mut ws, &request("whoami", json!({}), "0123456789")).await;
    assert_eq!(
        next_json(&mut ws).await,
        json!({"messageId": "abcdeABCDE", "payload": {"username": "ann"}})
    );
    assert_eq!(
        next_json(&mut ws).await,
        json!({"messageId": "0123456789", "payload": {"username": "ann"}})
    );
    // A refused authorization closes before the waiting request is looked at.
    let mut ws = connect(&ct_url(&server)).await;
    send(
        &mut ws,
        &request("authorize", json!({"username": "eve"}), "abcdeABCDE"),
    )
    .await;
    send(&mut ws, &request("whoami", json!({}), "0123456789")).await;
    assert_eq!(
        expect_close(&mut ws).await,
        (1008, "Authorization failed: unknown user".to_owned())
    );
}

#[tokio::test]
async fn pushes_reach_a_filtered_set_of_connections() {
    let stages = Stages::new().authorize(|_connection, payload| async move {
        Ok(payload.as_object().cloned().unwrap_or_default())
    });
    let server = start_built(
        Server::builder(&config())
            .routes(test_router().build().unwrap())
            .stages(stages),
    )
    .await;
    let mut member = authorized(&server, json!({"user": "a", "workspaceIds": ["123", "7"]})).await;
    let mut outsider = authorized(&server, json!({"user": "b", "workspaceIds": ["9"]})).await;
    let mut sc_member = handshaken(&server.url()).await;
    send(
        &mut sc_member,
        r#"{"event":"login","data":{"username":"c"},"cid":2}"#,
    )
    .await;
    next_json(&mut sc_member).await;
    next_json(&mut sc_member).await;

    let targets = server.handle.find(|connection| {
        connection.claims().is_some_and(|claims| {
            claims
                .get("workspaceIds")
                .and_then(Value::as_array)
                .is_some_and(|ids| ids.contains(&json!("123")))
                || claims.get("username") == Some(&json!("c"))
        })
    });
    assert_eq!(targets.len(), 2);
    for target in &targets {
        target
            .transmit("workspace-updated", json!({"workspace": "123"}))
            .unwrap();
    }
    let push = next_json(&mut member).await;
    assert_eq!(push["type"], "workspace-updated");
    assert_eq!(push["payload"], json!({"workspace": "123"}));
    let id = push["messageId"].as_str().unwrap();
    assert!(id.len() == 10 && id != "auth000001");
    // A SocketCluster connection gets the same push as a transmit.
    assert_eq!(
        next_json(&mut sc_member).await,
        json!({"event": "workspace-updated", "data": {"workspace": "123"}})
    );
    // The outsider got nothing; closing through the registry works too.
    send(&mut outsider, &request("echo", json!(1), "0123456789")).await;
    assert_eq!(next_json(&mut outsider).await["messageId"], "0123456789");
    for target in server.handle.find(|c| {
        c.claims()
            .is_some_and(|claims| claims.get("user") == Some(&json!("a")))
    }) {
        target.close(4000, "workspace removed");
    }
    assert_eq!(
        expect_close(&mut member).await,
        (4000, "workspace removed".to_owned())
    );
}

#[tokio::test]
async fn ctproto_and_socketcluster_clients_share_channels() {
    let server = start_with(config()).await;
    let mut ct = authorized(&server, json!({"username": "ann"})).await;
    let mut sc = handshaken(&server.url()).await;
    send(
        &mut ct,
        &request("#subscribe", json!({"channel": "lobby"}), "sub0000001"),
    )
    .await;
    assert_eq!(next_json(&mut ct).await, json!({"messageId": "sub0000001"}));
    send(
        &mut sc,
        r##"{"event":"#subscribe","data":{"channel":"lobby"},"cid":2}"##,
    )
    .await;
    assert_eq!(next_json(&mut sc).await, json!({"rid": 2}));

    send(
        &mut sc,
        r##"{"event":"#publish","data":{"channel":"lobby","data":{"from":"sc"}}}"##,
    )
    .await;
    let delivered = next_json(&mut ct).await;
    assert_eq!(delivered["type"], "#publish");
    assert_eq!(
        delivered["payload"],
        json!({"channel": "lobby", "data": {"from": "sc"}})
    );
    assert_eq!(
        next_json(&mut sc).await,
        json!({"event": "#publish", "data": {"channel": "lobby", "data": {"from": "sc"}}})
    );

    send(
        &mut ct,
        &request(
            "#publish",
            json!({"channel": "lobby", "data": {"from": "ct"}}),
            "pub0000001",
        ),
    )
    .await;
    let mut got = [next_json(&mut ct).await, next_json(&mut ct).await];
    got.sort_by_key(|v| v.get("type").is_some());
    assert_eq!(got[0], json!({"messageId": "pub0000001"}));
    assert_eq!(
        got[1]["payload"],
        json!({"channel": "lobby", "data": {"from": "ct"}})
    );
    assert_eq!(
        next_json(&mut sc).await,
        json!({"event": "#publish", "data": {"channel": "lobby", "data": {"from": "ct"}}})
    );
    // Channel errors are the same for both dialects.
    let mut anonymous = authorized(&server, json!({"username": "bob"})).await;
    send(
        &mut anonymous,
        &request("#unsubscribe", json!({"channel": "lobby"}), "uns0000001"),
    )
    .await;
    assert_eq!(
        next_json(&mut anonymous).await["payload"]["name"],
        "BrokerError"
    );
}

#[tokio::test]
async fn the_rust_client_authorizes_sends_and_receives_updates() {
    let server = start_with(config()).await;
    let (client, mut updates) = CtClient::connect(&ct_url(&server), json!({"username": "ann"}))
        .await
        .unwrap();
    assert_eq!(client.auth_data(), Some(&json!({"username": "ann"})));
    assert_eq!(
        client.send("echo", json!({"a": 1})).await.unwrap(),
        Some(json!({"a": 1}))
    );
    let err = client.send("fail", json!({})).await.unwrap_err();
    assert_eq!(
        err,
        ClientError::Remote(ApiError::new("CustomError", "bad thing"))
    );
    client.subscribe("news").await.unwrap();
    server.handle.publish("news", json!("hello")).await.unwrap();
    let update = next_update(&mut updates).await;
    assert_eq!(update.kind, "#publish");
    assert_eq!(
        update.payload,
        Some(json!({"channel": "news", "data": "hello"}))
    );
    let err = CtClient::connect(&ct_url(&server), json!({}))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Handshake(reason) if reason.contains("1008")),
        "{err:?}"
    );
}
