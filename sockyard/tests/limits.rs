//! Bad input and limits, tried as a careless or hostile client would: each gets its documented
//! reply or close code, and every other connection keeps working.

use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::json;
use sockyard::metrics::ErrorKind;
use sockyard::ws::frame::{self, OpCode};
use sockyard::Config;
use sockyard_test_support::http::http_get;
use sockyard_test_support::server::{start, start_with, TestServer};
use sockyard_test_support::socketcluster::*;
use sockyard_test_support::ws::*;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

/// Upgrades a plain TCP stream by hand so the test can write arbitrary bytes afterwards.
async fn raw_tcp_upgrade(server: &TestServer) -> TcpStream {
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    let request = format!(
        "GET /socketcluster/ HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        server.addr
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    while !response.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8];
        tcp.read_exact(&mut byte).await.unwrap();
        response.push(byte[0]);
    }
    assert!(
        response.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&response)
    );
    tcp
}

/// Reads server frames from a raw stream until a close frame; returns its code.
async fn raw_close_code(tcp: &mut TcpStream) -> u16 {
    let mut buf = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        while let Some(header) = frame::parse_header(&buf, frame::Role::Client, usize::MAX).unwrap()
        {
            let end = header.header_len + header.payload_len;
            if buf.len() < end {
                break;
            }
            if header.opcode == OpCode::Close {
                let body = &buf[header.header_len..end];
                return u16::from_be_bytes([body[0], body[1]]);
            }
            buf.drain(..end);
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline, tcp.read(&mut chunk))
            .await
            .expect("close in time")
            .unwrap();
        assert!(n > 0, "connection ended without a close frame");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test]
async fn non_json_text_is_ignored_and_counted() {
    let server = start().await;
    let mut ws = handshaken(&server.url()).await;
    for text in ["hello", "{broken", "[1,2", "42"] {
        send(&mut ws, text).await;
    }
    assert_alive(&mut ws, 2).await;
    assert_eq!(
        server.handle.metrics().error_count(ErrorKind::raw_message),
        4
    );
}

#[tokio::test]
async fn a_10_mb_frame_closes_1009_and_spares_others() {
    let server = start().await;
    let mut bystander = handshaken(&server.url()).await;
    let mut ws = connect_unlimited(&server.url()).await;
    handshake(&mut ws).await;
    let big = format!(
        r#"{{"event":"echo","data":"{}","cid":2}}"#,
        "x".repeat(10 << 20)
    );
    // The server may close before the whole frame is written; the send result does not matter.
    let _ = ws.send(Message::text(big)).await;
    assert_eq!(expect_close(&mut ws).await.0, 1009);
    assert_alive(&mut bystander, 2).await;
    assert_eq!(
        server
            .handle
            .metrics()
            .error_count(ErrorKind::message_too_large),
        1
    );
}

#[tokio::test]
async fn message_size_limit_is_configurable_and_counts_fragments() {
    let mut config = Config::default();
    config.limits.max_message_bytes = 1000;
    let server = start_with(config).await;
    let mut tcp = raw_tcp_upgrade(&server).await;
    let mut out = Vec::new();
    // Two fragments of 600 bytes: each fits, together they do not.
    frame::write_header(&mut out, false, OpCode::Text, 600, Some([1, 2, 3, 4]));
    out.extend(std::iter::repeat_n(b'a' ^ 1, 600));
    frame::write_header(
        &mut out,
        true,
        OpCode::Continuation,
        600,
        Some([0, 0, 0, 0]),
    );
    out.extend(std::iter::repeat_n(b'a', 600));
    tcp.write_all(&out).await.unwrap();
    assert_eq!(raw_close_code(&mut tcp).await, 1009);
}

#[tokio::test]
async fn protocol_errors_in_frames_close_1002_or_1007() {
    let server = start().await;
    // Unmasked client frame.
    let mut tcp = raw_tcp_upgrade(&server).await;
    let mut out = Vec::new();
    frame::write_frame(&mut out, OpCode::Text, b"{}");
    tcp.write_all(&out).await.unwrap();
    assert_eq!(raw_close_code(&mut tcp).await, 1002);
    // Invalid UTF-8 in a text frame.
    let mut tcp = raw_tcp_upgrade(&server).await;
    let mut out = Vec::new();
    frame::write_masked_frame(&mut out, OpCode::Text, &[0xC3, 0x28], [9, 9, 9, 9]);
    tcp.write_all(&out).await.unwrap();
    assert_eq!(raw_close_code(&mut tcp).await, 1007);
    assert_eq!(server.handle.metrics().error_count(ErrorKind::bad_frame), 2);
}

#[tokio::test]
async fn a_64_bit_length_with_the_top_bit_set_closes_1002() {
    let mut config = Config::default();
    // Even with no size limit to trip over, RFC 6455 §5.2 forbids the bit.
    config.limits.max_message_bytes = usize::MAX;
    let server = start_with(config).await;
    let mut tcp = raw_tcp_upgrade(&server).await;
    let header = [0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 4, 1, 2, 3, 4];
    tcp.write_all(&header).await.unwrap();
    assert_eq!(raw_close_code(&mut tcp).await, 1002);
    assert_eq!(server.handle.metrics().error_count(ErrorKind::bad_frame), 1);
}

#[tokio::test]
async fn fragmented_messages_and_ws_pings_are_handled() {
    let server = start().await;
    let mut tcp = raw_tcp_upgrade(&server).await;
    let handshake = br##"{"event":"#handshake","cid":1}"##;
    let mut out = Vec::new();
    frame::write_header(&mut out, false, OpCode::Text, 10, Some([0; 4]));
    out.extend_from_slice(&handshake[..10]);
    frame::write_masked_frame(&mut out, OpCode::Ping, b"hi", [5, 6, 7, 8]);
    frame::write_header(
        &mut out,
        true,
        OpCode::Continuation,
        handshake.len() - 10,
        Some([0; 4]),
    );
    out.extend_from_slice(&handshake[10..]);
    tcp.write_all(&out).await.unwrap();
    // Expect a pong carrying "hi", then the handshake reply.
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    while got.len() < 4 + 2 || !String::from_utf8_lossy(&got).contains("isAuthenticated") {
        let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(&got[..4], [0x8A, 0x02, b'h', b'i']);
    assert!(String::from_utf8_lossy(&got[4..]).contains(r#""rid":1"#));
}

#[tokio::test]
async fn ten_thousand_messages_in_a_burst_are_all_answered_in_order() {
    let server = start().await;
    let mut bystander = handshaken(&server.url()).await;
    let ws = handshaken(&server.url()).await;
    let (writer, mut stream) = feed_in_background(
        ws,
        (2..10_002u64).map(|cid| Message::text(echo(cid, json!(cid)))),
    );
    let mut expected = 2u64;
    let started = Instant::now();
    while expected < 10_002 {
        let reply = next_json_within(&mut stream, Duration::from_secs(20)).await;
        assert_eq!(reply, json!({"rid": expected, "data": expected}));
        expected += 1;
        if expected == 5_000 {
            // Midway through, another client is served promptly.
            let probe = Instant::now();
            assert_alive(&mut bystander, 2).await;
            assert!(
                probe.elapsed() < Duration::from_secs(1),
                "bystander waited {:?}",
                probe.elapsed()
            );
        }
    }
    let mut ws = writer.await.unwrap().reunite(stream).unwrap();
    assert_alive(&mut ws, 20_000).await;
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[tokio::test]
async fn message_rate_limit_throttles_without_dropping() {
    let mut config = Config::default();
    config.limits.max_messages_per_second = 100;
    let server = start_with(config).await;
    let mut ws = handshaken(&server.url()).await;
    let started = Instant::now();
    for cid in 2..302u64 {
        ws.feed(Message::text(echo(cid, json!(cid)))).await.unwrap();
    }
    ws.flush().await.unwrap();
    for cid in 2..302u64 {
        let reply = tokio::time::timeout(Duration::from_secs(10), next_json(&mut ws))
            .await
            .unwrap();
        assert_eq!(reply, json!({"rid": cid, "data": cid}));
    }
    // 300 messages plus the handshake at 100/s with a one-second burst take about 2 s.
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1500),
        "not throttled: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(6),
        "throttled too hard: {elapsed:?}"
    );
}

#[tokio::test]
async fn a_client_that_never_reads_is_closed_4400_and_others_carry_on() {
    let mut config = Config::default();
    config.limits.outbound_queue_length = 64;
    config.limits.write_buffer_bytes = 64 * 1024;
    let server = start_with(config).await;
    let mut bystander = handshaken(&server.url()).await;
    let mut ws = handshaken(&server.url()).await;
    // Ask for far more than the socket buffers, queue and write buffer hold together, and do
    // not read.
    send(
        &mut ws,
        r#"{"event":"flood","data":{"count":200000,"size":1000},"cid":2}"#,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_alive(&mut bystander, 2).await;
    // Reading now drains what was sent, then the close frame.
    assert_eq!(expect_close(&mut ws).await.0, 4400);
    assert_eq!(
        server
            .handle
            .metrics()
            .error_count(ErrorKind::slow_consumer),
        1
    );
    // Memory stayed bounded: the server kept going and serves new clients.
    let mut late = handshaken(&server.url()).await;
    assert_alive(&mut late, 2).await;
}

#[tokio::test]
async fn a_client_that_sends_but_never_reads_is_held_back_not_buffered_forever() {
    let mut config = Config::default();
    config.limits.write_buffer_bytes = 32 * 1024;
    let server = start_with(config).await;
    let mut bystander = handshaken(&server.url()).await;
    let ws = handshaken(&server.url()).await;
    let (mut sink, stream) = ws.split();
    // Each echo reply is ~10 KB; the client keeps writing and never reads. The server stops
    // reading once its write buffer is full, so the client's writes eventually stall.
    let payload = "y".repeat(10_000);
    let writer = tokio::spawn(async move {
        for cid in 2..100_000u64 {
            if sink
                .send(Message::text(echo(cid, json!(payload))))
                .await
                .is_err()
            {
                break;
            }
        }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !writer.is_finished(),
        "the writer should be stalled by backpressure"
    );
    assert_alive(&mut bystander, 2).await;
    writer.abort();
    drop(stream);
}

#[tokio::test]
async fn connection_limits_answer_503() {
    let mut config = Config::default();
    config.limits.max_connections = 2;
    let server = start_with(config).await;
    let _a = handshaken(&server.url()).await;
    let _b = handshaken(&server.url()).await;
    let err = tokio_tungstenite::connect_async(server.url())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("503"), "{err}");
    drop(_a);
    // The slot frees up once the first connection is gone.
    connect_eventually(&server.url(), "the slot to free").await;

    let mut config = Config::default();
    config.limits.max_connections_per_ip = 1;
    let server = start_with(config).await;
    let _a = handshaken(&server.url()).await;
    let err = tokio_tungstenite::connect_async(server.url())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("503"), "{err}");
}

#[tokio::test]
async fn a_paused_connection_resumes_when_its_budget_refills() {
    let mut config = Config::default();
    config.limits.max_messages_per_second = 2;
    let server = start_with(config).await;
    // The handshake and one echo use up the two tokens of the first second.
    let mut ws = handshaken(&server.url()).await;
    assert_alive(&mut ws, 2).await;
    // The next call must wait about half a second for a token, not for some later timer.
    let started = Instant::now();
    assert_alive(&mut ws, 3).await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(300),
        "not throttled: {waited:?}"
    );
    assert!(
        waited < Duration::from_millis(1500),
        "resumed late: {waited:?}"
    );
}

#[tokio::test]
async fn a_connection_that_never_finishes_its_headers_is_dropped() {
    let mut config = Config::default();
    config.limits.http_header_timeout_ms = 300;
    let server = start_with(config).await;
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut rest))
        .await
        .expect("the server kept a connection with unfinished headers");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "dropped after {:?}",
        started.elapsed()
    );
    // Dropped: closed (possibly with hyper's 408) or reset, never a 200.
    if read.is_ok() {
        assert!(
            !String::from_utf8_lossy(&rest).contains(" 200 "),
            "{rest:?}"
        );
    }
    // Others are unaffected.
    assert_eq!(http_get(server.addr, "/health").await.status, 200);
}
