//! The cheap-clone handle to one connection: its id, its bounded outbound queue (the "outbox")
//! and its table of server-initiated calls awaiting a reply. Any task may push through it; only
//! the connection's own task writes to the socket.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use serde::Serialize;
use serde_json::Value;
use thiserror::Error;
use tokio::sync::oneshot;

use crate::auth::{now_seconds, Claims};
use crate::codec::{Codec, Encoding, FrameKind};
use crate::config::Dialect;
use crate::error::ApiError;
use crate::exchange::SubscribeError;
use crate::hub::Hub;
use crate::protocol::{ctproto, socketcluster, CallId};
use crate::ws::frame::{self, OpCode};

/// How a connection's messages look on the wire: publications are encoded once per format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Format {
    /// The dialect.
    pub dialect: Dialect,
    /// The codec.
    pub codec: Codec,
    /// Which protobuf schema (0 for other codecs): frames differ between schemas.
    pub schema: u64,
}

/// Source of connection keys, unique within the process.
static NEXT_KEY: AtomicU64 = AtomicU64::new(1);

/// Why a message could not be queued for a connection.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SendError {
    /// The connection is closed or closing.
    #[error("connection is closed")]
    Closed,
    /// The connection's outbound queue is full; the connection is being closed as a slow
    /// consumer (close code 4400).
    #[error("outbound queue is full")]
    Overflow,
    /// The data could not be encoded.
    #[error("could not encode message: {0}")]
    Encode(String),
    /// The connection's dialect has no such message (CTProto has no server-initiated calls).
    #[error("the connection's protocol does not support this")]
    Unsupported,
}

/// Why a server-initiated invoke failed.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum InvokeError {
    /// The message could not be sent.
    #[error(transparent)]
    Send(#[from] SendError),
    /// The connection closed before the client answered.
    #[error("connection closed before the reply arrived")]
    Closed,
    /// No reply within the timeout.
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// The client replied with an error.
    #[error("client replied with an error: {0}")]
    Remote(ApiError),
}

/// What to send when asked to close.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CloseRequest {
    pub(crate) code: u16,
    pub(crate) reason: String,
}

type ReplySender = oneshot::Sender<Result<Option<Value>, ApiError>>;

/// State shared between the connection task and every handle. Guarded by a `std` mutex: it is
/// never held across an `.await`.
#[derive(Debug, Default)]
struct OutboxState {
    /// Complete, encoded WebSocket frames waiting for the connection task.
    frames: VecDeque<Bytes>,
    /// No more frames are accepted.
    closed: bool,
    /// A push found the queue full.
    overflowed: bool,
    /// Someone asked the connection to close.
    close: Option<CloseRequest>,
    /// Server-initiated invokes waiting for the client's reply, by call id.
    awaiting: HashMap<CallId, ReplySender>,
    /// The claims of the connection's valid auth token.
    claims: Option<Arc<Claims>>,
    /// Channels the connection is subscribed to.
    subscriptions: HashSet<Arc<str>>,
}

#[derive(Debug)]
struct Shared {
    id: Box<str>,
    key: u64,
    remote_addr: SocketAddr,
    format: Format,
    encoding: Encoding,
    hub: Arc<Hub>,
    limit: usize,
    next_cid: AtomicU64,
    state: Mutex<OutboxState>,
    waker: AtomicWaker,
}

/// A handle to one live connection, cheap to clone and usable from any task.
///
/// Pushes are encoded by the caller and queued; the connection's task writes them out in
/// batches. The queue is bounded (`limits.outbound_queue_length`): a connection that does not
/// keep up is closed with code 4400 rather than allowed to grow without limit.
#[derive(Debug, Clone)]
pub struct ConnectionHandle {
    shared: Arc<Shared>,
}

impl ConnectionHandle {
    pub(crate) fn new(
        id: String,
        remote_addr: SocketAddr,
        dialect: Dialect,
        encoding: Encoding,
        limit: usize,
        hub: Arc<Hub>,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                id: id.into_boxed_str(),
                key: NEXT_KEY.fetch_add(1, Ordering::Relaxed),
                remote_addr,
                format: Format {
                    dialect,
                    codec: encoding.codec(),
                    schema: encoding.schema_id(),
                },
                encoding,
                hub,
                limit,
                next_cid: AtomicU64::new(1),
                state: Mutex::new(OutboxState::default()),
                waker: AtomicWaker::new(),
            }),
        }
    }

    /// The socket id sent to the client in the handshake reply.
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    /// The peer's address.
    pub fn remote_addr(&self) -> SocketAddr {
        self.shared.remote_addr
    }

    /// A number identifying this connection within the process.
    pub fn key(&self) -> u64 {
        self.shared.key
    }

    /// The connection's wire format.
    pub fn format(&self) -> Format {
        self.shared.format
    }

    pub(crate) fn hub(&self) -> &Arc<Hub> {
        &self.shared.hub
    }

    /// The claims of the connection's auth token, if it is authenticated.
    pub fn claims(&self) -> Option<Arc<Claims>> {
        self.lock().claims.clone()
    }

    /// Whether the connection is authenticated.
    pub fn is_authenticated(&self) -> bool {
        self.lock().claims.is_some()
    }

    /// Channels the connection is subscribed to.
    pub fn subscriptions(&self) -> Vec<String> {
        self.lock()
            .subscriptions
            .iter()
            .map(|c| c.to_string())
            .collect()
    }

    /// Signs a token with `claims` (adding `iat` and, unless given, `exp`), makes it the
    /// connection's auth token and sends it to the client (`#setAuthToken`). Returns the token.
    pub fn set_auth_token(&self, claims: Claims) -> Result<String, ApiError> {
        let token = self.shared.hub.auth.sign(claims)?;
        let verified = self
            .shared
            .hub
            .auth
            .verify(&token)
            .map_err(|e| e.to_api_error())?;
        self.lock().claims = Some(Arc::new(verified));
        self.transmit("#setAuthToken", serde_json::json!({ "token": token }))
            .map_err(|e| ApiError::internal(e.to_string()))?;
        Ok(token)
    }

    /// Drops the connection's authentication and tells the client to remove its token
    /// (`#removeAuthToken`); subscriptions the connection may no longer hold are kicked out.
    pub fn deauthenticate(&self) {
        if self.lock().claims.take().is_some() {
            let _ = self.transmit("#removeAuthToken", ());
            self.shared.hub.revoke_subscriptions(self);
        }
    }

    /// Removes the connection from `channel` and tells the client (`#kickOut` with `message`).
    pub fn kick_out(&self, channel: &str, message: &str) {
        if !self.lock().subscriptions.contains(channel) {
            return;
        }
        let _ = self.transmit(
            "#kickOut",
            serde_json::json!({ "channel": channel, "message": message }),
        );
        let hub = self.shared.hub.clone();
        let connection = self.clone();
        let channel = channel.to_owned();
        tokio::spawn(async move {
            hub.exchange.unsubscribe(&connection, &channel).await;
        });
    }

    /// Whether the connection no longer accepts messages.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Sends an event the client does not answer: a SocketCluster transmit, or a CTProto
    /// message `{type: event, payload: data, messageId}` with a fresh id.
    pub fn transmit(&self, event: &str, data: impl Serialize) -> Result<(), SendError> {
        let data = to_value(data)?;
        let frame = self.encode_event(event, data.as_ref(), None)?;
        self.push(frame)
    }

    /// Calls a procedure on the client and waits up to `timeout` for its reply (SocketCluster
    /// only: CTProto clients cannot be called, which fails with `SendError::Unsupported`).
    pub async fn invoke(
        &self,
        event: &str,
        data: impl Serialize,
        timeout: Duration,
    ) -> Result<Option<Value>, InvokeError> {
        let data = to_value(data)?;
        let cid = self.shared.next_cid.fetch_add(1, Ordering::Relaxed);
        let frame = self.encode_event(event, data.as_ref(), Some(cid))?;
        let (tx, rx) = oneshot::channel();
        {
            let mut state = self.lock();
            if state.closed {
                return Err(SendError::Closed.into());
            }
            state.awaiting.insert(cid, tx);
        }
        if let Err(err) = self.push(frame) {
            self.lock().awaiting.remove(&cid);
            return Err(err.into());
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(Ok(data))) => Ok(data),
            Ok(Ok(Err(err))) => Err(InvokeError::Remote(err)),
            Ok(Err(_)) => Err(InvokeError::Closed),
            Err(_) => {
                self.lock().awaiting.remove(&cid);
                Err(InvokeError::Timeout(timeout))
            }
        }
    }

    /// Asks the connection to close with `code` and `reason` after what is already queued.
    pub fn close(&self, code: u16, reason: &str) {
        {
            let mut state = self.lock();
            if state.close.is_none() {
                state.close = Some(CloseRequest {
                    code,
                    reason: reason.to_owned(),
                });
            }
        }
        self.shared.waker.wake();
    }

    /// Queues one complete, already-encoded WebSocket frame (shared across subscribers).
    pub(crate) fn push(&self, frame: Bytes) -> Result<(), SendError> {
        let wake = {
            let mut state = self.lock();
            if state.closed {
                return Err(SendError::Closed);
            }
            if state.frames.len() >= self.shared.limit {
                state.overflowed = true;
                drop(state);
                self.shared.waker.wake();
                return Err(SendError::Overflow);
            }
            state.frames.push_back(frame);
            state.frames.len() == 1
        };
        if wake {
            self.shared.waker.wake();
        }
        Ok(())
    }

    fn encode_event(
        &self,
        event: &str,
        data: Option<&Value>,
        cid: Option<CallId>,
    ) -> Result<Bytes, SendError> {
        let mut payload = Vec::new();
        let kind = match self.shared.format.dialect {
            Dialect::SocketCluster => {
                socketcluster::encode_event(&self.shared.encoding, event, data, cid, &mut payload)
                    .map_err(|e| SendError::Encode(e.to_string()))?
            }
            Dialect::CtProto => {
                if cid.is_some() {
                    return Err(SendError::Unsupported);
                }
                ctproto::encode_push(event, data, &ctproto::new_message_id(), &mut payload);
                FrameKind::Text
            }
        };
        Ok(frame_bytes(kind, &payload))
    }

    /// Encodes a publication as this connection's format delivers it.
    pub(crate) fn encode_publication(
        &self,
        channel: &str,
        data: Option<&Value>,
    ) -> Result<Bytes, SendError> {
        let mut payload = Vec::new();
        let kind = match self.shared.format.dialect {
            Dialect::SocketCluster => socketcluster::encode_publication(
                &self.shared.encoding,
                channel,
                data,
                &mut payload,
            )
            .map_err(|e| SendError::Encode(e.to_string()))?,
            Dialect::CtProto => {
                // One id per publication, shared by every subscriber it is delivered to.
                ctproto::encode_publication(
                    channel,
                    data,
                    &ctproto::new_message_id(),
                    &mut payload,
                );
                FrameKind::Text
            }
        };
        Ok(frame_bytes(kind, &payload))
    }

    /// Takes `claims` as the connection's authentication.
    pub(crate) fn set_claims(&self, claims: Option<Arc<Claims>>) {
        self.lock().claims = claims;
    }

    /// Drops an auth token whose `exp` has passed (telling the client); true if it did.
    pub(crate) fn expire_auth(&self) -> bool {
        let expired = {
            let state = self.lock();
            let exp = state
                .claims
                .as_ref()
                .and_then(|claims| claims.get("exp"))
                .and_then(Value::as_u64);
            exp.is_some_and(|exp| exp <= now_seconds())
        };
        if expired {
            self.deauthenticate();
        }
        expired
    }

    /// Records a subscription; `Ok(false)` if it already existed.
    pub(crate) fn add_subscription(
        &self,
        channel: &Arc<str>,
        limit: usize,
    ) -> Result<bool, SubscribeError> {
        let mut state = self.lock();
        if state.closed {
            return Err(SubscribeError::Closed);
        }
        if state.subscriptions.contains(channel) {
            return Ok(false);
        }
        if state.subscriptions.len() >= limit {
            return Err(SubscribeError::Limit(limit));
        }
        state.subscriptions.insert(channel.clone());
        Ok(true)
    }

    /// Forgets a subscription; false if there was none.
    pub(crate) fn remove_subscription(&self, channel: &str) -> bool {
        self.lock().subscriptions.remove(channel)
    }

    /// Forgets every subscription and returns them.
    pub(crate) fn take_subscriptions(&self) -> Vec<Arc<str>> {
        self.lock().subscriptions.drain().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, OutboxState> {
        // A panic while holding this lock cannot leave the queue inconsistent (every update is a
        // single push/pop/insert), so a poisoned lock is still usable.
        self.shared
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    // ---- used by the connection task ----

    /// Registers the connection task's waker for pushes and close requests.
    pub(crate) fn register(&self, waker: &std::task::Waker) {
        self.shared.waker.register(waker);
    }

    /// Moves queued frames into `out` until it holds `high_water` bytes. Returns how many frames
    /// were moved.
    pub(crate) fn drain_into(&self, out: &mut Vec<u8>, high_water: usize) -> usize {
        let mut state = self.lock();
        let mut moved = 0;
        while out.len() < high_water {
            let Some(frame) = state.frames.pop_front() else {
                break;
            };
            out.extend_from_slice(&frame);
            moved += 1;
        }
        if state.frames.is_empty() && state.frames.capacity() > 64 {
            state.frames = VecDeque::new();
        }
        moved
    }

    /// Whether a push overflowed the queue.
    pub(crate) fn overflowed(&self) -> bool {
        self.lock().overflowed
    }

    /// Takes a pending close request.
    pub(crate) fn take_close_request(&self) -> Option<CloseRequest> {
        self.lock().close.take()
    }

    /// Delivers the client's reply to a server-initiated invoke. Unknown ids (e.g. after a
    /// timeout) are ignored.
    pub(crate) fn resolve(&self, cid: CallId, result: Result<Option<Value>, ApiError>) {
        let sender = self.lock().awaiting.remove(&cid);
        if let Some(sender) = sender {
            let _ = sender.send(result);
        }
    }

    /// Marks the connection closed: later pushes fail and waiting invokes end with `Closed`.
    pub(crate) fn mark_closed(&self) {
        let mut state = self.lock();
        state.closed = true;
        state.frames = VecDeque::new();
        state.awaiting = HashMap::new();
    }
}

#[cfg(test)]
impl ConnectionHandle {
    /// A handle with a standalone hub, for unit tests.
    pub(crate) fn for_tests(limit: usize) -> Self {
        Self::new(
            "t".into(),
            "127.0.0.1:1".parse().unwrap(),
            Dialect::SocketCluster,
            Encoding::Json,
            limit,
            Arc::new(Hub::for_tests()),
        )
    }
}

fn to_value(data: impl Serialize) -> Result<Option<Value>, SendError> {
    match serde_json::to_value(data) {
        Ok(Value::Null) => Ok(None),
        Ok(value) => Ok(Some(value)),
        Err(e) => Err(SendError::Encode(e.to_string())),
    }
}

/// Wraps an encoded payload in a complete server-to-client WebSocket frame.
pub(crate) fn frame_bytes(kind: FrameKind, payload: &[u8]) -> Bytes {
    let opcode = match kind {
        FrameKind::Text => OpCode::Text,
        FrameKind::Binary => OpCode::Binary,
    };
    let mut out = Vec::with_capacity(payload.len() + 10);
    frame::write_frame(&mut out, opcode, payload);
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle(limit: usize) -> ConnectionHandle {
        ConnectionHandle::for_tests(limit)
    }

    #[test]
    fn queues_frames_and_drains_them_in_order() {
        let conn = handle(8);
        conn.transmit("a", 1).unwrap();
        conn.transmit("b", serde_json::json!({"x": true})).unwrap();
        let mut out = Vec::new();
        assert_eq!(conn.drain_into(&mut out, usize::MAX), 2);
        let mut expected = Vec::new();
        frame::write_frame(&mut expected, OpCode::Text, br#"{"event":"a","data":1}"#);
        frame::write_frame(
            &mut expected,
            OpCode::Text,
            br#"{"event":"b","data":{"x":true}}"#,
        );
        assert_eq!(out, expected);
    }

    #[test]
    fn overflow_is_reported_and_remembered() {
        let conn = handle(1);
        conn.transmit("a", ()).unwrap();
        assert_eq!(conn.transmit("b", ()), Err(SendError::Overflow));
        assert!(conn.overflowed());
    }

    #[test]
    fn closed_connections_refuse_pushes() {
        let conn = handle(4);
        conn.mark_closed();
        assert_eq!(conn.transmit("a", ()), Err(SendError::Closed));
        assert!(conn.is_closed());
    }

    #[tokio::test]
    async fn invoke_resolves_with_the_reply_and_times_out_without_one() {
        let conn = handle(4);
        let caller = conn.clone();
        let call = tokio::spawn(async move { caller.invoke("q", 1, Duration::from_secs(5)).await });
        tokio::task::yield_now().await;
        let mut out = Vec::new();
        while conn.drain_into(&mut out, usize::MAX) == 0 {
            tokio::task::yield_now().await;
        }
        assert!(out.ends_with(br#"{"event":"q","data":1,"cid":1}"#));
        conn.resolve(1, Ok(Some(serde_json::json!(2))));
        assert_eq!(call.await.unwrap(), Ok(Some(serde_json::json!(2))));

        let err = conn
            .invoke("q", (), Duration::from_millis(10))
            .await
            .unwrap_err();
        assert_eq!(err, InvokeError::Timeout(Duration::from_millis(10)));
    }
}
