//! The task that owns a SocketCluster client's socket: the handshake, writing the handles'
//! commands, reading the server's frames, the ping watchdog, and reconnection with backoff
//! followed by subscribing again.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use super::events::IncomingCall;
use super::pending::PendingReplies;
use super::socket::{self, Received, Stream};
use super::wire::{CallId, Frame, FromServer, Wire};
use super::{lock, ClientError, ClientEvent, ClientOptions, Events};
use crate::error::ApiError;

/// Ping watchdog used when the server's handshake reply names no `pingTimeout`.
const DEFAULT_PING_TIMEOUT: Duration = Duration::from_secs(30);

/// Close code the client uses when the server's pings stop (as the official client).
pub const CLOSE_PING_TIMEOUT: u16 = 4000;

/// What a handle asks the driver to do.
#[derive(Debug)]
pub(super) enum Command {
    /// Send an event (an invoke when `cid` is set).
    Send {
        event: String,
        data: Option<Value>,
        cid: Option<CallId>,
    },
    /// Answer the server's call `rid`.
    Reply {
        rid: CallId,
        result: Result<Option<Value>, ApiError>,
    },
    /// Close for good.
    Close { code: u16, reason: String },
}

/// Connection state as seen by handles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum State {
    Connecting,
    Open { id: String },
    Stopped,
}

/// What survives a reconnection: the auth token and the channels to subscribe again.
#[derive(Debug, Default)]
pub(super) struct Memory {
    pub(super) token: Option<String>,
    pub(super) channels: BTreeSet<String>,
}

/// What a [`Client`](super::Client) handle shares with the driver of its connection.
#[derive(Debug, Clone)]
pub(super) struct Link {
    /// Where the handle's commands go.
    pub(super) commands: mpsc::UnboundedSender<Command>,
    /// The connection state.
    pub(super) state: watch::Receiver<State>,
    /// The next call id.
    pub(super) next_cid: Arc<AtomicU64>,
    /// The handle's calls waiting for a reply.
    pub(super) pending: PendingReplies<CallId>,
    /// What survives a reconnection.
    pub(super) memory: Arc<Mutex<Memory>>,
}

/// Connects to `url`, completes the handshake and starts the driver.
pub(super) async fn start(
    url: &str,
    options: ClientOptions,
) -> Result<(Link, Events), ClientError> {
    let next_cid = Arc::new(AtomicU64::new(1));
    let memory = Arc::new(Mutex::new(Memory {
        token: options.auth_token.clone(),
        channels: BTreeSet::new(),
    }));
    let wire = Wire::new(options.protocol_version, options.encoding.clone());
    let opened = open(url, &wire, options.ack_timeout, &next_cid, &memory).await?;
    let (commands, command_rx) = mpsc::unbounded_channel();
    let (events, receiver) = mpsc::unbounded_channel();
    let (state_tx, state) = watch::channel(State::Open {
        id: opened.id.clone(),
    });
    let _ = events.send(ClientEvent::Connected {
        id: opened.id.clone(),
        is_authenticated: opened.is_authenticated,
    });
    let pending = PendingReplies::default();
    let driver = Driver {
        url: url.to_owned(),
        wire,
        options,
        commands: commands.clone(),
        command_rx,
        events,
        state: state_tx,
        next_cid: next_cid.clone(),
        pending: pending.clone(),
        memory: memory.clone(),
    };
    tokio::spawn(driver.run(opened));
    let link = Link {
        commands,
        state,
        next_cid,
        pending,
        memory,
    };
    Ok((link, Events::new(receiver)))
}

/// An open socket and what the handshake reply told the client.
struct Opened {
    stream: Stream,
    id: String,
    is_authenticated: bool,
    /// The server's `pingTimeout`: the client gives up on a server that sends no ping for this
    /// long (close 4000, then reconnect), as the official client does.
    ping_timeout: Duration,
}

/// Opens the socket and performs the handshake, waiting up to `ack_timeout` for its reply.
async fn open(
    url: &str,
    wire: &Wire,
    ack_timeout: Duration,
    next_cid: &AtomicU64,
    memory: &Mutex<Memory>,
) -> Result<Opened, ClientError> {
    let mut stream = socket::open(url).await?;
    let cid = next_cid.fetch_add(1, Ordering::Relaxed);
    let token = lock(memory).token.clone();
    socket::send_opening(&mut stream, wire.handshake(cid, token)?).await?;
    let deadline = Instant::now() + ack_timeout;
    loop {
        let next = tokio::time::timeout_at(deadline, stream.next())
            .await
            .map_err(|_| ClientError::Handshake("no reply to #handshake".to_owned()))?;
        let (payload, binary) = match socket::received(next) {
            Received::Text(text) => (Bytes::from(text), false),
            Received::Binary(bytes) => (bytes, true),
            Received::Control => continue,
            Received::End(ending) => {
                let describe = |code, reason: &str| format!("closed with {code}: {reason}");
                return Err(ending.opening_error(describe));
            }
        };
        if let Some(reply) = wire.handshake_reply(&payload, binary, cid) {
            let reply = reply?;
            return Ok(Opened {
                stream,
                id: reply.id,
                is_authenticated: reply.is_authenticated,
                ping_timeout: reply.ping_timeout.unwrap_or(DEFAULT_PING_TIMEOUT),
            });
        }
    }
}

/// The background task that owns the socket.
struct Driver {
    url: String,
    wire: Wire,
    options: ClientOptions,
    commands: mpsc::UnboundedSender<Command>,
    command_rx: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<ClientEvent>,
    state: watch::Sender<State>,
    next_cid: Arc<AtomicU64>,
    pending: PendingReplies<CallId>,
    memory: Arc<Mutex<Memory>>,
}

/// Why a connection ended.
struct Ended {
    code: u16,
    reason: String,
    /// The user asked to close: never reconnect.
    by_user: bool,
}

impl Ended {
    /// A connection that ended without the user asking.
    fn dropped((code, reason): (u16, String)) -> Self {
        Self {
            code,
            reason,
            by_user: false,
        }
    }
}

impl Driver {
    async fn run(mut self, mut opened: Opened) {
        let mut attempt = 0;
        loop {
            let ended = self.serve(opened.stream, opened.ping_timeout).await;
            self.pending.fail_all();
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
                let ack_timeout = self.options.ack_timeout;
                match open(
                    &self.url,
                    &self.wire,
                    ack_timeout,
                    &self.next_cid,
                    &self.memory,
                )
                .await
                {
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
                    Some(Command::Send { cid: Some(cid), .. }) => self.pending.fail(&cid),
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
        // Dropping the waiters makes every waiting invoke fail with `BadConnection`.
        self.pending.fail_all();
        let _ = self.state.send(State::Stopped);
        self.command_rx.close();
    }

    async fn serve(&mut self, mut stream: Stream, ping_timeout: Duration) -> Ended {
        let watchdog = tokio::time::sleep(ping_timeout);
        tokio::pin!(watchdog);
        loop {
            tokio::select! {
                () = &mut watchdog => {
                    let reason = "Server ping timed out";
                    let frame = socket::close_frame(CLOSE_PING_TIMEOUT, reason);
                    let _ = tokio::time::timeout(Duration::from_secs(1), stream.close(Some(frame))).await;
                    return Ended::dropped((CLOSE_PING_TIMEOUT, reason.to_owned()));
                }
                message = stream.next() => {
                    let (payload, binary) = match socket::received(message) {
                        Received::Text(text) => (Bytes::from(text), false),
                        Received::Binary(bytes) => (bytes, true),
                        Received::Control => continue,
                        Received::End(ending) => return Ended::dropped(ending.code_and_reason()),
                    };
                    if let Some(pong) = self.on_frame(&payload, binary) {
                        watchdog.as_mut().reset(Instant::now() + ping_timeout);
                        if stream.send(pong).await.is_err() {
                            return Ended::dropped(socket::send_failed());
                        }
                    }
                }
                command = self.command_rx.recv() => {
                    let Some(command) = command else {
                        let (code, reason) = socket::close(&mut stream).await;
                        return Ended { code, reason, by_user: true };
                    };
                    let frame = match command {
                        Command::Send { event, data, cid } => self.wire.event(&event, data.as_ref(), cid),
                        Command::Reply { rid, result } => self.wire.reply(rid, &result),
                        Command::Close { code, reason } => {
                            let _ = stream.close(Some(socket::close_frame(code, &reason))).await;
                            // Wait briefly for the server's close frame.
                            let _ = tokio::time::timeout(Duration::from_secs(2), async { while stream.next().await.is_some() {} }).await;
                            return Ended { code, reason, by_user: true };
                        }
                    };
                    match frame {
                        Ok(frame) => {
                            if stream.send(frame).await.is_err() {
                                return Ended::dropped(socket::send_failed());
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
        let messages = match self.wire.read(payload, binary) {
            Frame::Ping(pong) => return Some(pong),
            Frame::Messages(messages) => messages,
        };
        for message in messages {
            let event = match message {
                FromServer::Reply { id, result } => {
                    self.pending.resolve(&id, result);
                    continue;
                }
                // If nobody listens, the call is dropped here and answered `NoResponse`.
                FromServer::Invoke { id, event, data } => {
                    ClientEvent::Invoke(IncomingCall::new(event, data, id, self.commands.clone()))
                }
                FromServer::Transmit { event, data } => self.on_transmit(event, data),
                FromServer::Publication { channel, data } => {
                    ClientEvent::Publication { channel, data }
                }
                FromServer::Deauthenticate => {
                    lock(&self.memory).token = None;
                    ClientEvent::AuthTokenRemoved
                }
            };
            let _ = self.events.send(event);
        }
        None
    }
}
