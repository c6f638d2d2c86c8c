//! A Rust client for the SocketCluster protocol: connect and handshake, invoke with a timeout,
//! transmit, receive the server's transmits and invokes, answer pings, reconnect with backoff.
//! [`ctproto`] holds the client for CTProto endpoints.
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
mod driver;
mod events;
mod handle;
mod options;
mod pending;
mod socket;
mod wire;

use std::sync::{Mutex, MutexGuard, PoisonError};

use thiserror::Error;

use crate::error::ApiError;

pub use ctproto::CtClient;
pub use driver::CLOSE_PING_TIMEOUT;
pub use events::{ClientEvent, Events, IncomingCall};
pub use handle::Client;
pub use options::{Backoff, ClientOptions};

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

/// Locks `mutex`, taking over the data of one whose holder panicked (the clients' shared state
/// stays usable: every update to it is a single step).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
