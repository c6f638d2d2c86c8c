//! The server: endpoints, `[[room]]` mounts, `/health` and `/metrics` behind the shared HTTP
//! front, connection admission and graceful shutdown.
//!
//! The library never binds a port or installs a signal handler: [`Server::serve`] takes a bound
//! listener and a shutdown future, so tests use port 0 and their own signal.

mod error;
mod registry;
mod site;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;

pub use error::{Error, Result};

use crate::auth::{Authenticator, Claims, KeySource, DEMO_AUTH_KEY};
use crate::config::Config;
use crate::connection::{self, CLOSE_GOING_AWAY};
use crate::error::ApiError;
use crate::exchange::{Broker, BrokerError, Exchange, MemoryBroker};
use crate::http::Front;
use crate::metrics::Metrics;
use crate::peer::{Common, ConnectionHandle};
use crate::resource::Resources;
use crate::room::{RoomMetrics, Rooms};
use crate::router::RouteTable;
use crate::service::stages::Stages;
use crate::service::{Endpoint, Services};
use crate::tls::Tls;
use registry::Registry;
use site::ServeSite;

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
    shared: Arc<connection::Shared>,
    registry: Arc<Registry>,
    endpoints: HashMap<String, Arc<Endpoint>>,
    /// `[[room]]` mounts, each serving rooms under its path.
    rooms: Vec<Rooms>,
    shutdown_timeout: Duration,
    /// Present when the port speaks TLS.
    tls: Option<Tls>,
    started: Instant,
}

/// Assembles a [`Server`]: routes, middleware stages, resources and the broker.
///
/// ```
/// use sockyard::{ApiError, Config, Router, Server, Stages};
///
/// let routes = Router::new()
///     .procedure("echo", |_ctx, data: serde_json::Value| async move { Ok::<_, ApiError>(data) })
///     .build()
///     .unwrap();
/// let stages = Stages::new().publish_in(|request| async move {
///     if request.channel.starts_with("readonly/") {
///         return Err(ApiError::new("Forbidden", "read-only channel"));
///     }
///     Ok(request)
/// });
/// let server = Server::builder(&Config::default()).routes(routes).stages(stages).build();
/// assert!(server.is_ok());
/// ```
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

    /// The declared resources: their routes ([`Resources::router`]) are mounted beside the
    /// application's (where both answer the same name or path, the application's route wins),
    /// and their change channels follow the resources' read rules.
    pub fn resources(mut self, resources: Resources) -> Self {
        self.resources = Some(resources);
        self
    }

    /// Builds the server: reads key files and `.proto` files, and checks the auth setup.
    pub fn build(self) -> Result<Server, Error> {
        let config = self.config;
        let (auth, source) =
            Authenticator::from_config_in(&config.auth, config.base_dir.as_deref())?;
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
        let common = Arc::new(Common {
            exchange,
            auth,
            access: config.access.clone(),
        });
        let mut rooms = Vec::new();
        let room_metrics = RoomMetrics::default();
        for options in &config.rooms {
            let auth = options.require_token.then(|| common.auth.clone());
            let metrics = room_metrics.mounted(&options.path);
            let mounted =
                Rooms::with_metrics(options.clone(), auth, metrics).map_err(|problem| {
                    Error::Room {
                        path: options.path.clone(),
                        problem,
                    }
                })?;
            rooms.push(mounted);
        }
        let mut routes = self.routes.unwrap_or_default();
        if let Some(resources) = &self.resources {
            routes.add_missing(resources.router().build()?);
        }
        let routes = Arc::new(routes);
        let handshake_timeout = Duration::from_millis(config.limits.handshake_timeout_ms);
        let mut endpoints = HashMap::new();
        for endpoint in &config.endpoints {
            let resolved = Endpoint::new(
                endpoint,
                handshake_timeout,
                config.limits.max_reply_bytes,
                config.base_dir.as_deref(),
                routes.clone(),
            )?;
            endpoints.insert(endpoint.path.clone(), Arc::new(resolved));
        }
        let services = Arc::new(Services {
            common,
            stages: self.stages,
            channels: config.channels.clone(),
            resources: self.resources,
        });
        Ok(Server {
            registry: Arc::new(Registry::new(&config.limits)),
            shared: Arc::new(connection::Shared {
                limits: config.limits.clone(),
                metrics,
                services,
            }),
            endpoints,
            rooms,
            shutdown_timeout: config.server.shutdown_timeout(),
            tls,
            started: Instant::now(),
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
            shared: self.shared.clone(),
            registry: self.registry.clone(),
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
        let front = Front::new(self.tls.clone(), self.shared.limits.http_header_timeout());
        let site = Arc::new(ServeSite {
            shared: self.shared.clone(),
            registry: self.registry.clone(),
            endpoints: self.endpoints,
            rooms: self.rooms.clone(),
            tracker: front.tracker().clone(),
            started: self.started,
        });
        front.accept(listener, site, shutdown).await;
        tracing::info!("shutting down: closing connections");
        front.stop_http();
        self.registry
            .close_all(CLOSE_GOING_AWAY, "Server is shutting down");
        for rooms in &self.rooms {
            rooms.shutdown(self.shutdown_timeout).await;
        }
        if !front.drain(self.shutdown_timeout).await {
            tracing::warn!(
                remaining = self.registry.open(),
                "shutdown timeout reached with connections still open"
            );
        }
        Ok(())
    }
}

/// Read access to a running server.
#[derive(Debug, Clone)]
pub struct ServerHandle {
    shared: Arc<connection::Shared>,
    registry: Arc<Registry>,
}

impl ServerHandle {
    /// The server's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// WebSocket connections currently open.
    pub fn open_connections(&self) -> usize {
        self.registry.open()
    }

    /// Handles to every open WebSocket connection.
    pub fn connections(&self) -> Vec<ConnectionHandle> {
        self.registry.handles()
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
        self.registry
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
        self.exchange().publish(channel, Some(&data)).await
    }

    /// Local subscribers of `channel`.
    pub fn subscriber_count(&self, channel: &str) -> usize {
        self.exchange().subscriber_count(channel)
    }

    /// Signs a token with `claims` using the server's key (as `sockyard token` does).
    pub fn sign_token(&self, claims: Claims) -> Result<String, ApiError> {
        self.shared.services.common.auth.sign(claims)
    }

    fn exchange(&self) -> &Exchange<ConnectionHandle> {
        &self.shared.services.common.exchange
    }
}
