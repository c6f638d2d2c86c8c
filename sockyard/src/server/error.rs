//! [`Error`]: why a server, or a part it is built from, could not be set up — each layer's own
//! error enum, gathered.

use thiserror::Error;

/// Every error setting up a server can return: reading the configuration, building the routes,
/// the auth keys, the endpoints' codecs, the resources, the rooms and TLS.
#[derive(Debug, Error)]
pub enum Error {
    /// The configuration could not be read or is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// Routes could not be assembled (conflicting or malformed paths).
    #[error(transparent)]
    Router(#[from] crate::router::RouterError),
    /// The auth keys could not be set up.
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthSetupError),
    /// An endpoint's codec could not be set up (a `.proto` file unreadable or invalid).
    #[error(transparent)]
    Endpoint(#[from] crate::service::EndpointError),
    /// Resources could not be declared, stored or migrated.
    #[error(transparent)]
    Resource(#[from] crate::resource::ResourceError),
    /// A `[[room]]` cannot run.
    #[error("room {path}: {problem}")]
    Room {
        /// The room's path.
        path: String,
        /// What is wrong.
        problem: crate::room::OptionsError,
    },
    /// The TLS certificate or key cannot be used.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// An IO error outside any single connection.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// `Result` with the crate's [`enum@Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
