//! The connection driven over an in-memory socket with literal frames: the opening, calls in
//! order, pings and timeouts, the close handshake, and queued pushes of any size.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::{Connection, Ending, Limits, Shared};
use crate::auth::access::AccessRules;
use crate::auth::Authenticator;
use crate::codec::Encoding;
use crate::exchange::Exchange;
use crate::metrics::Metrics;
use crate::peer::{Common, ConnectionHandle};
use crate::protocol::{Dialect, Format, SessionOptions};
use crate::router::{RouteTable, Router};
use crate::service::stages::Stages;
use crate::service::{Authorizer, ChannelsConfig, Endpoint, Services};
use crate::ws::frame::{self, OpCode, Role};
use crate::ws::{Message, MessageReader};

/// The client's side of a connection under test.
struct Peer {
    io: DuplexStream,
    reader: MessageReader,
    received: std::collections::VecDeque<Message>,
}

impl Peer {
    async fn send_text(&mut self, text: &str) {
        let mut out = Vec::new();
        frame::write_masked_frame(&mut out, OpCode::Text, text.as_bytes(), [1, 2, 3, 4]);
        self.io.write_all(&out).await.unwrap();
    }

    async fn send_close(&mut self, code: u16) {
        let mut out = Vec::new();
        let body = frame::close_body(code, "");
        frame::write_masked_frame(&mut out, OpCode::Close, &body, [9, 8, 7, 6]);
        self.io.write_all(&out).await.unwrap();
    }

    /// The next message from the server; `None` when the socket ended.
    async fn next(&mut self) -> Option<Message> {
        let mut buffer = vec![0; 64 * 1024];
        loop {
            if let Some(message) = self.received.pop_front() {
                return Some(message);
            }
            let n = self.io.read(&mut buffer).await.unwrap();
            if n == 0 {
                return None;
            }
            let mut messages = Vec::new();
            self.reader.feed(&buffer[..n], &mut messages).unwrap();
            self.received.extend(messages);
        }
    }

    async fn next_text(&mut self) -> String {
        match self.next().await {
            Some(Message::Text(text)) => String::from_utf8(text.to_vec()).unwrap(),
            other => panic!("expected a text message, got {other:?}"),
        }
    }

    async fn next_close(&mut self) -> (u16, String) {
        loop {
            match self.next().await {
                Some(Message::Close(Some(status))) => return status,
                Some(Message::Text(_)) => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    }

    async fn handshake(&mut self) {
        self.send_text(r##"{"event":"#handshake","data":{},"cid":1}"##)
            .await;
        assert_eq!(
            self.next_text().await,
            r#"{"rid":1,"data":{"id":"t","pingTimeout":20000,"isAuthenticated":false}}"#
        );
    }
}

fn routes() -> RouteTable {
    Router::new()
        .procedure_raw("echo", |_ctx, data| async move { Ok(data) })
        .procedure("sleep", |_ctx, ms: u64| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok::<_, crate::error::ApiError>(ms)
        })
        .build()
        .unwrap()
}

/// A SocketCluster JSON connection with `limits`, running on its own task; the handle pushes
/// to it as other tasks would.
fn start(limits: Limits) -> (Peer, ConnectionHandle, tokio::task::JoinHandle<Ending>) {
    start_on(limits, 256 * 1024)
}

/// [`start`] over a socket that holds `socket_bytes` in flight.
fn start_on(
    limits: Limits,
    socket_bytes: usize,
) -> (Peer, ConnectionHandle, tokio::task::JoinHandle<Ending>) {
    let common = Arc::new(Common {
        exchange: Exchange::in_memory(),
        auth: Authenticator::hs256(b"test", Duration::from_secs(3600)),
        access: AccessRules::default(),
    });
    let format = Format {
        dialect: Dialect::SocketCluster,
        encoding: Encoding::Json,
    };
    let endpoint = Arc::new(Endpoint {
        format: format.clone(),
        session: SessionOptions::default(),
        api_routes: Vec::new(),
        opening_timeout: Duration::from_secs(10),
        authorizer: Authorizer::Token,
        ping_interval: Duration::from_secs(8),
        ping_timeout: Duration::from_secs(20),
        origins: Vec::new(),
        routes: Arc::new(routes()),
    });
    let shared = Arc::new(Shared {
        services: Arc::new(Services {
            common: common.clone(),
            stages: Stages::default(),
            channels: ChannelsConfig::default(),
            resources: None,
        }),
        metrics: Metrics::new(),
        limits,
    });
    let handle = ConnectionHandle::new(
        "t".into(),
        "127.0.0.1:1".parse().unwrap(),
        format,
        shared.limits.queue_limits(),
        common,
    );
    let (client, server) = tokio::io::duplex(socket_bytes);
    let connection = Connection::new(server, &[], handle.clone(), shared, endpoint);
    let task = tokio::spawn(connection.run());
    let peer = Peer {
        io: client,
        reader: MessageReader::new(Role::Client, usize::MAX),
        received: Default::default(),
    };
    (peer, handle, task)
}

#[tokio::test]
async fn answers_the_handshake_then_calls_in_order() {
    let (mut peer, _handle, _task) = start(Limits::default());
    peer.handshake().await;
    // The slow call is answered first: one call is in flight at a time.
    peer.send_text(r#"[{"event":"sleep","data":30,"cid":2},{"event":"echo","data":"x","cid":3}]"#)
        .await;
    assert_eq!(peer.next_text().await, r#"{"rid":2,"data":30}"#);
    assert_eq!(peer.next_text().await, r#"{"rid":3,"data":"x"}"#);
    peer.send_text(r#"{"event":"nope","cid":4}"#).await;
    assert_eq!(
        peer.next_text().await,
        r#"{"rid":4,"error":{"name":"NotFound","message":"Unknown procedure 'nope'"}}"#
    );
}

#[tokio::test]
async fn a_message_before_the_handshake_closes_4009() {
    let (mut peer, _handle, task) = start(Limits::default());
    peer.send_text(r#"{"event":"echo","cid":1}"#).await;
    assert_eq!(
        peer.next_close().await,
        (4009, "Message received before handshake".to_owned())
    );
    peer.send_close(4009).await;
    assert_eq!(task.await.unwrap().code, 4009);
}

#[tokio::test(start_paused = true)]
async fn no_handshake_in_time_closes_4005() {
    let (mut peer, _handle, _task) = start(Limits::default());
    assert_eq!(
        peer.next_close().await,
        (
            4005,
            "Did not receive #handshake from client before timeout".to_owned()
        )
    );
}

#[tokio::test(start_paused = true)]
async fn pings_both_versions_then_closes_a_silent_client_4001() {
    let (mut peer, _handle, _task) = start(Limits::default());
    peer.handshake().await;
    // Protocol v2's empty ping and v1's `#1`, every ping interval.
    assert_eq!(peer.next_text().await, "");
    assert_eq!(peer.next_text().await, "#1");
    assert_eq!(
        peer.next_close().await,
        (4001, "Client pong timed out".to_owned())
    );
}

#[tokio::test]
async fn the_peer_close_is_answered_after_earlier_calls() {
    let (mut peer, _handle, task) = start(Limits::default());
    peer.handshake().await;
    peer.send_text(r#"{"event":"sleep","data":20,"cid":2}"#)
        .await;
    peer.send_close(1000).await;
    assert_eq!(peer.next_text().await, r#"{"rid":2,"data":20}"#);
    assert_eq!(
        peer.next().await,
        Some(Message::Close(Some((1000, String::new()))))
    );
    let ending = task.await.unwrap();
    assert_eq!(ending.code, 1000);
}

#[tokio::test]
async fn a_full_outbound_queue_closes_4400() {
    let limits = Limits {
        outbound_queue_length: 4,
        ..Limits::default()
    };
    let (mut peer, handle, _task) = start(limits);
    peer.handshake().await;
    // Pushed faster than the connection's task can run: the fifth finds the queue full.
    let results: Vec<_> = (0..5).map(|i| handle.transmit("tick", i)).collect();
    assert_eq!(results[4], Err(crate::peer::SendError::Overflow));
    assert_eq!(
        peer.next_close().await,
        (4400, "Outbound queue overflow".to_owned())
    );
}

/// Frames queued by other tasks beyond the write buffer's high-water mark all go out, in
/// order, even when nothing else wakes the connection.
#[tokio::test]
async fn queued_frames_beyond_the_write_buffer_all_go_out() {
    let (mut peer, handle, _task) = start(Limits::default());
    peer.handshake().await;
    let pad = "x".repeat(100 * 1024);
    let count = 24;
    for i in 0..count {
        handle
            .transmit("big", serde_json::json!({"i": i, "pad": pad}))
            .unwrap();
    }
    for i in 0..count {
        let text = tokio::time::timeout(Duration::from_secs(5), peer.next_text())
            .await
            .unwrap_or_else(|_| panic!("frame {i} of {count} never arrived"));
        let value: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["data"]["i"], i);
    }
}

/// A client that stops reading is closed once its writes make no progress for the stall
/// timeout, and its socket dropped once the close handshake cannot complete either.
#[tokio::test]
async fn a_client_that_stops_reading_is_closed_then_dropped() {
    let limits = Limits {
        write_stall_timeout_ms: 200,
        close_timeout_ms: 200,
        ..Limits::default()
    };
    let (mut peer, handle, task) = start_on(limits, 16 * 1024);
    peer.handshake().await;
    // Far more than the socket holds; the client reads none of it.
    for i in 0..40 {
        let _ = handle.transmit("big", serde_json::json!({"i": i, "pad": "x".repeat(4096)}));
    }
    let ending = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the connection ends within the stall and close timeouts")
        .unwrap();
    assert_eq!(
        ending,
        Ending {
            code: 4400,
            reason: "Client stopped reading".to_owned()
        }
    );
    assert!(handle.is_closed());
    drop(peer);
}

/// A slow reader whose writes keep progressing is not a stalled one.
#[tokio::test]
async fn a_slow_reader_that_keeps_reading_stays_connected() {
    let limits = Limits {
        write_stall_timeout_ms: 300,
        ..Limits::default()
    };
    let (mut peer, handle, task) = start_on(limits, 16 * 1024);
    peer.handshake().await;
    let count = 40;
    for i in 0..count {
        handle
            .transmit("big", serde_json::json!({"i": i, "pad": "x".repeat(4096)}))
            .unwrap();
    }
    for i in 0..count {
        // Slower than the stall timeout over all, but never stalled for that long.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let value: Value = serde_json::from_str(&peer.next_text().await).unwrap();
        assert_eq!(value["data"]["i"], i);
    }
    assert!(!task.is_finished());
}
