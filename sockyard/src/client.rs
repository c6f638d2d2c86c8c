//! A Rust client for the SocketCluster protocol: connect and handshake, invoke with a timeout,
//! transmit, receive the server's transmits and invokes, answer pings, reconnect with backoff.
//!
//! One background task owns the socket; [`Client`] is a cheap handle that sends it commands.
//!
//! ```no_run
//! # async fn run() -> Result<(), sockyard::client::ClientError> {
//! use sockyard::client::{Client, ClientOptions};
//!
//! let (client, _events) = Client::connect("ws://127.0.0.1:8000/socketcluster/", ClientOptions::default()).await?;
//! let reply = client.invoke("echo", serde_json::json!({"hello": "world"})).await?;
//! assert_eq!(reply, Some(serde_json::json!({"hello": "world"})));
//! # Ok(())
//! # }
//! ```

pub mod ctproto;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use serde::Serialize;
use serde_json::Value;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::codec::{CodecState, Decoded, Encoding, FrameKind};
use crate::error::ApiError;
use crate::protocol::socketcluster::{self, ProtocolVersion, Session};
use crate::protocol::Inbound;
use crate::protocol::{CallId, Packet};

/// Ping watchdog used when the server's handshake reply names no `pingTimeout`.
const DEFAULT_PING_TIMEOUT: Duration = Duration::from_secs(30);

/// Close code the client uses when the server's pings stop (as the official client).
pub const CLOSE_PING_TIMEOUT: u16 = 4000;

/// What can go wrong for a client call.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum ClientError {
    /// The URL is not a `ws://` URL.
    #[error("invalid URL: {0}")]
    Url(String),
    /// The WebSocket could not be opened.
    #[error("could not connect: {0}")]
    Connect(String),
    /// The server did not complete the handshake.
    #[error("handshake failed: {0}")]
    Handshake(String),
    /// The server replied with an error.
    #[error("{0}")]
    Remote(ApiError),
    /// No reply within the timeout.
    #[error("no reply to `{0}` within the timeout")]
    Timeout(String),
    /// The connection dropped before the reply arrived.
    #[error("connection lost before the reply arrived")]
    BadConnection,
    /// The client was closed.
    #[error("client is closed")]
    Closed,
    /// The data could not be encoded.
    #[error("could not encode data: {0}")]
    Encode(String),
}

/// Reconnection delays: `initial · multiplier^attempt`, plus up to `randomness` of jitter, at most
/// `max`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Backoff {
    /// First delay. Default 500 ms.
    pub initial: Duration,
    /// Growth per failed attempt. Default 1.5.
    pub multiplier: f64,
    /// Upper bound of the random extra delay. Default 500 ms.
    pub randomness: Duration,
    /// Largest delay. Default 30 s.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(500),
            multiplier: 1.5,
            randomness: Duration::from_millis(500),
            max: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The delay before reconnection attempt `attempt` (0-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let base = self.initial.as_secs_f64() * self.multiplier.powi(attempt.min(64) as i32);
        let jitter = self.randomness.as_secs_f64() * rand::random::<f64>();
        Duration::from_secs_f64((base + jitter).min(self.max.as_secs_f64()))
    }
}

/// Client settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientOptions {
    /// How long `invoke` waits for a reply. Default 10 s (as the official client).
    pub ack_timeout: Duration,
    /// Reconnect after the connection drops (not after close code 1000 or ≥ 4500, as the
    /// official client). Default true.
    pub auto_reconnect: bool,
    /// Delays between reconnection attempts.
    pub backoff: Backoff,
    /// Protocol version: decides which ping the client answers. Default v2.
    pub protocol_version: ProtocolVersion,
    /// Signed token sent in the handshake.
    pub auth_token: Option<String>,
    /// The codec the endpoint uses. Default JSON.
    pub encoding: Encoding,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            ack_timeout: Duration::from_secs(10),
            auto_reconnect: true,
            backoff: Backoff::default(),
            protocol_version: ProtocolVersion::V2,
            auth_token: None,
            encoding: Encoding::Json,
        }
    }
}

impl ClientOptions {
    /// Sets `ack_timeout`.
    #[must_use]
    pub fn ack_timeout(mut self, timeout: Duration) -> Self {
        self.ack_timeout = timeout;
        self
    }

    /// Sets `auto_reconnect`.
    #[must_use]
    pub fn auto_reconnect(mut self, enabled: bool) -> Self {
        self.auto_reconnect = enabled;
        self
    }

    /// Sets `backoff`.
    #[must_use]
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Sets the codec (it must match the endpoint's).
    #[must_use]
    pub fn encoding(mut self, encoding: Encoding) -> Self {
        self.encoding = encoding;
        self
    }

    /// Sets `protocol_version` (`V1` answers `#1` pings with `#2`).
    #[must_use]
    pub fn protocol_version(mut self, version: ProtocolVersion) -> Self {
        self.protocol_version = version;
        self
    }
}

/// Something the server sent or something that happened to the connection.
#[derive(Debug)]
pub enum ClientEvent {
    /// The handshake succeeded (also after each reconnection).
    Connected {
        /// The socket id the server assigned.
        id: String,
        /// Whether the server accepted the auth token.
        is_authenticated: bool,
    },
    /// The connection closed; a reconnection may follow.
    Disconnected {
        /// Close code (1006 when the connection was lost without a close frame).
        code: u16,
        /// Close reason.
        reason: String,
    },
    /// The server transmitted an event.
    Transmit {
        /// Event name.
        event: String,
        /// Event data.
        data: Option<Value>,
    },
    /// The server invoked a procedure; answer through [`IncomingCall::respond`].
    Invoke(IncomingCall),
    /// A publication on a subscribed channel.
    Publication {
        /// The channel.
        channel: String,
        /// The published data.
        data: Option<Value>,
    },
    /// The server removed the client from a channel.
    KickedOut {
        /// The channel.
        channel: String,
        /// The server's reason.
        message: Option<String>,
    },
    /// The server gave the client an auth token (kept and sent on reconnection).
    AuthTokenSet {
        /// The signed token.
        token: String,
    },
    /// The server told the client to drop its auth token.
    AuthTokenRemoved,
}

/// A call from the server waiting for the client's answer. Dropping it unanswered replies with
/// an error named `NoResponse`.
#[derive(Debug)]
pub struct IncomingCall {
    /// Procedure name.
    pub event: String,
    /// Call data.
    pub data: Option<Value>,
    reply: Option<(CallId, mpsc::UnboundedSender<Command>)>,
}

impl IncomingCall {
    /// Sends the answer.
    pub fn respond(mut self, result: Result<Option<Value>, ApiError>) {
        if let Some((rid, commands)) = self.reply.take() {
            let _ = commands.send(Command::Reply { rid, result });
        }
    }
}

impl Drop for IncomingCall {
    fn drop(&mut self) {
        if let Some((rid, commands)) = self.reply.take() {
            let err = ApiError::new("NoResponse", format!("No answer to '{}'", self.event));
            let _ = commands.send(Command::Reply {
                rid,
                result: Err(err),
            });
        }
    }
}

/// The stream of [`ClientEvent`]s. Events accumulate until read, so read it or drop it.
#[derive(Debug)]
pub struct Events {
    receiver: mpsc::UnboundedReceiver<ClientEvent>,
}

impl Events {
    /// The next event, or `None` once the client has stopped for good.
    pub async fn next(&mut self) -> Option<ClientEvent> {
        self.receiver.recv().await
    }
}

#[derive(Debug)]
enum Command {
    Send {
        event: String,
        data: Option<Value>,
        cid: Option<CallId>,
    },
    Reply {
        rid: CallId,
        result: Result<Option<Value>, ApiError>,
    },
    Close {
        code: u16,
        reason: String,
    },
}

type Pending = Arc<Mutex<HashMap<CallId, oneshot::Sender<Result<Option<Value>, ApiError>>>>>;

/// Connection state as seen by handles.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Connecting,
    Open { id: String },
    Stopped,
}

/// What survives a reconnection: the auth token and the channels to subscribe again.
#[derive(Debug, Default)]
struct Memory {
    token: Option<String>,
    channels: std::collections::BTreeSet<String>,
}

/// A handle to a SocketCluster connection; cheap to clone.
#[derive(Debug, Clone)]
pub struct Client {
    commands: mpsc::UnboundedSender<Command>,
    state: watch::Receiver<State>,
    next_cid: Arc<AtomicU64>,
    pending: Pending,
    memory: Arc<Mutex<Memory>>,
    ack_timeout: Duration,
}

impl Client {
    /// Connects to `url` (e.g. `ws://127.0.0.1:8000/socketcluster/`) and completes the handshake.
    pub async fn connect(url: &str, options: ClientOptions) -> Result<(Self, Events), ClientError> {
        if !url.starts_with("ws://") && !url.starts_with("wss://") {
            return Err(ClientError::Url(format!(
                "{url} (expected ws:// or wss://)"
            )));
        }
        let next_cid = Arc::new(AtomicU64::new(1));
        let memory = Arc::new(Mutex::new(Memory {
            token: options.auth_token.clone(),
            channels: Default::default(),
        }));
        let opened = open(url, &options, &next_cid, &memory).await?;
        let (id, is_authenticated) = (opened.id.clone(), opened.is_authenticated);
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (events_tx, receiver) = mpsc::unbounded_channel();
        let (state_tx, state) = watch::channel(State::Open { id: id.clone() });
        let _ = events_tx.send(ClientEvent::Connected {
            id,
            is_authenticated,
        });
        let pending = Pending::default();
        let driver = Driver {
            url: url.to_owned(),
            session: Session::new(options.protocol_version),
            options: options.clone(),
            commands: commands.clone(),
            command_rx,
            events: events_tx,
            state: state_tx,
            next_cid: next_cid.clone(),
            pending: pending.clone(),
            memory: memory.clone(),
        };
        tokio::spawn(driver.run(opened));
        let client = Self {
            commands,
            state,
            next_cid,
            pending,
            memory,
            ack_timeout: options.ack_timeout,
        };
        Ok((client, Events { receiver }))
    }

    /// The socket id of the current connection, if connected.
    pub fn id(&self) -> Option<String> {
        match &*self.state.borrow() {
            State::Open { id } => Some(id.clone()),
            _ => None,
        }
    }

    /// Calls a procedure and waits up to the configured `ack_timeout` for the reply.
    pub async fn invoke(
        &self,
        event: &str,
        data: impl Serialize,
    ) -> Result<Option<Value>, ClientError> {
        self.invoke_with_timeout(event, data, self.ack_timeout)
            .await
    }

    /// Calls a procedure with an explicit timeout. While reconnecting, the call waits for the
    /// connection (within the same timeout).
    pub async fn invoke_with_timeout(
        &self,
        event: &str,
        data: impl Serialize,
        timeout: Duration,
    ) -> Result<Option<Value>, ClientError> {
        let data = to_data(data)?;
        let cid = self.next_cid.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(cid, tx);
        let sent = self.commands.send(Command::Send {
            event: event.to_owned(),
            data,
            cid: Some(cid),
        });
        if sent.is_err() {
            lock(&self.pending).remove(&cid);
            return Err(ClientError::Closed);
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(Ok(data))) => Ok(data),
            Ok(Ok(Err(err))) => Err(ClientError::Remote(err)),
            Ok(Err(_)) => Err(ClientError::BadConnection),
            Err(_) => {
                lock(&self.pending).remove(&cid);
                Err(ClientError::Timeout(event.to_owned()))
            }
        }
    }

    /// Subscribes to `channel`; publications arrive as [`ClientEvent::Publication`]. The
    /// subscription is renewed after each reconnection.
    pub async fn subscribe(&self, channel: &str) -> Result<(), ClientError> {
        self.subscribe_with(channel, Value::Null).await
    }

    /// Subscribes to `channel`, sending `data` along (the server's subscribe stage sees it).
    pub async fn subscribe_with(
        &self,
        channel: &str,
        data: impl Serialize,
    ) -> Result<(), ClientError> {
        let mut request = serde_json::json!({ "channel": channel });
        if let Some(data) = to_data(data)? {
            request["data"] = data;
        }
        self.invoke("#subscribe", request).await?;
        lock(&self.memory).channels.insert(channel.to_owned());
        Ok(())
    }

    /// Leaves `channel` (a transmit, as the official client sends it).
    pub fn unsubscribe(&self, channel: &str) -> Result<(), ClientError> {
        lock(&self.memory).channels.remove(channel);
        self.transmit("#unsubscribe", channel)
    }

    /// Channels the client is subscribed to (and will subscribe to again after reconnecting).
    pub fn subscriptions(&self) -> Vec<String> {
        lock(&self.memory).channels.iter().cloned().collect()
    }

    /// Publishes `data` on `channel` and waits for the server's acknowledgement.
    pub async fn publish(&self, channel: &str, data: impl Serialize) -> Result<(), ClientError> {
        let data = to_data(data)?;
        self.invoke(
            "#publish",
            serde_json::json!({ "channel": channel, "data": data }),
        )
        .await
        .map(|_| ())
    }

    /// Publishes without waiting for an acknowledgement.
    pub fn transmit_publish(&self, channel: &str, data: impl Serialize) -> Result<(), ClientError> {
        let data = to_data(data)?;
        self.transmit(
            "#publish",
            serde_json::json!({ "channel": channel, "data": data }),
        )
    }

    /// Authenticates with a signed token; on success it is kept for reconnections. A refused
    /// token comes back as `ClientError::Remote` (`AuthTokenInvalidError`, …); a token the
    /// server's authenticate stage turned down as `Ok(false)`.
    pub async fn authenticate(&self, token: &str) -> Result<bool, ClientError> {
        let reply = self.invoke("#authenticate", token).await?;
        let accepted = reply
            .as_ref()
            .and_then(|r| r.get("isAuthenticated"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if accepted {
            lock(&self.memory).token = Some(token.to_owned());
        }
        Ok(accepted)
    }

    /// Drops the auth token, here and on the server.
    pub fn deauthenticate(&self) -> Result<(), ClientError> {
        lock(&self.memory).token = None;
        self.transmit("#removeAuthToken", ())
    }

    /// The auth token the client holds (given by the server or passed to `authenticate`).
    pub fn auth_token(&self) -> Option<String> {
        lock(&self.memory).token.clone()
    }

    /// Sends an event without waiting for anything.
    pub fn transmit(&self, event: &str, data: impl Serialize) -> Result<(), ClientError> {
        let data = to_data(data)?;
        self.commands
            .send(Command::Send {
                event: event.to_owned(),
                data,
                cid: None,
            })
            .map_err(|_| ClientError::Closed)
    }

    /// Closes the connection for good with `code` and `reason` and waits until it is closed.
    pub async fn close(&self, code: u16, reason: &str) {
        let _ = self.commands.send(Command::Close {
            code,
            reason: reason.to_owned(),
        });
        let mut state = self.state.clone();
        let _ = state.wait_for(|s| *s == State::Stopped).await;
    }
}

fn to_data(data: impl Serialize) -> Result<Option<Value>, ClientError> {
    match serde_json::to_value(data) {
        Ok(Value::Null) => Ok(None),
        Ok(value) => Ok(Some(value)),
        Err(err) => Err(ClientError::Encode(err.to_string())),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

type Stream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens the socket and performs the handshake; returns the socket id and auth state.
/// What the handshake reply told the client.
struct Opened {
    stream: Stream,
    id: String,
    is_authenticated: bool,
    /// The server's `pingTimeout`: the client gives up on a server that sends no ping for this
    /// long (close 4000, then reconnect), as the official client does.
    ping_timeout: Duration,
}

async fn open(
    url: &str,
    options: &ClientOptions,
    next_cid: &AtomicU64,
    memory: &Mutex<Memory>,
) -> Result<Opened, ClientError> {
    let (mut stream, _) = tokio_tungstenite::connect_async(url)
        .await
        .map_err(|e| ClientError::Connect(e.to_string()))?;
    let cid = next_cid.fetch_add(1, Ordering::Relaxed);
    let token = lock(memory).token.clone();
    let data = serde_json::json!({ "authToken": token });
    let frame = encode_event(&options.encoding, "#handshake", Some(&data), Some(cid))?;
    stream
        .send(frame)
        .await
        .map_err(|e| ClientError::Connect(e.to_string()))?;
    let deadline = Instant::now() + options.ack_timeout;
    loop {
        let next = tokio::time::timeout_at(deadline, stream.next())
            .await
            .map_err(|_| ClientError::Handshake("no reply to #handshake".to_owned()))?;
        let message = match next {
            Some(Ok(message)) => message,
            Some(Err(err)) => return Err(ClientError::Handshake(err.to_string())),
            None => return Err(ClientError::Handshake("connection closed".to_owned())),
        };
        let (payload, binary) = match message {
            WsMessage::Text(text) => (text.as_bytes().to_vec(), false),
            WsMessage::Binary(bytes) => (bytes.to_vec(), true),
            WsMessage::Close(frame) => {
                let detail = frame.map_or_else(
                    || "closed".to_owned(),
                    |f| format!("closed with {}: {}", u16::from(f.code), f.reason),
                );
                return Err(ClientError::Handshake(detail));
            }
            _ => continue,
        };
        let decoded = options
            .encoding
            .decode(&payload, binary, &mut CodecState::default());
        let Decoded::Packets(packets) = decoded else {
            continue;
        };
        let Some(Value::Object(mut reply)) = packets.into_iter().next() else {
            continue;
        };
        if reply.get("rid").and_then(Value::as_u64) != Some(cid) {
            continue;
        }
        if let Some(error) = reply.remove("error").filter(|e| !e.is_null()) {
            return Err(ClientError::Handshake(
                ApiError::from_value(error).to_string(),
            ));
        }
        let data = reply.remove("data").unwrap_or(Value::Null);
        let id = data
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let is_authenticated = data
            .get("isAuthenticated")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let ping_timeout = data
            .get("pingTimeout")
            .and_then(Value::as_u64)
            .map_or(DEFAULT_PING_TIMEOUT, Duration::from_millis);
        return Ok(Opened {
            stream,
            id,
            is_authenticated,
            ping_timeout,
        });
    }
}

fn encode_event(
    encoding: &Encoding,
    event: &str,
    data: Option<&Value>,
    cid: Option<CallId>,
) -> Result<WsMessage, ClientError> {
    let mut out = Vec::new();
    let kind = socketcluster::encode_event(encoding, event, data, cid, &mut out)
        .map_err(|e| ClientError::Encode(e.to_string()))?;
    to_message(kind, out)
}

fn to_message(kind: FrameKind, payload: Vec<u8>) -> Result<WsMessage, ClientError> {
    match kind {
        FrameKind::Binary => Ok(WsMessage::binary(payload)),
        FrameKind::Text => String::from_utf8(payload)
            .map(WsMessage::text)
            .map_err(|e| ClientError::Encode(e.to_string())),
    }
}

/// The background task that owns the socket.
struct Driver {
    url: String,
    session: Session,
    options: ClientOptions,
    commands: mpsc::UnboundedSender<Command>,
    command_rx: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<ClientEvent>,
    state: watch::Sender<State>,
    next_cid: Arc<AtomicU64>,
    pending: Pending,
    memory: Arc<Mutex<Memory>>,
}

/// Why a connection ended.
struct Ended {
    code: u16,
    reason: String,
    /// The user asked to close: never reconnect.
    by_user: bool,
}

impl Driver {
    async fn run(mut self, mut opened: Opened) {
        self.session.set_handshaken();
        let mut attempt = 0;
        loop {
            let ended = self.serve(opened.stream, opened.ping_timeout).await;
            self.fail_pending();
            let _ = self.events.send(ClientEvent::Disconnected {
                code: ended.code,
                reason: ended.reason,
            });
            let permanent = ended.by_user || ended.code == 1000 || ended.code >= 4500;
            if permanent || !self.options.auto_reconnect {
                break;
            }
            // Reconnect, retrying with backoff until it works or the user gives up.
            let _ = self.state.send(State::Connecting);
            opened = loop {
                // 4000/4001 and a lost connection reconnect at once on the first attempt.
                let immediate =
                    attempt == 0 && matches!(ended.code, CLOSE_PING_TIMEOUT | 4001 | 1005);
                if !immediate && self.wait(self.options.backoff.delay(attempt)).await {
                    self.stop();
                    return;
                }
                attempt += 1;
                match open(&self.url, &self.options, &self.next_cid, &self.memory).await {
                    Ok(opened) => {
                        attempt = 0;
                        let id = opened.id.clone();
                        let _ = self.state.send(State::Open { id: id.clone() });
                        let _ = self.events.send(ClientEvent::Connected {
                            id,
                            is_authenticated: opened.is_authenticated,
                        });
                        self.resubscribe();
                        break opened;
                    }
                    Err(err) => tracing::debug!(error = %err, "reconnection failed"),
                }
            };
        }
        self.stop();
    }

    /// Waits `delay` while watching for a close command; true if the user closed.
    async fn wait(&mut self, delay: Duration) -> bool {
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut sleep => return false,
                command = self.command_rx.recv() => match command {
                    None | Some(Command::Close { .. }) => return true,
                    // Calls made while disconnected fail at once rather than wait blindly.
                    Some(Command::Send { cid: Some(cid), .. }) => {
                        lock(&self.pending).remove(&cid);
                    }
                    Some(_) => {}
                },
            }
        }
    }

    /// Subscribes again to every channel held before the connection dropped (as the official
    /// client's `autoSubscribeOnConnect`). Each is sent as an invoke whose reply is not awaited.
    fn resubscribe(&self) {
        let channels: Vec<String> = lock(&self.memory).channels.iter().cloned().collect();
        for channel in channels {
            let cid = self.next_cid.fetch_add(1, Ordering::Relaxed);
            let _ = self.commands.send(Command::Send {
                event: "#subscribe".to_owned(),
                data: Some(serde_json::json!({ "channel": channel })),
                cid: Some(cid),
            });
        }
    }

    fn stop(&mut self) {
        self.fail_pending();
        let _ = self.state.send(State::Stopped);
        self.command_rx.close();
    }

    fn fail_pending(&self) {
        // Dropping the senders makes every waiting invoke fail with `BadConnection`.
        lock(&self.pending).clear();
    }

    async fn serve(&mut self, mut stream: Stream, ping_timeout: Duration) -> Ended {
        let watchdog = tokio::time::sleep(ping_timeout);
        tokio::pin!(watchdog);
        loop {
            tokio::select! {
                () = &mut watchdog => {
                    let frame = CloseFrame { code: CloseCode::from(CLOSE_PING_TIMEOUT), reason: "Server ping timed out".into() };
                    let _ = tokio::time::timeout(Duration::from_secs(1), stream.close(Some(frame))).await;
                    return Ended { code: CLOSE_PING_TIMEOUT, reason: "Server ping timed out".to_owned(), by_user: false };
                }
                message = stream.next() => {
                    let message = match message {
                        Some(Ok(message)) => message,
                        Some(Err(err)) => return Ended { code: 1006, reason: err.to_string(), by_user: false },
                        None => return Ended { code: 1006, reason: "connection lost".to_owned(), by_user: false },
                    };
                    match message {
                        WsMessage::Text(_) | WsMessage::Binary(_) => {
                            let binary = matches!(message, WsMessage::Binary(_));
                            let payload = message.into_data();
                            if let Some(pong) = self.on_frame(&payload, binary) {
                                watchdog.as_mut().reset(Instant::now() + ping_timeout);
                                if stream.send(pong).await.is_err() {
                                    return Ended { code: 1006, reason: "send failed".to_owned(), by_user: false };
                                }
                            }
                        }
                        WsMessage::Close(frame) => {
                            let (code, reason) = frame.map_or((1005, String::new()), |f| (u16::from(f.code), f.reason.to_string()));
                            return Ended { code, reason, by_user: false };
                        }
                        _ => {}
                    }
                }
                command = self.command_rx.recv() => {
                    let Some(command) = command else {
                        let _ = stream.close(None).await;
                        return Ended { code: 1000, reason: String::new(), by_user: true };
                    };
                    let encoding = &self.options.encoding;
                    let frame = match command {
                        Command::Send { event, data, cid } => encode_event(encoding, &event, data.as_ref(), cid),
                        Command::Reply { rid, result } => {
                            let mut out = Vec::new();
                            let encoded = match &result {
                                Ok(data) => self.session.encode_reply(encoding, rid, Ok(data.as_ref()), &mut out),
                                Err(err) => self.session.encode_reply(encoding, rid, Err(err), &mut out),
                            };
                            encoded.map_err(|e| ClientError::Encode(e.to_string())).and_then(|kind| to_message(kind, out))
                        }
                        Command::Close { code, reason } => {
                            let frame = CloseFrame { code: CloseCode::from(code), reason: reason.clone().into() };
                            let _ = stream.close(Some(frame)).await;
                            // Wait briefly for the server's close frame.
                            let _ = tokio::time::timeout(Duration::from_secs(2), async { while stream.next().await.is_some() {} }).await;
                            return Ended { code, reason, by_user: true };
                        }
                    };
                    match frame {
                        Ok(frame) => {
                            if stream.send(frame).await.is_err() {
                                return Ended { code: 1006, reason: "send failed".to_owned(), by_user: false };
                            }
                        }
                        Err(err) => tracing::warn!(error = %err, "could not encode a message"),
                    }
                }
            }
        }
    }

    /// Turns a server transmit into an event, keeping auth tokens and kick-outs in mind.
    fn on_transmit(&self, event: String, data: Option<Value>) -> ClientEvent {
        let field = |name: &str| {
            data.as_ref()
                .and_then(|d| d.get(name))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        match event.as_str() {
            "#setAuthToken" => match field("token") {
                Some(token) => {
                    lock(&self.memory).token = Some(token.clone());
                    ClientEvent::AuthTokenSet { token }
                }
                None => ClientEvent::Transmit { event, data },
            },
            "#kickOut" => match field("channel") {
                Some(channel) => {
                    lock(&self.memory).channels.remove(&channel);
                    ClientEvent::KickedOut {
                        channel,
                        message: field("message"),
                    }
                }
                None => ClientEvent::Transmit { event, data },
            },
            _ => ClientEvent::Transmit { event, data },
        }
    }

    /// Handles one data frame; returns a pong to send, if it was a ping.
    fn on_frame(&mut self, payload: &[u8], binary: bool) -> Option<WsMessage> {
        let version = self.options.protocol_version;
        if !binary && payload.is_empty() && version != ProtocolVersion::V1 {
            return Some(WsMessage::text(""));
        }
        if version != ProtocolVersion::V2 {
            let (kind, ping) = self.options.encoding.v1_ping();
            if payload == ping.as_slice() && binary == (kind == FrameKind::Binary) {
                let (kind, pong) = self.options.encoding.v1_pong();
                return to_message(kind, pong).ok();
            }
        }
        let mut items = Vec::new();
        self.session
            .decode(&self.options.encoding, payload, binary, &mut items);
        for item in items {
            let Inbound::Packet(packet) = item else {
                continue;
            };
            match packet {
                Packet::Reply { id, result } => {
                    if let Some(sender) = lock(&self.pending).remove(&id) {
                        let _ = sender.send(result);
                    }
                }
                Packet::Call {
                    id: Some(cid),
                    route,
                    data,
                } => {
                    let call = IncomingCall {
                        event: route,
                        data,
                        reply: Some((cid, self.commands.clone())),
                    };
                    // If nobody listens, the call is dropped here and answered `NoResponse`.
                    let _ = self.events.send(ClientEvent::Invoke(call));
                }
                Packet::Call {
                    id: None,
                    route,
                    data,
                } => {
                    let event = self.on_transmit(route, data);
                    let _ = self.events.send(event);
                }
                Packet::Publish { channel, data, .. } => {
                    let _ = self.events.send(ClientEvent::Publication { channel, data });
                }
                Packet::Deauthenticate => {
                    lock(&self.memory).token = None;
                    let _ = self.events.send(ClientEvent::AuthTokenRemoved);
                }
                Packet::Open { .. }
                | Packet::Api { .. }
                | Packet::Disconnect { .. }
                | Packet::Raw(_)
                | Packet::Subscribe { .. }
                | Packet::Unsubscribe { .. }
                | Packet::Authenticate { .. }
                | Packet::Invalid { .. } => {}
            }
        }
        None
    }
}
