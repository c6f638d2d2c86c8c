//! The far end of one connection as the server's code sees it: [`ConnectionHandle`], a
//! cheap-clone handle with the connection's identity, its auth state, its channels, its bounded
//! outbound queue and its table of server-initiated calls awaiting a reply. Any task may push
//! through it; only the connection's own task writes to the socket (through the methods of
//! `outbox.rs`).

mod outbox;

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

use crate::auth::access::AccessRules;
use crate::auth::{now_seconds, Authenticator, Claims};
use crate::error::ApiError;
use crate::exchange::{Delivery, Exchange, SubscribeError, Subscriber, SubscriptionLimits};
use crate::protocol::{CallId, EncodeError, Format, FormatKey, Outgoing};

pub(crate) use outbox::CloseRequest;

/// What every connection handle of one server shares: the channel exchange, the token keys and
/// the access rules (a handle signs tokens, leaves channels and re-checks its subscriptions when
/// it loses its authentication).
#[derive(Debug)]
pub(crate) struct Common {
    pub(crate) exchange: Exchange<ConnectionHandle>,
    pub(crate) auth: Authenticator,
    pub(crate) access: AccessRules,
}

/// How much other tasks may queue for one connection (`limits.outbound_queue_length` and
/// `limits.outbound_queue_bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QueueLimits {
    pub(crate) frames: usize,
    pub(crate) bytes: usize,
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

impl From<EncodeError> for SendError {
    fn from(err: EncodeError) -> Self {
        match err {
            EncodeError::Unsupported => Self::Unsupported,
            other => Self::Encode(other.to_string()),
        }
    }
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

type ReplySender = oneshot::Sender<Result<Option<Value>, ApiError>>;

/// State shared between the connection task and every handle. Guarded by a `std` mutex: it is
/// never held across an `.await`.
#[derive(Debug, Default)]
struct State {
    /// Complete, encoded WebSocket frames waiting for the connection task.
    frames: VecDeque<Bytes>,
    /// Bytes of `frames`.
    queued_bytes: usize,
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
    /// Bytes of their names.
    subscription_bytes: usize,
}

#[derive(Debug)]
struct Shared {
    id: Box<str>,
    key: u64,
    remote_addr: SocketAddr,
    format: Format,
    common: Arc<Common>,
    limits: QueueLimits,
    next_cid: AtomicU64,
    state: Mutex<State>,
    waker: AtomicWaker,
}

/// A handle to one live connection, cheap to clone and usable from any task.
///
/// Pushes are encoded by the caller and queued; the connection's task writes them out in
/// batches. The queue is bounded in frames and in bytes (`limits.outbound_queue_length`,
/// `limits.outbound_queue_bytes`): a connection that does not keep up is closed with code 4400
/// rather than allowed to grow without limit.
///
/// Handlers reach it through their context:
///
/// ```
/// use sockyard::{ApiError, Context, Router};
///
/// let routes = Router::new().procedure("notify", |ctx: Context, text: String| async move {
///     let connection = ctx.connection();
///     connection
///         .transmit("notice", serde_json::json!({ "text": text, "to": connection.id() }))
///         .map_err(|err| ApiError::internal(err.to_string()))?;
///     Ok::<_, ApiError>(())
/// });
/// assert!(routes.build().is_ok());
/// ```
#[derive(Debug, Clone)]
pub struct ConnectionHandle {
    shared: Arc<Shared>,
}

impl ConnectionHandle {
    pub(crate) fn new(
        id: String,
        remote_addr: SocketAddr,
        format: Format,
        limits: QueueLimits,
        common: Arc<Common>,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                id: id.into_boxed_str(),
                key: NEXT_KEY.fetch_add(1, Ordering::Relaxed),
                remote_addr,
                format,
                common,
                limits,
                next_cid: AtomicU64::new(1),
                state: Mutex::new(State::default()),
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

    /// The connection's wire format: its dialect and codec.
    pub fn format(&self) -> &Format {
        &self.shared.format
    }

    /// The services every handle of the server shares.
    pub(crate) fn common(&self) -> &Arc<Common> {
        &self.shared.common
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
    /// connection's auth token and sends it to the client (SocketCluster's `#setAuthToken`).
    /// Returns the token.
    pub fn set_auth_token(&self, claims: Claims) -> Result<String, ApiError> {
        let auth = &self.shared.common.auth;
        let token = auth.sign(claims)?;
        let verified = auth.verify(&token).map_err(|e| e.to_api_error())?;
        self.lock().claims = Some(Arc::new(verified));
        self.send(&Outgoing::TokenSet { token: &token })
            .map_err(|e| ApiError::internal(e.to_string()))?;
        Ok(token)
    }

    /// Drops the connection's authentication and tells the client to remove its token;
    /// subscriptions the connection may no longer hold are kicked out.
    pub fn deauthenticate(&self) {
        if self.lock().claims.take().is_some() {
            let _ = self.send(&Outgoing::TokenRemoved);
            self.revoke_subscriptions();
        }
    }

    /// Forgets the connection's claims without telling the client, and leaves the channels it
    /// may no longer hold.
    pub(crate) fn drop_claims(&self) {
        if self.lock().claims.take().is_some() {
            self.revoke_subscriptions();
        }
    }

    /// After the connection lost its authentication: kicks it out of the channels it may no
    /// longer hold.
    fn revoke_subscriptions(&self) {
        for channel in self.subscriptions() {
            if let Err(err) = self.shared.common.access.check_subscribe(&channel, None) {
                self.kick_out(&channel, &err.message);
            }
        }
    }

    /// Removes the connection from `channel` and tells the client (SocketCluster's `#kickOut`
    /// with `message`).
    pub fn kick_out(&self, channel: &str, message: &str) {
        if !self.lock().subscriptions.contains(channel) {
            return;
        }
        let _ = self.send(&Outgoing::KickOut { channel, message });
        let connection = self.clone();
        let channel = channel.to_owned();
        tokio::spawn(async move {
            let exchange = &connection.shared.common.exchange;
            exchange.unsubscribe(&connection, &channel).await;
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
        self.send(&Outgoing::Event {
            name: event,
            data: data.as_ref(),
            cid: None,
        })
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
        let frame = self.encode(&Outgoing::Event {
            name: event,
            data: data.as_ref(),
            cid: Some(cid),
        })?;
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

    /// Encodes `message` as this connection's format writes it and queues it; a message the
    /// dialect has no form for is silently not sent.
    pub(crate) fn send(&self, message: &Outgoing<'_>) -> Result<(), SendError> {
        match self.shared.format.encode_frame(message)? {
            Some(frame) => self.push(frame),
            None => Ok(()),
        }
    }

    fn encode(&self, message: &Outgoing<'_>) -> Result<Bytes, SendError> {
        self.shared
            .format
            .encode_frame(message)?
            .ok_or(SendError::Unsupported)
    }

    /// Queues one complete, already-encoded WebSocket frame (shared across subscribers).
    pub(crate) fn push(&self, frame: Bytes) -> Result<(), SendError> {
        let wake = {
            let mut state = self.lock();
            if state.closed {
                return Err(SendError::Closed);
            }
            let limits = self.shared.limits;
            if state.frames.len() >= limits.frames
                || state.queued_bytes + frame.len() > limits.bytes
            {
                state.overflowed = true;
                // What is queued will never be written: let it go now.
                state.frames = VecDeque::new();
                state.queued_bytes = 0;
                drop(state);
                self.shared.waker.wake();
                return Err(SendError::Overflow);
            }
            state.queued_bytes += frame.len();
            state.frames.push_back(frame);
            state.frames.len() == 1
        };
        if wake {
            self.shared.waker.wake();
        }
        Ok(())
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

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the queue inconsistent (every update is a
        // single push/pop/insert), so a poisoned lock is still usable.
        self.shared
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Subscriber for ConnectionHandle {
    type Format = FormatKey;
    type EncodeError = SendError;

    fn key(&self) -> u64 {
        self.shared.key
    }

    fn format(&self) -> FormatKey {
        self.shared.format.key()
    }

    fn encode_publication(&self, channel: &str, data: Option<&Value>) -> Result<Bytes, SendError> {
        self.encode(&Outgoing::Publication { channel, data })
    }

    fn push(&self, frame: Bytes) -> Delivery {
        match Self::push(self, frame) {
            Ok(()) => Delivery::Queued,
            Err(SendError::Closed) => Delivery::Gone,
            Err(_) => Delivery::Refused,
        }
    }

    fn add_subscription(
        &self,
        channel: &Arc<str>,
        limits: SubscriptionLimits,
    ) -> Result<bool, SubscribeError> {
        let mut state = self.lock();
        if state.closed {
            return Err(SubscribeError::Closed);
        }
        if state.subscriptions.contains(channel) {
            return Ok(false);
        }
        if state.subscriptions.len() >= limits.count {
            return Err(SubscribeError::Limit(limits.count));
        }
        if state.subscription_bytes + channel.len() > limits.bytes {
            return Err(SubscribeError::NameBytes(limits.bytes));
        }
        state.subscription_bytes += channel.len();
        state.subscriptions.insert(channel.clone());
        Ok(true)
    }

    fn remove_subscription(&self, channel: &str) -> bool {
        let mut state = self.lock();
        let removed = state.subscriptions.remove(channel);
        if removed {
            state.subscription_bytes -= channel.len();
        }
        removed
    }

    fn take_subscriptions(&self) -> Vec<Arc<str>> {
        let mut state = self.lock();
        state.subscription_bytes = 0;
        state.subscriptions.drain().collect()
    }
}

fn to_value(data: impl Serialize) -> Result<Option<Value>, SendError> {
    match serde_json::to_value(data) {
        Ok(Value::Null) => Ok(None),
        Ok(value) => Ok(Some(value)),
        Err(e) => Err(SendError::Encode(e.to_string())),
    }
}

#[cfg(test)]
impl ConnectionHandle {
    /// A SocketCluster JSON handle with standalone services, for unit tests.
    pub(crate) fn for_tests(limit: usize) -> Self {
        let common = Arc::new(Common {
            exchange: Exchange::in_memory(),
            auth: Authenticator::hs256(b"test", Duration::from_secs(3600)),
            access: AccessRules::default(),
        });
        let format = Format {
            dialect: crate::protocol::Dialect::SocketCluster,
            encoding: crate::codec::Encoding::Json,
        };
        let limits = QueueLimits {
            frames: limit,
            bytes: usize::MAX,
        };
        Self::new(
            "t".into(),
            "127.0.0.1:1".parse().unwrap(),
            format,
            limits,
            common,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::frame::{self, OpCode};

    fn handle(limit: usize) -> ConnectionHandle {
        ConnectionHandle::for_tests(limit)
    }

    #[test]
    fn queues_frames_and_drains_them_in_order() {
        let conn = handle(8);
        conn.transmit("a", 1).unwrap();
        conn.transmit("b", serde_json::json!({"x": true})).unwrap();
        let mut out = Vec::new();
        assert_eq!(conn.drain_into(&mut out, usize::MAX).frames, 2);
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
    fn the_queue_is_bounded_in_bytes_and_let_go_on_overflow() {
        let conn = handle(1000);
        let (limits, common, format) = (
            QueueLimits {
                frames: 1000,
                bytes: 100,
            },
            conn.shared.common.clone(),
            conn.format().clone(),
        );
        let conn = ConnectionHandle::new("b".into(), conn.remote_addr(), format, limits, common);
        conn.push(Bytes::from(vec![0; 60])).unwrap();
        conn.push(Bytes::from(vec![0; 40])).unwrap();
        assert_eq!(conn.push(Bytes::from(vec![0; 1])), Err(SendError::Overflow));
        assert!(conn.overflowed());
        // What was queued is released at once: it will never be written.
        let mut out = Vec::new();
        assert_eq!(conn.drain_into(&mut out, usize::MAX).frames, 0);
    }

    #[test]
    fn subscriptions_are_bounded_in_count_and_in_name_bytes() {
        let conn = handle(4);
        let limits = SubscriptionLimits {
            count: 3,
            bytes: 10,
        };
        let channel = |name: &str| Arc::<str>::from(name);
        assert_eq!(conn.add_subscription(&channel("abcd"), limits), Ok(true));
        assert_eq!(conn.add_subscription(&channel("abcd"), limits), Ok(false));
        assert_eq!(conn.add_subscription(&channel("efgh"), limits), Ok(true));
        assert_eq!(
            conn.add_subscription(&channel("ijk"), limits),
            Err(SubscribeError::NameBytes(10))
        );
        assert!(conn.remove_subscription("abcd"));
        assert_eq!(conn.add_subscription(&channel("ijk"), limits), Ok(true));
        assert_eq!(conn.add_subscription(&channel("l"), limits), Ok(true));
        assert_eq!(
            conn.add_subscription(&channel("m"), limits),
            Err(SubscribeError::Limit(3))
        );
        assert_eq!(conn.take_subscriptions().len(), 3);
        assert_eq!(
            conn.add_subscription(&channel("0123456789"), limits),
            Ok(true)
        );
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
        while conn.drain_into(&mut out, usize::MAX).frames == 0 {
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
