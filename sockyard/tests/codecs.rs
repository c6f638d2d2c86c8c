//! The MessagePack and protobuf endpoints over real sockets: calls, errors, channels and binary
//! values through the Rust client, `#api`, ping handling, and bad frames that must not crash.

use std::sync::Arc;
use std::time::Duration;

use futures_util::SinkExt as _;
use serde_json::{json, Value};
use sockyard::client::{Client, ClientEvent, ClientOptions};
use sockyard::codec::protobuf::{EventTypes, Schema};
use sockyard::codec::{Binary, Encoding};
use sockyard::config::DEMO_PROTO;
use sockyard::protocol::socketcluster::ProtocolVersion;
use sockyard::{Config, Server};
use sockyard_test_support::client::{assert_remote_errors, next_event, next_publication};
use sockyard_test_support::router::test_router;
use sockyard_test_support::server::{start, start_with, start_with_router, TestServer};
use sockyard_test_support::socketcluster::{echo, handshaken, next_json};
use sockyard_test_support::ws::{connect, next, send, Ws};
use tokio_tungstenite::tungstenite::Message;

fn minbin_url(server: &TestServer) -> String {
    server.url_of("/socketcluster-minbin/")
}

fn protobuf_url(server: &TestServer) -> String {
    server.url_of("/socketcluster-protobuf/")
}

fn demo_schema() -> Encoding {
    let schema = Schema::compile(&[("demo.proto".into(), DEMO_PROTO.into())], true, &[]).unwrap();
    Encoding::Protobuf(Arc::new(schema))
}

/// A raw socket on a binary endpoint, handshaken through its codec.
async fn handshaken_through(url: &str, encoding: &Encoding) -> Ws {
    let mut raw = connect(url).await;
    let mut handshake = Vec::new();
    let kind = sockyard::protocol::socketcluster::encode_event(
        encoding,
        "#handshake",
        Some(&json!({})),
        Some(1),
        &mut handshake,
    )
    .unwrap();
    assert_eq!(kind, sockyard::codec::FrameKind::Binary);
    raw.send(Message::binary(handshake)).await.unwrap();
    next(&mut raw).await;
    raw
}

/// Sends an invoke through the codec.
async fn send_event(raw: &mut Ws, encoding: &Encoding, event: &str, data: Value, cid: u64) {
    let mut frame = Vec::new();
    sockyard::protocol::socketcluster::encode_event(
        encoding,
        event,
        Some(&data),
        Some(cid),
        &mut frame,
    )
    .unwrap();
    raw.send(Message::binary(frame)).await.unwrap();
}

/// The next binary frame (pings skipped), which must decode to one packet.
async fn next_packet(raw: &mut Ws, encoding: &Encoding) -> Value {
    let reply = loop {
        if let Message::Binary(bytes) = next(raw).await {
            break bytes;
        }
    };
    match encoding.decode(&reply, true, &mut Default::default()) {
        sockyard::codec::Decoded::Packets(packets) if packets.len() == 1 => packets[0].clone(),
        other => panic!("not one packet: {other:?}"),
    }
}

async fn exercise(url: &str, encoding: Encoding) {
    let options = ClientOptions::default().encoding(encoding);
    let (client, mut events) = Client::connect(url, options).await.unwrap();
    let value = json!({"a": [1, 2.5, -3], "s": "é", "n": null, "t": true, "o": {"x": {}}});
    assert_eq!(client.invoke("echo", &value).await, Ok(Some(value)));
    assert_eq!(client.invoke("nothing", 1).await, Ok(None));
    assert_remote_errors(&client).await;
    client.subscribe("news").await.unwrap();
    client.publish("news", json!({"n": 1})).await.unwrap();
    let (channel, data) = next_publication(&mut events).await;
    assert_eq!((channel.as_str(), data), ("news", Some(json!({"n": 1}))));
    // The server can call the client too.
    let caller = client.clone();
    let call = tokio::spawn(async move { caller.invoke("callClient", json!({"q": 1})).await });
    loop {
        if let ClientEvent::Invoke(incoming) = next_event(&mut events).await {
            incoming.respond(Ok(Some(json!({"answer": 2}))));
            break;
        }
    }
    assert_eq!(call.await.unwrap(), Ok(Some(json!({"answer": 2}))));
}

#[tokio::test]
async fn msgpack_endpoint_serves_calls_errors_and_channels() {
    let server = start().await;
    exercise(&minbin_url(&server), Encoding::Msgpack).await;
}

#[tokio::test]
async fn protobuf_endpoint_serves_calls_errors_and_channels() {
    let server = start().await;
    exercise(&protobuf_url(&server), demo_schema()).await;
}

#[tokio::test]
async fn msgpack_binary_values_round_trip_as_bin() {
    let server = start().await;
    let options = ClientOptions::default().encoding(Encoding::Msgpack);
    let (client, _events) = Client::connect(&minbin_url(&server), options)
        .await
        .unwrap();
    let bytes = json!({
        "file": Binary(vec![0, 1, 2, 255]),
        "lookalike": {"base64": true, "data": "AAEC/w=="}
    });
    assert_eq!(bytes["file"], json!({"$binary": "AAEC/w=="}));
    assert_eq!(client.invoke("echo", &bytes).await, Ok(Some(bytes)));
    // A JSON client sees the same bytes in sc-formatter's form.
    let (json_client, _events) = Client::connect(&server.url(), ClientOptions::default())
        .await
        .unwrap();
    let reply = json_client
        .invoke("echo", json!({"file": Binary(vec![0, 1, 2, 255])}))
        .await;
    assert_eq!(
        reply,
        Ok(Some(json!({"file": {"base64": true, "data": "AAEC/w=="}})))
    );
}

#[tokio::test]
async fn v1_pings_go_through_binary_codecs() {
    let mut config = Config::default();
    for endpoint in &mut config.endpoints {
        endpoint.ping_interval_ms = 100;
        endpoint.ping_timeout_ms = 400;
    }
    let server = start_with(config).await;
    for (url, encoding) in [
        (minbin_url(&server), Encoding::Msgpack),
        (protobuf_url(&server), demo_schema()),
    ] {
        let options = ClientOptions::default()
            .encoding(encoding)
            .protocol_version(ProtocolVersion::V1);
        let (client, _events) = Client::connect(&url, options).await.unwrap();
        tokio::time::sleep(Duration::from_millis(900)).await;
        assert_eq!(client.invoke("echo", 1).await, Ok(Some(json!(1))), "{url}");
    }
}

#[tokio::test]
async fn api_calls_answer_typed_results_typed_errors_and_404() {
    let server = start().await;
    let encoding = demo_schema();
    let Encoding::Protobuf(schema) = &encoding else {
        unreachable!()
    };
    let request = schema.message(".app.RequestMessage").unwrap();
    let buffer = schema
        .encode_message(&request, json!({"a": "this string", "b": "this too"}))
        .unwrap();
    let b64 =
        |bytes: &[u8]| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes);
    let unb64 = |text: &Value| {
        base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            text.as_str().unwrap(),
        )
        .unwrap()
    };
    let (client, _events) = Client::connect(
        &protobuf_url(&server),
        ClientOptions::default().encoding(encoding.clone()),
    )
    .await
    .unwrap();
    let call = |resource: &str| json!({"resource": resource, "method": "get", "dataType": ".app.RequestMessage", "buffer": b64(&buffer)});
    let reply = client
        .invoke("#api", call("/resource"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply["dataType"], ".app.ResponseMessage");
    assert!(!reply
        .get("isError")
        .and_then(Value::as_bool)
        .unwrap_or(false));
    let response = schema.message(".app.ResponseMessage").unwrap();
    assert_eq!(
        schema
            .decode_message(&response, &unb64(&reply["buffer"]))
            .unwrap(),
        json!({"c": "this string this too"})
    );

    let reply = client.invoke("#api", call("/fail")).await.unwrap().unwrap();
    assert_eq!(
        (reply["isError"].as_bool(), reply["dataType"].as_str()),
        (Some(true), Some(".app.SomeError"))
    );
    let error = schema.message(".app.SomeError").unwrap();
    assert_eq!(
        schema
            .decode_message(&error, &unb64(&reply["buffer"]))
            .unwrap(),
        json!({"code": 500, "message": "this route always fails"})
    );

    let reply = client
        .invoke("#api", call("/nowhere"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply["dataType"], ".socketclusterapi.ApiError");
    let api_error = schema.message(".socketclusterapi.ApiError").unwrap();
    assert_eq!(
        schema
            .decode_message(&api_error, &unb64(&reply["buffer"]))
            .unwrap(),
        json!({"code": 404, "reason": "Not Found", "description": "Requested resource 'GET /nowhere' has no handler defined."})
    );
}

#[tokio::test]
async fn configured_events_use_their_own_types() {
    let mut config = Config::default();
    let proto = r#"
        syntax = "proto3";
        package calc;
        message Numbers { int32 a = 1; int32 b = 2; }
        message Sum { int32 sum = 1; }
        message AddRequest { string event = 1; Numbers data = 2; int32 cid = 3; }
        message AddResponse { int32 rid = 1; Sum data = 2; }
    "#;
    let events = vec![EventTypes {
        event: "add".into(),
        request: ".calc.AddRequest".into(),
        response: Some(".calc.AddResponse".into()),
    }];
    config.endpoints[3].protobuf.inline = vec![proto.to_owned()];
    config.endpoints[3].protobuf.api = false;
    config.endpoints[3].protobuf.routes.clear();
    config.endpoints[3].protobuf.events = events.clone();
    let router = test_router().procedure("add", |_ctx, n: Value| async move {
        Ok::<_, sockyard::ApiError>(
            json!({"sum": n["a"].as_i64().unwrap_or(0) + n["b"].as_i64().unwrap_or(0)}),
        )
    });
    let server = start_with_router(config, router).await;
    let schema = Schema::compile(&[("calc.proto".into(), proto.into())], false, &events).unwrap();
    let encoding = Encoding::Protobuf(Arc::new(schema));
    let (client, _events) = Client::connect(
        &protobuf_url(&server),
        ClientOptions::default().encoding(encoding),
    )
    .await
    .unwrap();
    assert_eq!(
        client.invoke("add", json!({"a": 2, "b": 40})).await,
        Ok(Some(json!({"sum": 42})))
    );
}

#[tokio::test]
async fn bad_binary_frames_are_ignored_without_harm() {
    let server = start().await;
    let mut bystander = handshaken(&server.url()).await;
    for (url, encoding, frames) in [
        (
            minbin_url(&server),
            Encoding::Msgpack,
            vec![
                vec![0xc6, 0xff, 0xff, 0xff, 0xff, 1, 2],
                vec![0xdd, 0xff, 0xff, 0xff, 0xff],
                vec![0x91; 50_000],
                vec![0xd4, 1, 2],
            ],
        ),
        (
            protobuf_url(&server),
            demo_schema(),
            vec![
                vec![0x01],
                vec![0x01, 0x63, 1, 2],
                vec![0x01, 0x00, 0x0a, 0xff, 0xff],
                vec![0x02, 0x00],
                vec![],
            ],
        ),
    ] {
        let options = ClientOptions::default().encoding(encoding.clone());
        let (client, _events) = Client::connect(&url, options).await.unwrap();
        // A raw socket on the same endpoint, handshaken through the codec.
        let mut raw = handshaken_through(&url, &encoding).await;
        for frame in frames {
            raw.send(Message::binary(frame)).await.unwrap();
        }
        // JSON text on a binary endpoint is not a packet either.
        send(&mut raw, &echo(2, json!(1))).await;
        assert_eq!(
            client.invoke("echo", "still fine").await,
            Ok(Some(json!("still fine"))),
            "{url}"
        );
        send_event(&mut raw, &encoding, "echo", json!("raw ok"), 3).await;
        assert_eq!(
            next_packet(&mut raw, &encoding).await,
            json!({"rid": 3, "data": "raw ok"}),
            "{url}"
        );
    }
    assert!(
        server
            .handle
            .metrics()
            .error_count(sockyard::metrics::ErrorKind::raw_message)
            >= 9
    );
    send(&mut bystander, &echo(2, json!("ok"))).await;
    assert_eq!(next_json(&mut bystander).await["data"], "ok");
}

#[test]
fn proto_syntax_errors_stop_start_up_naming_file_and_line() {
    let mut config = Config::default();
    config.endpoints[3].protobuf.inline =
        vec!["syntax = \"proto3\";\npackage x;\nmessage A {\n  int32 a = ;\n}\n".to_owned()];
    let err = Server::new(&config, test_router().build().unwrap()).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("/socketcluster-protobuf/"), "{text}");
    assert!(text.contains("inline[0].proto:4:"), "{text}");
}

#[tokio::test]
async fn broken_binary_packets_with_a_readable_cid_get_an_error_reply() {
    let server = start().await;
    let invalid = |rid: u64, reason: &str| {
        json!({"rid": rid, "error": {
            "name": "InvalidMessageError",
            "message": format!("The message could not be decoded: {reason}")
        }})
    };
    // MessagePack: {e:["echo", <fixext1>, 5]}, then a batch of a valid invoke and that one,
    // then a broken transmit (no reply) before a valid invoke.
    let encoding = Encoding::Msgpack;
    let mut raw = handshaken_through(&minbin_url(&server), &encoding).await;
    let broken = b"\x81\xa1e\x93\xa4echo\xd4\x01\x02\x05";
    raw.send(Message::binary(broken.to_vec())).await.unwrap();
    let ext = "invalid MessagePack: extension types are not supported";
    assert_eq!(next_packet(&mut raw, &encoding).await, invalid(5, ext));
    let mut batch = b"\x92\x81\xa1e\x93\xa4echo\x01\x06".to_vec();
    batch.extend_from_slice(broken);
    raw.send(Message::binary(batch)).await.unwrap();
    assert_eq!(
        next_packet(&mut raw, &encoding).await,
        json!({"rid": 6, "data": 1})
    );
    assert_eq!(next_packet(&mut raw, &encoding).await, invalid(5, ext));
    raw.send(Message::binary(b"\x81\xa1e\x92\xa4echo\xa1\xff".to_vec()))
        .await
        .unwrap();
    send_event(&mut raw, &encoding, "echo", json!("after"), 7).await;
    assert_eq!(
        next_packet(&mut raw, &encoding).await,
        json!({"rid": 7, "data": "after"})
    );

    // Protobuf: an #api call (id 8, cid = field 1) cut short after its cid.
    let encoding = demo_schema();
    let mut raw = handshaken_through(&protobuf_url(&server), &encoding).await;
    raw.send(Message::binary(vec![
        0x01, 0x08, 0x08, 0x5a, 0x1a, 0x7f, 0x0a,
    ]))
    .await
    .unwrap();
    let reply = next_packet(&mut raw, &encoding).await;
    assert_eq!(reply["rid"], 90, "{reply}");
    assert_eq!(reply["error"]["name"], "InvalidMessageError", "{reply}");
    let message = reply["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("The message could not be decoded: invalid socketclusterapi.ApiCall: "),
        "{message}"
    );
    send_event(&mut raw, &encoding, "echo", json!("after"), 9).await;
    assert_eq!(
        next_packet(&mut raw, &encoding).await,
        json!({"rid": 9, "data": "after"})
    );
    // Counted, as other requests with malformed data are; the broken transmit as a raw message.
    let metrics = server.handle.metrics();
    assert_eq!(
        metrics.error_count(sockyard::metrics::ErrorKind::invalid_request),
        3
    );
    assert_eq!(
        metrics.error_count(sockyard::metrics::ErrorKind::raw_message),
        1
    );
}
