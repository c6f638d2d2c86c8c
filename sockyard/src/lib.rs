//! Sockyard: a realtime API server for WebSocket clients.
//!
//! Clients speak the wire protocols they already use — SocketCluster (v1 and v2) or CTProto —
//! with JSON, MessagePack or protobuf; handlers are plain async Rust functions routed by name or
//! by method and path. Channels, JWT auth, declared CRUD resources and wrapped programs (rooms)
//! come with it. `ARCHITECTURE.md` at the repository's root draws how a frame travels and
//! which module may use which.
//!
//! # A tour of the modules
//!
//! From the wire up:
//!
//! - [`ws`]: WebSocket framing and the upgrade handshake (pure).
//! - [`codec`]: how messages look in a frame: JSON, MessagePack, protobuf (pure).
//! - [`protocol`]: dialects turning frames into [`protocol::Packet`]s and
//!   [`protocol::Outgoing`] messages into frames (pure).
//! - [`auth`]: JWT auth tokens and declarative access rules.
//! - [`exchange`]: channels, fan-out encoded once per format, and the [`Broker`] between nodes.
//! - [`ConnectionHandle`]: one connection as the rest of the server sees it — identity, auth,
//!   channels, a bounded outbound queue.
//! - [`router`]: named and method + path routes, nesting, middleware, typed handlers and their
//!   [`Context`].
//! - [`stages`]: middleware around the protocol (upgrade, handshake, subscribe, publish,
//!   authenticate), as SocketCluster's.
//! - [`resource`]: declared CRUD resources on SQLite or PostgreSQL, with live change events.
//! - [`room`]: programs wrapped as WebSocket servers, one process per room ([`RoomServer`]).
//! - [`Server`]: endpoints, room mounts, `/health` and `/metrics` behind one HTTP front, with
//!   TLS ([`tls`]) and graceful shutdown; [`metrics`] renders its counters.
//! - [`config`]: the TOML configuration, every key with its default.
//! - [`client`]: Rust clients speaking SocketCluster ([`Client`]) and CTProto ([`CtClient`]).
//! - [`demo`]: the demo application the `sockyard` binary serves by default.
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
//! // `Config::default()` is the demo application's configuration; see `config`.
//! Server::new(&Config::default(), routes)?
//!     .serve(listener, async { let _ = tokio::signal::ctrl_c().await; })
//!     .await?;
//! # Ok(())
//! # }
//! ```
//!
//! The library logs through `tracing`; a program shows those lines by installing a subscriber,
//! e.g. `tracing_subscriber::fmt::init()`.

pub mod auth;
pub mod client;
pub mod codec;
pub mod config;
mod connection;
pub mod demo;
mod error;
pub mod exchange;
mod http;
pub mod metrics;
mod peer;
pub mod protocol;
pub mod resource;
pub mod room;
pub mod router;
mod server;
mod service;
pub mod tls;
pub mod ws;

pub use client::{Client, CtClient};
pub use config::Config;
pub use error::ApiError;
pub use exchange::Broker;
pub use futures_util::future::BoxFuture;
pub use peer::{ConnectionHandle, InvokeError, SendError};
pub use resource::{Resources, ResourcesBuilder};
pub use room::RoomServer;
pub use router::{Context, Method, Params, RouteTable, Router};
pub use server::{Error, Result, Server, ServerBuilder, ServerHandle};
pub use service::stages;
pub use stages::Stages;
