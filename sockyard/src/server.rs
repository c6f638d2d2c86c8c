//! The server: accept loop, HTTP routes (`/health`, `/metrics`), WebSocket upgrades on the
//! configured endpoint paths, connection admission and graceful shutdown.
//!
//! The library never binds a port or installs a signal handler: [`Server::serve`] takes a bound
//! listener and a shutdown future, so tests use port 0 and their own signal.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{Authenticator, KeySource};
use crate::codec::protobuf::Schema;
use crate::codec::Codec;
use crate::codec::Encoding;
use crate::config::{ApiRoute, Authorizer, Config, Dialect, EndpointConfig, Limits, DEMO_AUTH_KEY};
use crate::connection::{Connection, ConnectionHandle, CLOSE_GOING_AWAY};
use crate::error::Error;
use crate::exchange::{Broker, BrokerError, Exchange, MemoryBroker};
use crate::hub::Hub;
use crate::metrics::{ErrorKind, Metrics};
use crate::protocol::socketcluster::ProtocolVersion;
use crate::resource::Resources;
use crate::room::http as room_http;
use crate::room::{RoomMetrics, Rooms};
use crate::router::RouteTable;
use crate::stages::{Stages, UpgradeRequest};
use crate::tls::Tls;
use crate::ws::handshake;

/// State every connection of a server shares.
#[derive(Debug)]
pub(crate) struct ServerState {
    pub(crate) limits: Limits,
    pub(crate) metrics: Metrics,
    pub(crate) registry: Registry,
    pub(crate) hub: Arc<Hub>,
    started: Instant,
}

/// One endpoint's settings, resolved from config.
#[derive(Debug)]
pub(crate) struct EndpointState {
    pub(crate) dialect: Dialect,
    /// What `#api` routes answer with (protobuf endpoints).
    pub(crate) api_routes: Vec<ApiRoute>,
    /// Time allowed for the handshake (SocketCluster) or `authorize` (CTProto).
    pub(crate) opening_timeout: Duration,
    pub(crate) authorizer: Authorizer,
    pub(crate) encoding: Encoding,
    pub(crate) version: ProtocolVersion,
    pub(crate) ping_interval: Duration,
    pub(crate) ping_timeout: Duration,
    pub(crate) routes: Arc<RouteTable>,
}

/// A Sockyard server, ready to serve a listener.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use sockyard::{Config, Router, Server, ApiError};
///
/// let routes = Router::new()
///     .procedure("echo", |_ctx, data: serde_json::Value| async move { Ok::<_, ApiError>(data) })
///     .build()?;
/// let server = Server::new(&Config::default(), routes)?;
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// server.serve(listener, async { let _ = tokio::signal::ctrl_c().await; }).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Server {
    state: Arc<ServerState>,
    endpoints: Arc<HashMap<String, Arc<EndpointState>>>,
    /// `[[room]]` mounts, each serving rooms under its path.
    rooms: Arc<Vec<Rooms>>,
    shutdown_timeout: Duration,
    /// Present when the port speaks TLS.
    tls: Option<Tls>,
}

/// Assembles a [`Server`]: routes, middleware stages and the broker.
#[must_use]
pub struct ServerBuilder {
    config: Config,
    routes: Option<RouteTable>,
    stages: Stages,
    broker: Option<Arc<dyn Broker>>,
    resources: Option<Resources>,
}

impl std::fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("stages", &self.stages)
            .finish_non_exhaustive()
    }
}

impl ServerBuilder {
    /// The routes calls are dispatched to (default: none, every call answers `NotFound`).
    pub fn routes(mut self, routes: RouteTable) -> Self {
        self.routes = Some(routes);
        self
    }

    /// The middleware stages (upgrade, handshake, subscribe, publish-in, authenticate,
    /// publish-out).
    pub fn stages(mut self, stages: Stages) -> Self {
        self.stages = stages;
        self
    }

    /// The broker between this node and others (default: in memory, a single node).
    pub fn broker(mut self, broker: Arc<dyn Broker>) -> Self {
        self.broker = Some(broker);
        self
    }

    /// The declared resources, whose change channels then follow the resources' read rules
    /// (their routes come from [`Resources::router`], added to the routes).
    pub fn resources(mut self, resources: Resources) -> Self {
        self.resources = Some(resources);
        self
    }

    /// Builds the server: reads key files and checks the auth setup.
    pub fn build(self) -> Result<Server, Error> {
        let config = self.config;
        let (auth, source) = Authenticator::from_config(&config.auth)?;
        match source {
            KeySource::Random => tracing::warn!(
                "auth.key and ${} are not set: using a random key, so tokens will not survive a restart or verify on other nodes",
                config.auth.key_env
            ),
            KeySource::Config if config.auth.key == DEMO_AUTH_KEY => tracing::warn!(
                "the auth key is the public demo key: anyone can forge tokens; set auth.key or ${} for real use",
                config.auth.key_env
            ),
            _ => {}
        }
        let tls = match (&config.server.tls_cert, &config.server.tls_key) {
            (Some(cert), Some(key)) => Some(Tls::from_pem_files(cert, key)?),
            _ => None,
        };
        let metrics = Metrics::new();
        let broker = self
            .broker
            .unwrap_or_else(|| MemoryBroker::new() as Arc<dyn Broker>);
        let exchange = Exchange::new(
            broker,
            self.stages.publish_out.clone(),
            metrics.exchange_counters(),
        );
        let hub = Arc::new(Hub {
            exchange,
            auth,
            access: config.access.clone(),
            stages: self.stages,
            channels: config.channels.clone(),
            resources: self.resources,
        });
        let mut rooms = Vec::new();
        let room_metrics = RoomMetrics::default();
        for options in &config.rooms {
            let auth = options.require_token.then(|| hub.auth.clone());
            let metrics = room_metrics.mounted(&options.path);
            let mounted =
                Rooms::with_metrics(options.clone(), auth, metrics).map_err(|source| {
                    Error::Room {
                        path: options.path.clone(),
                        source,
                    }
                })?;
            rooms.push(mounted);
        }
        let routes = Arc::new(self.routes.unwrap_or_default());
        let mut endpoints = HashMap::new();
        for endpoint in &config.endpoints {
            let encoding = endpoint_encoding(&config, endpoint)?;
            let state = {
                let opening_timeout = match endpoint.dialect {
                    Dialect::CtProto => endpoint.authorize_timeout_ms,
                    _ => config.limits.handshake_timeout_ms,
                };
                EndpointState {
                    dialect: endpoint.dialect,
                    opening_timeout: Duration::from_millis(opening_timeout),
                    authorizer: endpoint.authorizer,
                    encoding,
                    api_routes: endpoint.protobuf.routes.clone(),
                    version: endpoint.protocol_version,
                    ping_interval: Duration::from_millis(endpoint.ping_interval_ms),
                    ping_timeout: Duration::from_millis(endpoint.ping_timeout_ms),
                    routes: routes.clone(),
                }
            };
            endpoints.insert(endpoint.path.clone(), Arc::new(state));
        }
        Ok(Server {
            state: Arc::new(ServerState {
                limits: config.limits.clone(),
                metrics,
                registry: Registry::default(),
                hub,
                started: Instant::now(),
            }),
            endpoints: Arc::new(endpoints),
            rooms: Arc::new(rooms),
            shutdown_timeout: config.server.shutdown_timeout(),
            tls,
        })
    }
}

impl Server {
    /// Starts assembling a server for `config`.
    pub fn builder(config: &Config) -> ServerBuilder {
        ServerBuilder {
            config: config.clone(),
            routes: None,
            stages: Stages::default(),
            broker: None,
            resources: None,
        }
    }

    /// A server for `config`'s endpoints, all dispatching to `routes`, with no middleware stages
    /// and the in-memory broker.
    pub fn new(config: &Config, routes: RouteTable) -> Result<Self, Error> {
        Self::builder(config).routes(routes).build()
    }

    /// A handle for inspecting the running server (metrics, open connections).
    pub fn handle(&self) -> ServerHandle {
        ServerHandle {
            state: self.state.clone(),
        }
    }

    /// Serves `listener` until `shutdown` completes, then stops accepting, closes every
    /// WebSocket with 1001 after its queued messages, and waits up to
    /// `server.shutdown_timeout_ms` for connections to finish.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let tracker = TaskTracker::new();
        let stopping = CancellationToken::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        let http = HttpConnection {
                            state: self.state.clone(),
                            endpoints: self.endpoints.clone(),
                            rooms: self.rooms.clone(),
                            tracker: tracker.clone(),
                            peer,
                        };
                        let stopping = stopping.clone();
                        let header_timeout = self.state.limits.http_header_timeout();
                        match self.tls.clone() {
                            None => {
                                tracker.spawn(http.serve(stream, stopping));
                            }
                            Some(tls) => {
                                tracker.spawn(async move {
                                    if let Some(stream) = tls.accept(stream, peer, header_timeout).await {
                                        http.serve(stream, stopping).await;
                                    }
                                });
                            }
                        }
                    }
                    Err(err) => {
                        // Out of file descriptors and similar: back off instead of spinning.
                        tracing::warn!(error = %err, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
        drop(listener);
        tracing::info!("shutting down: closing connections");
        stopping.cancel();
        self.state
            .registry
            .close_all(CLOSE_GOING_AWAY, "Server is shutting down");
        for rooms in self.rooms.iter() {
            rooms.shutdown(self.shutdown_timeout).await;
        }
        tracker.close();
        if tokio::time::timeout(self.shutdown_timeout, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                remaining = self.state.registry.open(),
                "shutdown timeout reached with connections still open"
            );
        }
        Ok(())
    }
}

/// Read access to a running server.
#[derive(Debug, Clone)]
pub struct ServerHandle {
    state: Arc<ServerState>,
}

impl ServerHandle {
    /// The server's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.state.metrics
    }

    /// WebSocket connections currently open.
    pub fn open_connections(&self) -> usize {
        self.state.registry.open()
    }

    /// Handles to every open WebSocket connection.
    pub fn connections(&self) -> Vec<ConnectionHandle> {
        self.state.registry.handles()
    }

    /// The open connections for which `predicate` holds, e.g. every connection whose auth data
    /// lists a workspace:
    ///
    /// ```no_run
    /// # fn example(server: &sockyard::ServerHandle) {
    /// let members = server.find(|connection| {
    ///     connection.claims().is_some_and(|claims| {
    ///         claims["workspaceIds"].as_array().is_some_and(|ids| ids.iter().any(|id| id == "123"))
    ///     })
    /// });
    /// for connection in members {
    ///     let _ = connection.transmit("workspace-updated", serde_json::json!({"id": "123"}));
    /// }
    /// # }
    /// ```
    pub fn find(&self, predicate: impl Fn(&ConnectionHandle) -> bool) -> Vec<ConnectionHandle> {
        self.state
            .registry
            .handles()
            .into_iter()
            .filter(|handle| predicate(handle))
            .collect()
    }

    /// Publishes `data` on `channel` to every subscriber.
    pub async fn publish(
        &self,
        channel: &str,
        data: impl serde::Serialize,
    ) -> Result<(), BrokerError> {
        let data = serde_json::to_value(data).map_err(|e| BrokerError(e.to_string()))?;
        self.state.hub.exchange.publish(channel, Some(&data)).await
    }

    /// Local subscribers of `channel`.
    pub fn subscriber_count(&self, channel: &str) -> usize {
        self.state.hub.exchange.subscriber_count(channel)
    }

    /// Signs a token with `claims` using the server's key (as `sockyard token` does).
    pub fn sign_token(&self, claims: crate::auth::Claims) -> Result<String, crate::ApiError> {
        self.state.hub.auth.sign(claims)
    }
}

/// One accepted TCP connection, served as HTTP/1.1 until it upgrades.
struct HttpConnection {
    state: Arc<ServerState>,
    endpoints: Arc<HashMap<String, Arc<EndpointState>>>,
    rooms: Arc<Vec<Rooms>>,
    tracker: TaskTracker,
    peer: SocketAddr,
}

impl HttpConnection {
    async fn serve<S>(self, stream: S, stopping: CancellationToken)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let header_timeout = self.state.limits.http_header_timeout();
        let this = Arc::new(self);
        let service = hyper::service::service_fn(move |request| {
            let this = this.clone();
            async move { Ok::<_, Infallible>(this.respond(request)) }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout);
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        tokio::pin!(connection);
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(error = %err, "HTTP connection ended with an error");
                }
            }
            () = stopping.cancelled() => {
                connection.as_mut().graceful_shutdown();
                let _ = connection.await;
            }
        }
    }

    fn respond(&self, mut request: Request<Incoming>) -> Response<Full<Bytes>> {
        if let Some(endpoint) = self.endpoints.get(request.uri().path()) {
            return self.upgrade(&mut request, endpoint.clone());
        }
        if let Some(response) = self.room_request(&mut request) {
            return response;
        }
        match (request.method(), request.uri().path()) {
            (&http::Method::GET, "/health") => {
                let body = serde_json::json!({
                    "status": "ok",
                    "version": env!("CARGO_PKG_VERSION"),
                    "uptime_seconds": self.state.started.elapsed().as_secs_f64(),
                    "connections": self.state.registry.open(),
                });
                respond(StatusCode::OK, "application/json", body.to_string())
            }
            (&http::Method::GET, "/metrics") => {
                let mut text = self.state.metrics.render();
                // Mounted rooms share one set of families; add them once, before `# EOF`.
                if let Some(rooms) = self.rooms.first() {
                    if let Some(head) = text.strip_suffix("# EOF\n") {
                        text = format!("{head}{}# EOF\n", rooms.metrics().render_families());
                    }
                }
                respond(
                    StatusCode::OK,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    text,
                )
            }
            _ => respond(
                StatusCode::NOT_FOUND,
                "text/plain",
                "Not Found\n".to_owned(),
            ),
        }
    }

    /// A request under a `[[room]]` path: an upgrade into `<path><room>`, or the room API at
    /// `<path>api/…`.
    fn room_request(&self, request: &mut Request<Incoming>) -> Option<Response<Full<Bytes>>> {
        let path = request.uri().path().to_owned();
        let rooms = self
            .rooms
            .iter()
            .find(|rooms| path.starts_with(&rooms.options().path))?;
        let rest = &path[rooms.options().path.len() - 1..];
        if !handshake::wants_upgrade(request.headers()) {
            return Some(match rest.strip_prefix("/api/") {
                Some(api) if request.method() == http::Method::GET => room_http::api(rooms, api),
                _ => respond(
                    StatusCode::NOT_FOUND,
                    "text/plain",
                    "Not Found\n".to_owned(),
                ),
            });
        }
        Some(match room_http::room_of_path(rest) {
            Some(Ok(name)) => {
                let origins = rooms.options().origins.clone();
                room_http::upgrade(rooms, request, self.peer, &name, &origins)
            }
            Some(Err(refusal)) => respond(
                StatusCode::BAD_REQUEST,
                "text/plain",
                format!("{}\n", refusal.message),
            ),
            None => respond(
                StatusCode::NOT_FOUND,
                "text/plain",
                "Not Found\n".to_owned(),
            ),
        })
    }

    fn upgrade(
        &self,
        request: &mut Request<Incoming>,
        endpoint: Arc<EndpointState>,
    ) -> Response<Full<Bytes>> {
        let reject = |status: StatusCode, message: String| {
            self.state.metrics.error(ErrorKind::upgrade_rejected);
            respond(status, "text/plain", message + "\n")
        };
        if !handshake::wants_upgrade(request.headers()) {
            let mut response = reject(
                StatusCode::UPGRADE_REQUIRED,
                "This path accepts WebSocket connections only".to_owned(),
            );
            response
                .headers_mut()
                .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            return response;
        }
        let accept = match handshake::accept(request.method(), request.headers()) {
            Ok(accept) => accept,
            Err(err) => return reject(StatusCode::BAD_REQUEST, err.to_string()),
        };
        if let Some(stage) = &self.state.hub.stages.upgrade {
            let upgrade = UpgradeRequest {
                path: request.uri().path(),
                query: request.uri().query(),
                headers: request.headers(),
                peer: self.peer,
            };
            if let Err(rejection) = stage(&upgrade) {
                let status =
                    StatusCode::from_u16(rejection.status).unwrap_or(StatusCode::UNAUTHORIZED);
                return reject(status, rejection.message);
            }
        }
        let Some(admission) = Registry::admit(&self.state, self.peer.ip()) else {
            return reject(
                StatusCode::SERVICE_UNAVAILABLE,
                "Connection limit reached".to_owned(),
            );
        };
        let on_upgrade = hyper::upgrade::on(request);
        let state = self.state.clone();
        let peer = self.peer;
        self.tracker.spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => run_websocket(upgraded, peer, state, endpoint, admission).await,
                Err(err) => tracing::debug!(error = %err, "upgrade failed"),
            }
        });
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        if let Ok(value) = HeaderValue::from_str(&accept) {
            headers.insert(header::SEC_WEBSOCKET_ACCEPT, value);
        }
        response
    }
}

async fn run_websocket(
    upgraded: hyper::upgrade::Upgraded,
    peer: SocketAddr,
    state: Arc<ServerState>,
    endpoint: Arc<EndpointState>,
    admission: Admission,
) {
    let handle = ConnectionHandle::new(
        new_socket_id(),
        peer,
        endpoint.dialect,
        endpoint.encoding.clone(),
        state.limits.outbound_queue_length,
        state.hub.clone(),
    );
    let registration = state.registry.register(handle.clone(), admission);
    state.metrics.connections.inc();
    state.metrics.connections_open.inc();
    tracing::debug!(connection = handle.id(), %peer, "WebSocket open");
    // The socket itself, not hyper's wrapper, so that an idle connection holds no buffer.
    let owner = SocketOwner {
        handle: handle.clone(),
        state: state.clone(),
        endpoint,
    };
    let ending = match upgraded.downcast::<TokioIo<TcpStream>>() {
        Ok(taken) => owner.serve(taken.io.into_inner(), taken.read_buf).await,
        Err(upgraded) => match upgraded.downcast::<TokioIo<TlsStream<TcpStream>>>() {
            Ok(taken) => owner.serve(taken.io.into_inner(), taken.read_buf).await,
            Err(upgraded) => owner.serve(TokioIo::new(upgraded), Bytes::new()).await,
        },
    };
    state.hub.exchange.unsubscribe_all(&handle).await;
    state.metrics.connections_open.dec();
    drop(registration);
    tracing::debug!(connection = handle.id(), code = ending.code, reason = %ending.reason, "WebSocket closed");
}

/// What a WebSocket connection needs besides its socket.
struct SocketOwner {
    handle: ConnectionHandle,
    state: Arc<ServerState>,
    endpoint: Arc<EndpointState>,
}

impl SocketOwner {
    /// Runs the connection on `io`, starting with the bytes hyper had already read.
    async fn serve<S>(self, io: S, read_buf: Bytes) -> crate::connection::Ending
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let connection = Connection::new(io, &read_buf, self.handle, self.state, self.endpoint);
        // `read_buf` shares hyper's whole read buffer: let it go before the connection settles
        // into its (buffer-free) idle state.
        drop(read_buf);
        connection.run().await
    }
}

/// Builds an endpoint's encoding; for protobuf, reads and compiles its `.proto` texts.
fn endpoint_encoding(config: &Config, endpoint: &EndpointConfig) -> Result<Encoding, Error> {
    match endpoint.codec {
        Codec::Json => Ok(Encoding::Json),
        Codec::Msgpack => Ok(Encoding::Msgpack),
        Codec::Protobuf => {
            let settings = &endpoint.protobuf;
            let mut sources = Vec::new();
            for file in &settings.files {
                let path = match &config.base_dir {
                    Some(dir) => dir.join(file),
                    None => std::path::PathBuf::from(file),
                };
                let text = std::fs::read_to_string(&path).map_err(|source| Error::ReadFile {
                    path: path.clone(),
                    source,
                })?;
                sources.push((file.clone(), text));
            }
            for (i, text) in settings.inline.iter().enumerate() {
                sources.push((format!("inline[{i}].proto"), text.clone()));
            }
            let schema =
                Schema::compile(&sources, settings.api, &settings.events).map_err(|source| {
                    Error::Protobuf {
                        endpoint: endpoint.path.clone(),
                        source,
                    }
                })?;
            Ok(Encoding::Protobuf(Arc::new(schema)))
        }
    }
}

/// A socket id as SocketCluster makes them: 20 URL-safe base64 characters (15 random bytes).
fn new_socket_id() -> String {
    use base64::Engine as _;
    let bytes: [u8; 15] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// Open connections: counted in total and per IP for admission, and kept as handles for
/// shutdown and for code that pushes to many connections.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    // Held only for map updates, never across an `.await`.
    state: Mutex<RegistryState>,
}

#[derive(Debug, Default)]
struct RegistryState {
    admitted: usize,
    per_ip: HashMap<IpAddr, usize>,
    live: HashMap<u64, ConnectionHandle>,
    next_key: u64,
    closing: Option<(u16, String)>,
}

/// A reserved connection slot, released when dropped.
#[derive(Debug)]
pub(crate) struct Admission {
    state: Arc<ServerState>,
    ip: IpAddr,
}

/// A registered live connection, removed from the registry when dropped.
#[derive(Debug)]
pub(crate) struct Registration {
    admission: Admission,
    key: u64,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, RegistryState> {
        // Every update is a single insert/remove/count, so a poisoned lock is still consistent.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Reserves a slot for a connection from `ip`, unless a limit is reached.
    fn admit(state: &Arc<ServerState>, ip: IpAddr) -> Option<Admission> {
        let limits = &state.limits;
        let mut registry = state.registry.lock();
        if registry.closing.is_some() || registry.admitted >= limits.max_connections {
            return None;
        }
        let from_ip = registry.per_ip.entry(ip).or_insert(0);
        if *from_ip >= limits.max_connections_per_ip {
            return None;
        }
        *from_ip += 1;
        registry.admitted += 1;
        Some(Admission {
            state: state.clone(),
            ip,
        })
    }

    /// Records a live connection; if the server is already shutting down it is told to close.
    fn register(&self, handle: ConnectionHandle, admission: Admission) -> Registration {
        let mut state = self.lock();
        let key = state.next_key;
        state.next_key += 1;
        if let Some((code, reason)) = &state.closing {
            handle.close(*code, reason);
        }
        state.live.insert(key, handle);
        Registration { admission, key }
    }

    fn open(&self) -> usize {
        self.lock().live.len()
    }

    fn handles(&self) -> Vec<ConnectionHandle> {
        self.lock().live.values().cloned().collect()
    }

    fn close_all(&self, code: u16, reason: &str) {
        let handles = {
            let mut state = self.lock();
            state.closing = Some((code, reason.to_owned()));
            state.live.values().cloned().collect::<Vec<_>>()
        };
        for handle in handles {
            handle.close(code, reason);
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut registry = self.state.registry.lock();
        registry.admitted -= 1;
        if let Some(count) = registry.per_ip.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                registry.per_ip.remove(&self.ip);
            }
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.admission.state.registry.lock().live.remove(&self.key);
    }
}
