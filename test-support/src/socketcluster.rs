//! SocketCluster by hand over a raw WebSocket: the handshake, JSON frames with the protocol's
//! pings skipped, the invoke and channel frames tests write, and the checks several tests make.

use std::time::Duration;

use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::wait::WAIT;
use crate::ws::{connect, next_within, send, Incoming, Io, Ws};

/// The handshake a client without a token sends, as invoke 1.
pub const HANDSHAKE: &str = r##"{"event":"#handshake","data":{"authToken":null},"cid":1}"##;

/// Sends [`HANDSHAKE`] on an open connection and checks that the reply answers it.
pub async fn handshake<S: Io>(ws: &mut WebSocketStream<S>) {
    send(ws, HANDSHAKE).await;
    let reply = next_json(ws).await;
    assert_eq!(reply["rid"], 1, "handshake reply: {reply}");
}

/// Opens a raw WebSocket and completes the SocketCluster handshake (cid 1).
pub async fn handshaken(url: &str) -> Ws {
    let mut ws = connect(url).await;
    handshake(&mut ws).await;
    ws
}

/// Whether a text frame is a SocketCluster ping (`""` in protocol 2, `"#1"` in protocol 1).
pub fn is_ping(text: &str) -> bool {
    text.is_empty() || text == "#1"
}

/// The next text message that is not a ping, parsed as JSON (fails the test after [`WAIT`]).
pub async fn next_json(ws: &mut impl Incoming) -> Value {
    next_json_within(ws, WAIT).await
}

/// The next text message that is not a ping, parsed as JSON, each message within `limit`.
pub async fn next_json_within(ws: &mut impl Incoming, limit: Duration) -> Value {
    loop {
        match next_within(ws, limit).await {
            Message::Text(text) if is_ping(text.as_str()) => continue,
            Message::Text(text) => return serde_json::from_str(text.as_str()).expect("JSON"),
            other => panic!("expected text, got {other:?}"),
        }
    }
}

/// Reads `n` JSON frames (skipping pings) and returns them sorted, so replies and pushes can be
/// compared without assuming their relative order.
pub async fn next_n(ws: &mut impl Incoming, n: usize) -> Vec<Value> {
    let mut frames = Vec::new();
    for _ in 0..n {
        frames.push(next_json(ws).await);
    }
    frames.sort_by_key(|f| f.to_string());
    frames
}

/// Asserts that nothing but pings arrives within `window`.
pub async fn assert_quiet(ws: &mut impl Incoming, window: Duration) {
    let deadline = tokio::time::Instant::now() + window;
    while let Ok(Some(Ok(message))) =
        tokio::time::timeout_at(deadline, futures_util::StreamExt::next(ws)).await
    {
        if let Message::Text(text) = &message {
            if is_ping(text.as_str()) {
                continue;
            }
        }
        panic!("unexpected frame: {message:?}");
    }
}

/// Asserts that the connection still answers: an echo invoke with `cid` comes back.
pub async fn assert_alive<S: Io>(ws: &mut WebSocketStream<S>, cid: u64) {
    send(ws, &echo(cid, json!("alive"))).await;
    assert_eq!(next_json(ws).await, json!({"rid": cid, "data": "alive"}));
}

/// An echo invoke frame with the given cid and data.
pub fn echo(cid: u64, data: Value) -> String {
    json!({"event": "echo", "data": data, "cid": cid}).to_string()
}

/// A `#subscribe` invoke frame for `channel`.
pub fn subscribe(cid: u64, channel: &str) -> String {
    json!({"event": "#subscribe", "data": {"channel": channel}, "cid": cid}).to_string()
}

/// A `#publish` frame of `data` on `channel`: an invoke with `cid`, or a transmit without.
pub fn publish(cid: Option<u64>, channel: &str, data: Value) -> String {
    let mut frame = json!({"event": "#publish", "data": {"channel": channel, "data": data}});
    if let Some(cid) = cid {
        frame["cid"] = json!(cid);
    }
    frame.to_string()
}
