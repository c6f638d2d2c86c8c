//! Sockyard: a realtime API server for WebSocket clients.
//!
//! Clients speak the wire protocols they already use (SocketCluster v1/v2 today); handlers are
//! plain async Rust functions routed by name or by method and path.
//!
//! # A tour of the modules
//!
//! - [`server`]: accept loop, HTTP (`/health`, `/metrics`), WebSocket upgrades, shutdown.
//! - [`connection`]: the one type that owns a socket's IO; [`ConnectionHandle`] pushes to it.
//! - [`ws`]: WebSocket framing and the upgrade handshake (pure).
//! - [`protocol`]: dialects turning frames into [`protocol::Packet`]s and back (pure).
//! - [`codec`]: how packets look on the wire (JSON today).
//! - [`router`]: named and method + path routes, nesting, middleware, typed handlers.
//! - [`exchange`]: channels, fan-out and the [`exchange::Broker`] between nodes.
//! - [`auth`]: JWT auth tokens and access rules.
//! - [`stages`]: middleware around the protocol (upgrade, handshake, subscribe, publish,
//!   authenticate).
//! - [`config`]: the TOML configuration, every key with its default.
//! - [`client`]: a Rust client speaking the SocketCluster protocol.
//! - [`demo`]: the demo procedures the `sockyard` binary serves by default.
//! - [`metrics`]: counters rendered at `/metrics`.
//!
//! # Example
//!
//! ```no_run
//! use sockyard::{ApiError, Config, Context, Router, Server};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let routes = Router::new()
//!     .procedure("hello", |_ctx: Context, name: String| async move {
//!         Ok::<_, ApiError>(format!("hello, {name}"))
//!     })
//!     .build()?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8000").await?;
//! Server::new(&Config::default(), routes)?
//!     .serve(listener, async { let _ = tokio::signal::ctrl_c().await; })
//!     .await?;
//! # Ok(())
//! # }
//! ```

mod api;
pub mod auth;
pub mod client;
pub mod codec;
pub mod config;
pub mod connection;
mod context;
pub mod demo;
mod error;
pub mod exchange;
mod hub;
pub mod metrics;
pub mod protocol;
pub mod resource;
pub mod room;
pub mod router;
pub mod server;
pub mod stages;
pub mod tls;
pub mod ws;

pub use config::Config;
pub use connection::ConnectionHandle;
pub use context::{Context, Params};
pub use error::{ApiError, Error, Result};
pub use router::{Method, RouteTable, Router};
pub use server::{Server, ServerBuilder, ServerHandle};
