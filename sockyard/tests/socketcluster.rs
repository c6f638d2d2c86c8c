//! SocketCluster protocol behaviour over real sockets: handshake, calls, batches, pings, close
//! codes and server-initiated calls, with exact frames.

use std::time::Duration;

use futures_util::SinkExt as _;
use serde_json::{json, Value};
use sockyard::config::EndpointConfig;
use sockyard::metrics::ErrorKind;
use sockyard::protocol::socketcluster::ProtocolVersion;
use sockyard::Config;
use sockyard_test_support::server::{start, start_with};
use sockyard_test_support::socketcluster::*;
use sockyard_test_support::ws::*;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn handshake_reply_has_id_ping_timeout_and_auth_state() {
    let server = start().await;
    let mut ws = connect(&server.url()).await;
    send(&mut ws, HANDSHAKE).await;
    let reply = next_json(&mut ws).await;
    assert_eq!(reply["rid"], 1);
    let data = reply["data"].as_object().unwrap();
    let id = data["id"].as_str().unwrap();
    assert_eq!(id.len(), 20);
    assert!(id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    assert_eq!(data["pingTimeout"], 20000);
    assert_eq!(data["isAuthenticated"], false);
    assert!(!data.contains_key("authError"));
    assert_eq!(data.len(), 3);
}

#[tokio::test]
async fn echo_invoke_transmit_and_replies_without_data() {
    let server = start().await;
    let mut ws = handshaken(&server.url()).await;
    send(
        &mut ws,
        &echo(2, json!({"a": [1, 2, {"b": null}], "s": "é"})),
    )
    .await;
    assert_eq!(
        next_json(&mut ws).await,
        json!({"rid": 2, "data": {"a": [1, 2, {"b": null}], "s": "é"}})
    );
    // Data left out: the echo reply leaves it out too.
    send(&mut ws, r#"{"event":"echo","cid":3}"#).await;
    assert_eq!(next_json(&mut ws).await, json!({"rid": 3}));
    // Explicit null comes back as null.
    send(&mut ws, r#"{"event":"echo","data":null,"cid":4}"#).await;
    assert_eq!(next_json(&mut ws).await, json!({"rid": 4, "data": null}));
    // A handler returning () replies without data.
    send(&mut ws, r#"{"event":"nothing","data":1,"cid":5}"#).await;
    assert_eq!(next_json(&mut ws).await, json!({"rid": 5}));
    // A transmit gets no reply: the next frame answers the invoke that follows it.
    send(&mut ws, r#"{"event":"echo","data":"ignored"}"#).await;
    send(&mut ws, &echo(6, json!("after"))).await;
    assert_eq!(next_json(&mut ws).await, json!({"rid": 6, "data": "after"}));
}

#[tokio::test]
async fn string_cid_is_a_transmit() {
    let server = start().await;
    let mut ws = handshaken(&server.url()).await;
    send(&mut ws, r#"{"event":"echo","data":1,"cid":"7"}"#).await;
    send(&mut ws, &echo(8, json!(2))).await;
    assert_eq!(next_json(&mut ws).await, json!({"rid": 8, "data": 2}));
}

#[tokio::test]
async fn errors_carry_name_message_and_extra_fields() {
    let server = start().await;
    let mut ws = handshaken(&server.url()).await;
    send(&mut ws, r#"{"event":"fail","cid":2}"#).await;
    assert_eq!(
        next_json(&mut ws).await,
        json!({"rid": 2, "error": {"name": "CustomError", "message": "bad thing", "extra": 42}})
    );
    send(&mut ws, r#"{"event":"nope","data":{},"cid":3}"#).await;
    assert_eq!(
        next_json(&mut ws).await,
        json!({"rid": 3, "error": {"name": "NotFound", "message": "Unknown procedure 'nope'"}})
    );
    send(
        &mut ws,
        r#"{"event":"sleep","data":"not a number","cid":4}"#,
    )
    .await;
    let reply = next_json(&mut ws).await;
    assert_eq!(reply["error"]["name"], "BadRequest");
    assert_eq!(server.handle.metrics().error_count(ErrorKind::not_found), 1);
}

#[tokio::test]
async fn a_panicking_handler_answers_internal_error_and_harms_nobody() {
    let server = start().await;
    let mut bystander = handshaken(&server.url()).await;
    let mut ws = handshaken(&server.url()).await;
    send(&mut ws, r#"{"event":"panic","cid":2}"#).await;
    let reply = next_json(&mut ws).await;
    assert_eq!(reply["rid"], 2);
    assert_eq!(reply["error"]["name"], "InternalError");
    assert!(!reply["error"]["message"]
        .as_str()
        .unwrap()
        .contains("deliberate"));
    send(&mut ws, &echo(3, json!("still here"))).await;
    assert_eq!(
        next_json(&mut ws).await,
        json!({"rid": 3, "data": "still here"})
    );
    send(&mut bystander, &echo(2, json!("fine"))).await;
    assert_eq!(
        next_json(&mut bystander).await,
        json!({"rid": 2, "data": "fine"})
    );
    assert_eq!(
        server
            .handle
            .metrics()
            .error_count(ErrorKind::handler_panic),
        1
    );
}

#[tokio::test]
async fn batches_are_answered_in_order() {
    let server = start().await;
    let mut ws = handshaken(&server.url()).await;
    send(
        &mut ws,
        r#"[{"event":"sleep","data":30,"cid":2},{"event":"echo","data":"b","cid":3},{"event":"echo","data":"c"},{"event":"echo","data":"d","cid":4}]"#,
    )
    .await;
    assert_eq!(next_json(&mut ws).await, json!({"rid": 2, "data": 30}));
    assert_eq!(next_json(&mut ws).await, json!({"rid": 3, "data": "b"}));
    assert_eq!(next_json(&mut ws).await, json!({"rid": 4, "data": "d"}));
}

#[tokio::test]
async fn handshake_may_share_a_batch_or_a_read_with_the_first_call() {
    let server = start().await;
    let mut ws = connect(&server.url()).await;
    send(
        &mut ws,
        r##"[{"event":"#handshake","cid":1},{"event":"echo","data":1,"cid":2}]"##,
    )
    .await;
    assert_eq!(next_json(&mut ws).await["rid"], 1);
    assert_eq!(next_json(&mut ws).await, json!({"rid": 2, "data": 1}));

    // Two frames written back to back arrive in one read.
    let mut ws = connect(&server.url()).await;
    ws.feed(Message::text(r##"{"event":"#handshake","cid":1}"##))
        .await
        .unwrap();
    ws.feed(Message::text(echo(2, json!(2)))).await.unwrap();
    ws.flush().await.unwrap();
    assert_eq!(next_json(&mut ws).await["rid"], 1);
    assert_eq!(next_json(&mut ws).await, json!({"rid": 2, "data": 2}));
}

#[tokio::test]
async fn handshake_without_cid_closes_4008() {
    let server = start().await;
    let mut ws = connect(&server.url()).await;
    send(
        &mut ws,
        r##"{"event":"#handshake","data":{"authToken":null}}"##,
    )
    .await;
    assert_eq!(
        expect_close(&mut ws).await,
        (4008, "Handshake request was malformatted".to_owned())
    );
}

#[tokio::test]
async fn anything_before_the_handshake_closes_4009() {
    let server = start().await;
    for frame in [
        r#"{"event":"echo","data":1,"cid":1}"#,
        "",
        "not json",
        r#"{"rid":1}"#,
    ] {
        let mut ws = connect(&server.url()).await;
        send(&mut ws, frame).await;
        assert_eq!(expect_close(&mut ws).await.0, 4009, "frame {frame:?}");
    }
    assert_eq!(
        server
            .handle
            .metrics()
            .error_count(ErrorKind::protocol_violation),
        4
    );
}

#[tokio::test]
async fn no_handshake_within_the_deadline_closes_4005() {
    let mut config = Config::default();
    config.limits.handshake_timeout_ms = 200;
    let server = start_with(config).await;
    let mut ws = connect(&server.url()).await;
    let started = std::time::Instant::now();
    assert_eq!(expect_close(&mut ws).await.0, 4005);
    assert!(started.elapsed() >= Duration::from_millis(150));
}

fn ping_config(version: ProtocolVersion) -> Config {
    let mut config = Config::default();
    let mut endpoint = EndpointConfig::default();
    endpoint.protocol_version = version;
    endpoint.ping_interval_ms = 100;
    endpoint.ping_timeout_ms = 400;
    config.endpoints = vec![endpoint];
    config
}

/// Collects the text frames that arrive within `window`, answering nothing.
async fn frames_within(ws: &mut Ws, window: Duration) -> Vec<String> {
    let mut frames = Vec::new();
    let deadline = tokio::time::Instant::now() + window;
    while let Ok(Some(Ok(message))) =
        tokio::time::timeout_at(deadline, futures_util::StreamExt::next(ws)).await
    {
        if let Message::Text(text) = message {
            frames.push(text.to_string());
        }
    }
    frames
}

#[tokio::test]
async fn pings_follow_the_protocol_version() {
    for (version, expected) in [
        (ProtocolVersion::Both, vec!["", "#1"]),
        (ProtocolVersion::V2, vec![""]),
        (ProtocolVersion::V1, vec!["#1"]),
    ] {
        let server = start_with(ping_config(version)).await;
        let mut ws = handshaken(&server.url()).await;
        let frames = frames_within(&mut ws, Duration::from_millis(250)).await;
        assert!(frames.len() >= expected.len(), "{version:?}: {frames:?}");
        assert_eq!(frames[..expected.len()], expected[..], "{version:?}");
    }
}

#[tokio::test]
async fn answering_pings_keeps_the_connection_and_silence_closes_4001() {
    for (version, pong) in [
        (ProtocolVersion::Both, ""),
        (ProtocolVersion::Both, "#2"),
        (ProtocolVersion::V1, "#2"),
        (ProtocolVersion::V2, ""),
    ] {
        let server = start_with(ping_config(version)).await;
        let mut ws = handshaken(&server.url()).await;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(1200);
        while tokio::time::Instant::now() < deadline {
            match tokio::time::timeout_at(deadline, futures_util::StreamExt::next(&mut ws)).await {
                Ok(Some(Ok(Message::Text(text)))) if is_ping(text.as_str()) => {
                    send(&mut ws, pong).await;
                }
                Ok(Some(Ok(Message::Close(frame)))) => {
                    panic!("{version:?}/{pong:?}: closed: {frame:?}")
                }
                Ok(Some(Ok(_))) => {}
                Ok(_) => panic!("{version:?}/{pong:?}: stream ended"),
                Err(_) => break,
            }
        }
        send(&mut ws, &echo(9, json!("alive"))).await;
        assert_eq!(
            next_json(&mut ws).await,
            json!({"rid": 9, "data": "alive"}),
            "{version:?}/{pong:?}"
        );
    }

    let server = start_with(ping_config(ProtocolVersion::Both)).await;
    let mut ws = handshaken(&server.url()).await;
    assert_eq!(
        expect_close(&mut ws).await,
        (4001, "Client pong timed out".to_owned())
    );
    assert_eq!(
        server.handle.metrics().error_count(ErrorKind::pong_timeout),
        1
    );
}

#[tokio::test]
async fn v1_disconnect_closes_with_the_announced_code() {
    let server = start().await;
    let mut ws = handshaken(&server.url()).await;
    send(
        &mut ws,
        r##"{"event":"#disconnect","data":{"code":4100,"data":"done"}}"##,
    )
    .await;
    assert_eq!(expect_close(&mut ws).await, (4100, "done".to_owned()));
}

#[tokio::test]
async fn server_invokes_the_client_with_its_own_cids() {
    let server = start().await;
    let mut ws = handshaken(&server.url()).await;
    send(&mut ws, r#"{"event":"callClient","data":{"q":1},"cid":2}"#).await;
    let call = next_json(&mut ws).await;
    assert_eq!(
        call,
        json!({"event": "clientProc", "data": {"q": 1}, "cid": 1})
    );
    send(&mut ws, r#"{"rid":1,"data":{"answer":2}}"#).await;
    assert_eq!(
        next_json(&mut ws).await,
        json!({"rid": 2, "data": {"answer": 2}})
    );

    // The server's counter moves on; an error from the client comes back as the error.
    send(&mut ws, r#"{"event":"callClient","data":null,"cid":3}"#).await;
    // `null` data is left out of the frame, as the official server leaves out `undefined`.
    assert_eq!(
        next_json(&mut ws).await,
        json!({"event": "clientProc", "cid": 2})
    );
    send(
        &mut ws,
        r#"{"rid":2,"error":{"name":"NoWay","message":"refused"}}"#,
    )
    .await;
    assert_eq!(
        next_json(&mut ws).await,
        json!({"rid": 3, "error": {"name": "NoWay", "message": "refused"}})
    );
}

#[tokio::test]
async fn server_transmits_reach_the_client() {
    let server = start().await;
    let mut ws = handshaken(&server.url()).await;
    send(&mut ws, r#"{"event":"pushToMe","data":{"n":1},"cid":2}"#).await;
    let mut got: Vec<Value> = vec![next_json(&mut ws).await, next_json(&mut ws).await];
    got.sort_by_key(|v| v.get("rid").is_some());
    assert_eq!(
        got,
        [
            json!({"event": "serverEvent", "data": {"n": 1}}),
            json!({"rid": 2})
        ]
    );
}

#[tokio::test]
async fn server_can_close_a_connection_with_a_code() {
    let server = start().await;
    let mut ws = handshaken(&server.url()).await;
    send(
        &mut ws,
        r#"{"event":"closeMe","data":{"code":4500,"reason":"go away"},"cid":2}"#,
    )
    .await;
    assert_eq!(expect_close(&mut ws).await, (4500, "go away".to_owned()));
}

#[tokio::test]
async fn binary_frames_carrying_json_are_read_like_text() {
    let server = start().await;
    let mut ws = handshaken(&server.url()).await;
    ws.send(Message::binary(echo(2, json!("bin")).into_bytes()))
        .await
        .unwrap();
    assert_eq!(next_json(&mut ws).await, json!({"rid": 2, "data": "bin"}));
    // Binary garbage is a raw message: ignored and counted, the connection stays.
    ws.send(Message::binary(vec![0xff, 0x00, 0x13]))
        .await
        .unwrap();
    send(&mut ws, &echo(3, json!("ok"))).await;
    assert_eq!(next_json(&mut ws).await, json!({"rid": 3, "data": "ok"}));
    assert_eq!(
        server.handle.metrics().error_count(ErrorKind::raw_message),
        1
    );
}

/// `levels` nested arrays around 1.
fn nested_arrays(levels: usize) -> String {
    format!("{}1{}", "[".repeat(levels), "]".repeat(levels))
}

#[tokio::test]
async fn a_too_deep_call_in_a_batch_is_answered_with_the_others() {
    let server = start().await;
    let mut ws = handshaken(&server.url()).await;
    // The deepest packet the parser reads alone: its object and 126 arrays.
    let deepest = nested_arrays(126);
    send(
        &mut ws,
        &format!(r#"{{"event":"echo","data":{deepest},"cid":2}}"#),
    )
    .await;
    assert_eq!(next_json(&mut ws).await["rid"], 2);
    let too_deep = nested_arrays(1000);
    send(
        &mut ws,
        &format!(
            r#"[{{"event":"echo","data":"a","cid":3}},{{"event":"echo","data":{too_deep},"cid":4}},{{"event":"echo","data":{deepest},"cid":5}},{{"event":"echo","data":"b"}},{{"event":"echo","data":"c","cid":6}}]"#
        ),
    )
    .await;
    assert_eq!(next_json(&mut ws).await, json!({"rid": 3, "data": "a"}));
    assert_eq!(
        next_json(&mut ws).await,
        json!({"rid": 4, "error": {
            "name": "InvalidMessageError",
            "message": "The message nests arrays or objects more than 128 levels deep"
        }})
    );
    // Inside the batch, data nests as deeply as alone.
    let reply = next_json(&mut ws).await;
    assert_eq!(reply["rid"], 5);
    assert_eq!(reply["data"].to_string(), deepest);
    assert_eq!(next_json(&mut ws).await, json!({"rid": 6, "data": "c"}));
    assert_eq!(
        server
            .handle
            .metrics()
            .error_count(ErrorKind::invalid_request),
        1
    );
}

#[tokio::test]
async fn an_invoke_with_a_lone_surrogate_is_answered() {
    let server = start().await;
    let mut ws = handshaken(&server.url()).await;
    // What JavaScript's JSON.stringify writes for a string holding a lone surrogate.
    send(
        &mut ws,
        r#"{"event":"echo","data":{"s":"x\ud800y","\udc00":1},"cid":2}"#,
    )
    .await;
    assert_eq!(
        next_json(&mut ws).await,
        json!({"rid": 2, "data": {"s": "x\u{fffd}y", "\u{fffd}": 1}})
    );
}

#[tokio::test]
async fn a_handshake_that_is_not_json_closes_4009() {
    let server = start().await;
    // Text that is not JSON, JSON cut short, JSON that is not an object, in text and binary
    // frames: closed with 4009 as socketcluster-server 20 does (which sends no reason).
    for (frame, binary) in [
        (&b"hello"[..], false),
        (br##"{"event":"#handshake","cid":1"##, false),
        (br##""#handshake""##, false),
        (b"null", false),
        (b"[1]", false),
        (b"\xff\xfe\x00", true),
        (br##"{"event":"#handshake","cid":1"##, true),
    ] {
        let mut ws = connect(&server.url()).await;
        if binary {
            send_binary(&mut ws, frame).await;
        } else {
            send(&mut ws, std::str::from_utf8(frame).unwrap()).await;
        }
        assert_eq!(
            expect_close(&mut ws).await,
            (4009, "Message received before handshake".to_owned()),
            "frame {:?}",
            String::from_utf8_lossy(frame)
        );
    }
}
