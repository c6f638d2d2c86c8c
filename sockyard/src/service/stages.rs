//! Middleware stages around the protocol, as SocketCluster's: the HTTP upgrade, the handshake,
//! subscribe, publish-in, authenticate and publish-out. (Calls and transmits have the router's
//! middleware.) Each stage is optional and set in Rust on the server builder.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde_json::Value;

use crate::auth::Claims;
use crate::error::ApiError;
use crate::exchange::{Outbound, PublishOut};
use crate::peer::ConnectionHandle;

/// The future a stage returns.
pub type StageFuture<T> = BoxFuture<'static, T>;

/// What the HTTP-upgrade stage sees.
#[derive(Debug)]
pub struct UpgradeRequest<'a> {
    /// The request path.
    pub path: &'a str,
    /// The query string, if any.
    pub query: Option<&'a str>,
    /// The request headers.
    pub headers: &'a http::HeaderMap,
    /// The peer's address.
    pub peer: SocketAddr,
}

/// Refusal of an HTTP upgrade: answered with `status` (default 401, as SocketCluster) and
/// `message` as the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeRejection {
    /// HTTP status code.
    pub status: u16,
    /// Body text.
    pub message: String,
}

impl UpgradeRejection {
    /// A 401 rejection with `message`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self {
            status: 401,
            message: message.into(),
        }
    }
}

/// What the handshake stage sees: the new connection and the outcome of its token.
#[derive(Debug, Clone)]
pub struct HandshakeRequest {
    /// The connection.
    pub connection: ConnectionHandle,
    /// The claims of a valid token sent with the handshake.
    pub claims: Option<Arc<Claims>>,
    /// Why the token sent with the handshake was refused.
    pub auth_error: Option<ApiError>,
}

/// Default close code after a handshake is rejected.
pub const CLOSE_HANDSHAKE_REJECTED: u16 = 4008;

/// Refusal of a handshake: the client gets `error` as the handshake's error reply (with
/// `statusCode`), then the socket closes with `close_code` (≥ 4500 stops the official client
/// from reconnecting).
#[derive(Debug, Clone, PartialEq)]
pub struct HandshakeRejection {
    /// The error reply.
    pub error: ApiError,
    /// The close code; default 4008.
    pub close_code: u16,
}

impl HandshakeRejection {
    /// A rejection with `error`, closing with 4008.
    pub fn new(error: ApiError) -> Self {
        Self {
            error,
            close_code: CLOSE_HANDSHAKE_REJECTED,
        }
    }

    /// Sets the close code.
    #[must_use]
    pub fn close_code(mut self, code: u16) -> Self {
        self.close_code = code;
        self
    }
}

/// A subscribe or publish-in request as the stage sees it; the stage may change `data`.
#[derive(Debug, Clone)]
pub struct ChannelRequest {
    /// The connection.
    pub connection: ConnectionHandle,
    /// The channel.
    pub channel: String,
    /// Subscription data or published data.
    pub data: Option<Value>,
}

type UpgradeStage = Arc<dyn Fn(&UpgradeRequest<'_>) -> Result<(), UpgradeRejection> + Send + Sync>;
type HandshakeStage =
    Arc<dyn Fn(HandshakeRequest) -> StageFuture<Result<(), HandshakeRejection>> + Send + Sync>;
type ChannelStage =
    Arc<dyn Fn(ChannelRequest) -> StageFuture<Result<ChannelRequest, ApiError>> + Send + Sync>;
type AuthorizeStage =
    Arc<dyn Fn(ConnectionHandle, Value) -> StageFuture<Result<Claims, ApiError>> + Send + Sync>;
type AuthenticateStage =
    Arc<dyn Fn(ConnectionHandle, Arc<Claims>) -> StageFuture<Result<(), ApiError>> + Send + Sync>;

/// The stages of one server.
///
/// ```
/// use sockyard::exchange::Outbound;
/// use sockyard::stages::{HandshakeRejection, UpgradeRejection};
/// use sockyard::{ApiError, Stages};
///
/// let stages = Stages::new()
///     // Before the 101: plain HTTP refusals.
///     .upgrade(|request| match request.headers.get("x-api-key") {
///         Some(_) => Ok(()),
///         None => Err(UpgradeRejection::unauthorized("an API key is required")),
///     })
///     // The handshake: close with 4501 (the official client then stops reconnecting).
///     .handshake(|request| async move {
///         match request.auth_error {
///             Some(error) => Err(HandshakeRejection::new(error).close_code(4501)),
///             None => Ok(()),
///         }
///     })
///     // Every delivery, for every subscriber.
///     .publish_out(|connection, channel, _data| {
///         if channel.starts_with("staff/") && !connection.is_authenticated() {
///             Outbound::Block
///         } else {
///             Outbound::Deliver
///         }
///     });
/// # let _ = stages;
/// ```
#[derive(Clone, Default)]
pub struct Stages {
    pub(crate) upgrade: Option<UpgradeStage>,
    pub(crate) handshake: Option<HandshakeStage>,
    pub(crate) subscribe: Option<ChannelStage>,
    pub(crate) publish_in: Option<ChannelStage>,
    pub(crate) authenticate: Option<AuthenticateStage>,
    pub(crate) authorize: Option<AuthorizeStage>,
    pub(crate) publish_out: Option<PublishOut<ConnectionHandle>>,
}

impl std::fmt::Debug for Stages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stages")
            .field("upgrade", &self.upgrade.is_some())
            .field("handshake", &self.handshake.is_some())
            .field("subscribe", &self.subscribe.is_some())
            .field("publish_in", &self.publish_in.is_some())
            .field("authenticate", &self.authenticate.is_some())
            .field("authorize", &self.authorize.is_some())
            .field("publish_out", &self.publish_out.is_some())
            .finish()
    }
}

impl Stages {
    /// No stages.
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks each WebSocket upgrade request before it is accepted (SocketCluster's
    /// `HANDSHAKE_WS`). A rejection is answered with its HTTP status.
    #[must_use]
    pub fn upgrade(
        mut self,
        stage: impl Fn(&UpgradeRequest<'_>) -> Result<(), UpgradeRejection> + Send + Sync + 'static,
    ) -> Self {
        self.upgrade = Some(Arc::new(stage));
        self
    }

    /// Checks each protocol handshake before it is answered (SocketCluster's `HANDSHAKE_SC`).
    #[must_use]
    pub fn handshake<F, Fut>(mut self, stage: F) -> Self
    where
        F: Fn(HandshakeRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandshakeRejection>> + Send + 'static,
    {
        self.handshake = Some(Arc::new(move |request| Box::pin(stage(request))));
        self
    }

    /// Checks each subscription after the access rules (SocketCluster's `SUBSCRIBE`).
    #[must_use]
    pub fn subscribe<F, Fut>(mut self, stage: F) -> Self
    where
        F: Fn(ChannelRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<ChannelRequest, ApiError>> + Send + 'static,
    {
        self.subscribe = Some(Arc::new(move |request| Box::pin(stage(request))));
        self
    }

    /// Checks (and may rewrite) each client publication after the access rules (SocketCluster's
    /// `PUBLISH_IN`).
    #[must_use]
    pub fn publish_in<F, Fut>(mut self, stage: F) -> Self
    where
        F: Fn(ChannelRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<ChannelRequest, ApiError>> + Send + 'static,
    {
        self.publish_in = Some(Arc::new(move |request| Box::pin(stage(request))));
        self
    }

    /// Checks a valid token sent with `#authenticate` before the connection takes it
    /// (SocketCluster's `AUTHENTICATE`). A refusal is answered
    /// `{isAuthenticated: false, authError}` and the token is not removed from the client.
    #[must_use]
    pub fn authenticate<F, Fut>(mut self, stage: F) -> Self
    where
        F: Fn(ConnectionHandle, Arc<Claims>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), ApiError>> + Send + 'static,
    {
        self.authenticate = Some(Arc::new(move |connection, claims| {
            Box::pin(stage(connection, claims))
        }));
        self
    }

    /// Checks CTProto's `authorize` payload in place of the endpoint's configured authorizer.
    /// The claims it returns become the connection's auth data (sent back as the reply); an
    /// error closes the socket with 1008 `"Authorization failed: <message>"`.
    #[must_use]
    pub fn authorize<F, Fut>(mut self, stage: F) -> Self
    where
        F: Fn(ConnectionHandle, Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Claims, ApiError>> + Send + 'static,
    {
        self.authorize = Some(Arc::new(move |connection, payload| {
            Box::pin(stage(connection, payload))
        }));
        self
    }

    /// Decides, for every subscriber of every publication, whether it is delivered, blocked or
    /// replaced (SocketCluster's `PUBLISH_OUT`). Runs synchronously during fan-out: keep it quick.
    #[must_use]
    pub fn publish_out(
        mut self,
        stage: impl Fn(&ConnectionHandle, &str, &Value) -> Outbound + Send + Sync + 'static,
    ) -> Self {
        self.publish_out = Some(Arc::new(stage));
        self
    }
}
