//! Regression tests for the ScaleSocket 0.2.4 defects (reference report §8 and the quirks of
//! §5 to §7), each written so that ScaleSocket's behaviour would fail it, run against the real
//! `sockyard wrap` binary.

use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::json;
use sockyard_test_support::binary::{free_ports, Sockyard};
use sockyard_test_support::http::{http_raw, metric};
use sockyard_test_support::process::Process;
use sockyard_test_support::programs::*;
use sockyard_test_support::tempdir::TempDir;
use sockyard_test_support::wait::WAIT;
use sockyard_test_support::ws::*;
use tokio_tungstenite::tungstenite::{Bytes, Message};

const SOCKYARD: Sockyard = Sockyard::at(env!("CARGO_BIN_EXE_sockyard"));

const SHORT: Duration = Duration::from_millis(200);

/// `sockyard wrap --tcp` with one port for the rooms' programs and no start-up delay, wrapping
/// `program`: the server and that port.
fn wrap_on_one_port(program: &[&str]) -> (Process, u16) {
    let port = free_ports(1);
    let ports = format!("{port}:{}", port + 1);
    let mut args = vec!["--tcp", "--tcpports", &ports, "--delay", "0"];
    args.extend(program);
    (SOCKYARD.wrap(&args), port)
}

/// §8.1: ScaleSocket delivered 16 of these 100 000 lines.
#[tokio::test]
async fn seq_delivers_every_line_in_order() {
    let server = SOCKYARD.wrap(&["seq", "--", "1", "100000"]);
    let mut ws = connect(&server.url("/seq")).await;
    let mut expected = 1u32;
    let close = loop {
        match next(&mut ws).await {
            Message::Text(line) => {
                assert_eq!(line.as_str(), expected.to_string());
                expected += 1;
            }
            Message::Close(frame) => break frame,
            other => panic!("{}", show(&other)),
        }
    };
    assert_eq!(expected - 1, 100_000);
    assert_eq!(u16::from(close.unwrap().code), 1000);
}

/// §8.1: ScaleSocket echoed 2 288 of 10 000 messages sent back to back.
#[tokio::test]
async fn a_burst_into_cat_is_echoed_completely_in_order() {
    let server = SOCKYARD.wrap(&["cat"]);
    let ws = connect(&server.url("/burst")).await;
    let count = 10_000;
    let (writer, mut stream) =
        feed_in_background(ws, (0..count).map(|i| Message::text(format!("m{i}"))));
    for i in 0..count {
        assert_eq!(next(&mut stream).await, Message::text(format!("m{i}")));
    }
    let _sink = writer.await.unwrap();
}

/// §8.4: ScaleSocket wrote ping and pong payloads to the program's input.
#[tokio::test]
async fn ping_and_pong_payloads_never_reach_the_program() {
    let server = SOCKYARD.wrap(&["cat"]);
    let mut ws = connect(&server.url("/ping")).await;
    ws.send(Message::Ping(Bytes::from_static(b"PINGDATA")))
        .await
        .unwrap();
    let pong = tokio::time::timeout(WAIT, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(pong, Message::Pong(Bytes::from_static(b"PINGDATA")));
    ws.send(Message::Pong(Bytes::from_static(b"PONGDATA")))
        .await
        .unwrap();
    send(&mut ws, "marker").await;
    assert_eq!(text(&mut ws).await, "marker");
    silent(&mut ws, SHORT).await;
}

/// §6.3, §8.3: bytes that ScaleSocket's gwsocket reader panicked on (0x0A in header and
/// payload, unknown types, unknown destinations) leave the room running.
#[tokio::test]
async fn odd_gwsocket_output_never_stops_the_room() {
    let server = SOCKYARD.wrap(&[
        "--serverframe=gwsocket",
        "--metrics",
        python(),
        "--",
        "-c",
        LINES_TO_GW,
    ]);
    let mut a = connect(&server.url("/gw")).await;
    let raw = |frames: &[Vec<u8>]| format!("raw {}", hex(&frames.concat()));
    // Length 10 (0x0A) with newlines in the payload, split by nothing.
    send(&mut a, &raw(&[gw_frame(0, 1, b"ab\ncd\nefgh")])).await;
    assert_eq!(text(&mut a).await, "ab\ncd\nefgh");
    // An unknown type is skipped by its length; an unknown destination reaches nobody; the
    // frame after them is read correctly.
    let frames = [
        gw_frame(0, 7, b"skipped\n"),
        gw_frame(99, 1, b"for nobody"),
        gw_frame(0, 1, b"after"),
    ];
    send(&mut a, &raw(&frames)).await;
    assert_eq!(text(&mut a).await, "after");
    // A frame split across writes is reassembled.
    let frame = gw_frame(1, 1, b"in two writes");
    send(&mut a, &format!("raw {}", hex(&frame[..5]))).await;
    send(&mut a, &format!("raw {}", hex(&frame[5..]))).await;
    assert_eq!(text(&mut a).await, "in two writes");
    let metrics = server.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            r#"sockyard_room_messages_dropped_total{room="gw",reason="bad_output"}"#
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            r#"sockyard_room_messages_dropped_total{room="gw",reason="unknown_client"}"#
        ),
        Some(1.0),
        "{metrics}"
    );
}

/// §6.3, §8.3: a frame cut short (shorter than a header, or than its length) and a length
/// far over the limit end, at worst, with the program's own exit: a clean close, and the
/// server and its other rooms carry on.
#[tokio::test]
async fn truncated_or_oversized_gwsocket_frames_never_kill_the_server() {
    let server = SOCKYARD.wrap(&["--serverframe=gwsocket", python(), "--", "-c", LINES_TO_GW]);
    let mut bystander = connect(&server.url("/other")).await;
    let cases = [
        hex(&[0, 0, 0, 0, 0]),                     // shorter than a header
        hex(&gw_frame(0, 1, b"0123456789")[..16]), // shorter than its length
        hex(&[0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xf0, b'x']), // 4 GiB declared
    ];
    for (i, bytes) in cases.iter().enumerate() {
        let room = format!("/bad{i}");
        let mut ws = connect(&server.url(&room)).await;
        send(&mut ws, &format!("raw {bytes}")).await;
        send(&mut ws, "exit").await;
        let (messages, code, reason) = until_close(&mut ws).await;
        assert!(messages.is_empty(), "case {i}: {messages:?}");
        assert_eq!(
            (code, reason.as_str()),
            (1000, "The program exited"),
            "case {i}"
        );
        assert_eq!(server.get("/health").await.status, 200);
    }
    send(&mut bystander, "1 still here").await;
    assert_eq!(text(&mut bystander).await, "still here");
}

/// §8.3: `--clientframe=gwsocket` panicked ScaleSocket's connection on the first message and
/// leaked the room's program.
#[tokio::test]
async fn client_gwsocket_framing_neither_fails_nor_leaks_the_program() {
    let server = SOCKYARD.wrap(&[
        "--clientframe=gwsocket",
        "--metrics",
        python(),
        "--",
        "-c",
        GW_DUMP,
    ]);
    let mut ws = connect(&server.url("/cg")).await;
    send(&mut ws, "first").await;
    assert_eq!(
        text(&mut ws).await,
        format!("from=1 type=1 len=5 hex={}", hex(b"first"))
    );
    leave(ws).await;
    server.wait_metric("sockyard_room_open", Some(0.0)).await;
    server.wait_log(&["program stopped"]).await;
}

/// §8.3: ScaleSocket panicked (every room died) when its TCP port pool ran out.
#[tokio::test]
async fn port_exhaustion_refuses_only_the_new_room() {
    let (server, port) = wrap_on_one_port(&[python(), "--", "-c", TCP_ECHO]);
    let mut a = connect(&server.url("/a")).await;
    assert_eq!(text(&mut a).await, format!("port={port}"));
    for room in ["/b", "/c"] {
        assert_eq!(
            refusal(&server.url(room)).await,
            (503, "No free port for a new room\n".to_owned())
        );
    }
    assert_eq!(server.get("/health").await.status, 200);
    send(&mut a, "alive").await;
    assert_eq!(text(&mut a).await, "tcp:alive");
    // The port comes back when the room ends.
    leave(a).await;
    let mut b = connect_eventually(&server.url("/b"), "the port to come back").await;
    assert_eq!(text(&mut b).await, format!("port={port}"));
}

/// §5.6: a TCP program that never listens: ScaleSocket dropped the client (1006) and never
/// returned the port.
#[tokio::test]
async fn a_tcp_program_that_never_listens_is_a_1011_and_its_port_comes_back() {
    let (server, _) = wrap_on_one_port(&["sh", "--", "-c", "exit 0"]);
    for _ in 0..2 {
        let started = Instant::now();
        let mut ws = connect(&server.url("/t")).await;
        assert_eq!(
            close_frame(&mut ws).await,
            (1011, "Cannot reach the program".to_owned())
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "took {:?} to notice the program had exited",
            started.elapsed()
        );
    }
}

/// §8.7: invalid JSON from a client closed its connection in ScaleSocket.
#[tokio::test]
async fn invalid_client_json_is_dropped_and_counted_and_the_client_stays() {
    let server = SOCKYARD.wrap(&["--json", "--metrics", "cat"]);
    let mut ws = connect(&server.url("/j")).await;
    assert_eq!(text(&mut ws).await, r#"{"t":"Join","_from":1}"#);
    for bad in ["not json", "[1,2]", "\"string\"", "{\"open\":"] {
        send(&mut ws, bad).await;
    }
    send(&mut ws, r#"{"ok":1}"#).await;
    assert_eq!(text(&mut ws).await, r#"{"_from":1,"ok":1}"#);
    let metrics = server.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            r#"sockyard_room_messages_dropped_total{room="j",reason="invalid_input"}"#
        ),
        Some(4.0),
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, r#"sockyard_room_messages_in_total{room="j"}"#),
        Some(1.0)
    );
}

/// §6.2, §8.13: ScaleSocket's cache replayed `_to` messages to every later joiner.
#[tokio::test]
async fn cached_private_messages_are_not_replayed_to_others() {
    let server = SOCKYARD.wrap(&["--json", "--cache", "all:8", "cat"]);
    let mut a = connect(&server.url("/c")).await;
    assert_eq!(text(&mut a).await, r#"{"t":"Join","_from":1}"#);
    send(&mut a, r#"{"_to":1,"secret":"s"}"#).await;
    assert_eq!(text(&mut a).await, r#"{"_from":1,"_to":1,"secret":"s"}"#);
    send(&mut a, r#"{"public":1}"#).await;
    assert_eq!(text(&mut a).await, r#"{"_from":1,"public":1}"#);
    let mut b = connect(&server.url("/c")).await;
    assert_eq!(
        texts(&mut b, 3).await,
        [
            r#"{"t":"Join","_from":1}"#,
            r#"{"_from":1,"public":1}"#,
            r#"{"t":"Join","_from":2}"#
        ]
    );
    silent(&mut b, SHORT).await;
}

/// §8.10: a 20 MiB message dropped ScaleSocket's connection without a close frame; here the
/// sender alone is closed with 1009 (the default limit is 1 MiB) and the room goes on.
#[tokio::test]
async fn a_20_mib_message_is_refused_with_1009_without_affecting_others() {
    let server = SOCKYARD.wrap(&["cat"]);
    let mut other = connect(&server.url("/big")).await;
    let mut big = connect(&server.url("/big")).await;
    let payload = "x".repeat(20 << 20);
    // The server may stop reading before the whole message is sent.
    let _ = big.send(Message::text(payload)).await;
    assert_eq!(expect_close(&mut big).await.0, 1009);
    send(&mut other, "unaffected").await;
    assert_eq!(text(&mut other).await, "unaffected");
    // One MiB is within the limit.
    let mib = "y".repeat(1 << 20);
    send(&mut other, &mib).await;
    assert_eq!(text(&mut other).await.len(), 1 << 20);
}

/// §8.9: room names were used raw and unbounded.
#[tokio::test]
async fn room_names_are_percent_decoded_and_length_limited() {
    let server = SOCKYARD.wrap(&["--api", python(), "--", "-c", ENV_PRINTER]);
    let mut ws = connect(&server.url("/caf%C3%A9%20au%20lait")).await;
    let env: serde_json::Value = serde_json::from_str(&text(&mut ws).await).unwrap();
    assert_eq!(env["ROOM"], "café au lait");
    assert_eq!(
        server.get("/api/rooms").await.json()[0]["name"],
        "café au lait"
    );
    let longest = "n".repeat(128);
    let _ok = connect(&server.url(&format!("/{longest}"))).await;
    for path in [
        format!("/{longest}n"),
        format!("/{}", "n".repeat(3000)),
        "/a%2Fb".to_owned(),
        "/%ff".to_owned(),
        "/a%0Ab".to_owned(),
        // Names a program could take for a path.
        "/%2e%2e".to_owned(),
        "/%2E%2e/".to_owned(),
        "/%2e".to_owned(),
        "/.%2e".to_owned(),
    ] {
        let (status, body) = refusal(&server.url(&path)).await;
        assert_eq!((status, body.as_str()), (400, "Invalid room\n"), "{path}");
    }
    assert_eq!(refusal(&server.url("/a/b")).await.0, 404);
}

/// §7: reading the API created metric series, and POSTs or missing files under `--rooms`
/// answered 400 "Invalid room".
#[tokio::test]
async fn the_http_surface_answers_what_was_asked() {
    let dir = TempDir::new("surface");
    dir.write("index.html", b"home");
    let server = SOCKYARD.wrap(&[
        "--api",
        "--metrics",
        "--rooms",
        "only",
        "--staticdir",
        &dir.arg(""),
        "cat",
    ]);
    assert_eq!(
        server.get("/api/nosuch/").await.json(),
        json!({"connections": 0, "metadata": null, "name": "nosuch"})
    );
    assert!(!server.metrics().await.contains("nosuch"));
    assert_eq!(server.get("/missing.txt").await.status, 404);
    let post = http_raw(
        server.addr,
        b"POST /api/rooms HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(post.status, 405);
}

/// §6.1: output that is not UTF-8 became an empty string in ScaleSocket.
#[tokio::test]
async fn output_that_is_not_utf8_arrives_as_binary() {
    let server = SOCKYARD.wrap(&["sh", "--", "-c", r"printf 'ok\n\377\376\n'; exec cat"]);
    let mut ws = connect(&server.url("/u")).await;
    assert_eq!(text(&mut ws).await, "ok");
    assert_eq!(binary(&mut ws).await, [0xff, 0xfe]);
}

/// §8.5: ScaleSocket sent no close frames. Protocol errors get the code that names them.
#[tokio::test]
async fn a_text_message_that_is_not_utf8_is_closed_with_1007() {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    let server = SOCKYARD.wrap(&["cat"]);
    let mut other = connect(&server.url("/u")).await;
    let mut ws = connect(&server.url("/u")).await;
    let frame = Frame::message(vec![b'o', b'k', 0xff], OpCode::Data(Data::Text), true);
    ws.send(Message::Frame(frame)).await.unwrap();
    let (messages, code, _) = until_close(&mut ws).await;
    assert!(messages.is_empty(), "{messages:?}");
    assert_eq!(code, 1007);
    send(&mut other, "fine").await;
    assert_eq!(text(&mut other).await, "fine");
}
