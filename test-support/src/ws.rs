//! A WebSocket client for tests: connecting (with request headers, a small receive buffer or no
//! size limits), the HTTP refusal of an upgrade, and reading and writing messages, each read
//! bounded by [`WAIT`].

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt as _, Stream, StreamExt as _};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::wait::{eventually_ok, WAIT};

/// A client connection over plain TCP.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What a WebSocket client runs over (plain TCP, TLS).
pub trait Io: AsyncRead + AsyncWrite + Unpin {}
impl<T: AsyncRead + AsyncWrite + Unpin> Io for T {}

/// Where a client reads messages from: a whole connection or its read half.
pub trait Incoming: Stream<Item = Result<Message, tungstenite::Error>> + Unpin {}
impl<T: Stream<Item = Result<Message, tungstenite::Error>> + Unpin> Incoming for T {}

// ===== connecting =====

/// Connects, panicking on refusal.
pub async fn connect(url: &str) -> Ws {
    match try_connect(url).await {
        Ok(ws) => ws,
        Err(err) => panic!("cannot connect to {url}: {}", describe(&err)),
    }
}

/// Connects, returning the error on refusal.
pub async fn try_connect(url: &str) -> Result<Ws, tungstenite::Error> {
    connect_with(url, &[]).await
}

/// Connects with extra request headers.
pub async fn connect_with(url: &str, headers: &[(&str, &str)]) -> Result<Ws, tungstenite::Error> {
    let mut request = url.into_client_request()?;
    for (name, value) in headers {
        request.headers_mut().insert(
            tungstenite::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            tungstenite::http::HeaderValue::from_str(value).unwrap(),
        );
    }
    tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
        .await
        .unwrap_or_else(|_| panic!("connecting to {url} timed out"))
        .map(|(ws, _)| ws)
}

/// Connects as soon as the server accepts, trying again until [`WAIT`] has passed; `what` names
/// what the test waits for in the panic message.
pub async fn connect_eventually(url: &str, what: &str) -> Ws {
    eventually_ok(what, || try_connect(url)).await
}

/// Connects without the client's own limits on message and frame sizes, so a test can send
/// more than any server accepts.
pub async fn connect_unlimited(url: &str) -> Ws {
    let config = WebSocketConfig::default()
        .max_message_size(None)
        .max_frame_size(None);
    tokio_tungstenite::connect_async_with_config(url, Some(config), false)
        .await
        .expect("connect")
        .0
}

/// Connects with a receive buffer of `bytes` (so a client that does not read soon stops the
/// server's writes instead of buffering megabytes in the kernel).
pub async fn connect_small_buffer(url: &str, bytes: u32) -> WebSocketStream<TcpStream> {
    let addr: SocketAddr = url
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(bytes).unwrap();
    let stream = socket.connect(addr).await.expect("connect");
    let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::client_async(url, stream))
        .await
        .expect("handshake timed out")
        .expect("handshake");
    ws
}

fn describe(err: &tungstenite::Error) -> String {
    match err {
        tungstenite::Error::Http(response) => format!(
            "HTTP {} {}",
            response.status(),
            String::from_utf8_lossy(response.body().as_deref().unwrap_or_default())
        ),
        other => other.to_string(),
    }
}

/// The HTTP status (and body) a refused upgrade got.
pub async fn refusal(url: &str) -> (u16, String) {
    refusal_with(url, &[]).await
}

/// [`refusal`] with extra request headers.
pub async fn refusal_with(url: &str, headers: &[(&str, &str)]) -> (u16, String) {
    match connect_with(url, headers).await {
        Ok(_) => panic!("{url} was accepted; expected an HTTP refusal"),
        Err(tungstenite::Error::Http(response)) => (
            response.status().as_u16(),
            String::from_utf8_lossy(response.body().as_deref().unwrap_or_default()).into_owned(),
        ),
        Err(other) => panic!("{url}: expected an HTTP refusal, got {other}"),
    }
}

/// The local address of a client connection (what the server sees as its remote address).
pub fn local_addr(ws: &Ws) -> SocketAddr {
    match ws.get_ref() {
        MaybeTlsStream::Plain(stream) => stream.local_addr().unwrap(),
        _ => unreachable!("plain connections only"),
    }
}

// ===== reading =====

/// A short printable form of a message for assertion messages.
pub fn show(message: &Message) -> String {
    let text = format!("{message:?}");
    if text.len() > 200 {
        format!("{}… ({} bytes)", &text[..200], message.len())
    } else {
        text
    }
}

/// The next data or close message (pings and pongs skipped), within [`WAIT`].
pub async fn next(ws: &mut impl Incoming) -> Message {
    next_within(ws, WAIT).await
}

/// The next data or close message (pings and pongs skipped), within `limit`.
pub async fn next_within(ws: &mut impl Incoming, limit: Duration) -> Message {
    loop {
        match tokio::time::timeout(limit, ws.next()).await {
            Err(_) => panic!("no message within {limit:?}"),
            Ok(None) => panic!("the connection ended without a close frame"),
            Ok(Some(Err(err))) => panic!("connection error: {err}"),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            Ok(Some(Ok(message))) => return message,
        }
    }
}

/// The next message, which must be text.
pub async fn text(ws: &mut impl Incoming) -> String {
    match next(ws).await {
        Message::Text(text) => text.to_string(),
        other => panic!("expected a text message, got {}", show(&other)),
    }
}

/// The next message, which must be text holding JSON.
pub async fn json_text(ws: &mut impl Incoming) -> serde_json::Value {
    parse_json(&text(ws).await)
}

/// `text` parsed as JSON, failing the test with the text when it is not.
pub fn parse_json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text:?}"))
}

/// The next `n` messages, which must be text.
pub async fn texts(ws: &mut impl Incoming, n: usize) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(text(ws).await);
    }
    out
}

/// The next message, which must be binary.
pub async fn binary(ws: &mut impl Incoming) -> Vec<u8> {
    match next(ws).await {
        Message::Binary(bytes) => bytes.to_vec(),
        other => panic!("expected a binary message, got {}", show(&other)),
    }
}

/// Binary messages until `len` bytes have arrived (chunk boundaries are arbitrary).
pub async fn binary_bytes(ws: &mut impl Incoming, len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < len {
        out.extend(binary(ws).await);
    }
    out
}

/// The next message, which must be a close frame: its code and reason.
pub async fn close_frame(ws: &mut impl Incoming) -> (u16, String) {
    match next(ws).await {
        Message::Close(Some(frame)) => (u16::from(frame.code), frame.reason.to_string()),
        other => panic!("expected a close frame, got {}", show(&other)),
    }
}

/// Data messages until a close frame: the messages, then the close code and reason.
pub async fn until_close(ws: &mut impl Incoming) -> (Vec<Message>, u16, String) {
    let mut messages = Vec::new();
    loop {
        match next(ws).await {
            Message::Close(Some(frame)) => {
                return (messages, u16::from(frame.code), frame.reason.to_string())
            }
            Message::Close(None) => panic!("close frame without a code"),
            other => messages.push(other),
        }
    }
}

/// Reads past anything else until the server's close frame, each message within 10 s; returns
/// its code and reason (1005 for a close frame without a code, 1006 if the stream just ended).
pub async fn expect_close(ws: &mut impl Incoming) -> (u16, String) {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Err(_) => panic!("no close within 10 s"),
            Ok(None | Some(Err(_))) => return (1006, String::new()),
            Ok(Some(Ok(Message::Close(frame)))) => {
                return frame.map_or((1005, String::new()), |f| {
                    (u16::from(f.code), f.reason.to_string())
                })
            }
            Ok(Some(Ok(_))) => continue,
        }
    }
}

/// Asserts that no data message arrives for `period`.
pub async fn silent(ws: &mut impl Incoming, period: Duration) {
    let deadline = tokio::time::Instant::now() + period;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return,
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            Ok(other) => panic!("expected silence, got {other:?}"),
        }
    }
}

// ===== writing =====

/// Sends a text message.
pub async fn send<S: Io>(ws: &mut WebSocketStream<S>, text: &str) {
    ws.send(Message::text(text)).await.expect("send");
}

/// Sends a binary message.
pub async fn send_binary<S: Io>(ws: &mut WebSocketStream<S>, bytes: &[u8]) {
    ws.send(Message::binary(bytes.to_vec()))
        .await
        .expect("send");
}

/// The write half of a connection that a background task is writing to; awaiting it gives the
/// write half back once everything is sent.
pub type Feeding<S> = JoinHandle<SplitSink<WebSocketStream<S>, Message>>;

/// Splits `ws` and writes `messages` back to back from a background task (flushing once at the
/// end), so the test can read the replies meanwhile from the read half it gets.
pub fn feed_in_background<S>(
    ws: WebSocketStream<S>,
    messages: impl Iterator<Item = Message> + Send + 'static,
) -> (Feeding<S>, SplitStream<WebSocketStream<S>>)
where
    S: Io + Send + 'static,
{
    let (mut sink, stream) = ws.split();
    let writer = tokio::spawn(async move {
        for message in messages {
            sink.feed(message).await.expect("send");
        }
        sink.flush().await.expect("flush");
        sink
    });
    (writer, stream)
}

/// Closes the connection normally and waits for the server's close frame.
pub async fn leave<S: Io>(mut ws: WebSocketStream<S>) {
    let _ = ws.close(None).await;
    let _ = tokio::time::timeout(WAIT, async { while let Some(Ok(_)) = ws.next().await {} }).await;
}
