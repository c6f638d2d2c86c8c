//! Error types: [`ApiError`], the error a client receives in a reply, and the crate-level
//! [`Error`] that gathers each layer's own enum.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use thiserror::Error;

/// An error sent back to a caller as an error reply.
///
/// On the wire it is SocketCluster's "dehydrated" error: `{"name", "message", ...extra}`. The
/// `name` is stable and meant for programs (`NotFound`, `BadRequest`, `InternalError`, or a name
/// of the application's choosing); `message` is for people. Extra fields travel alongside, as
/// with a JavaScript error's own properties. A stack trace is never sent.
///
/// ```
/// use sockyard::ApiError;
/// let err = ApiError::new("QuotaExceeded", "too many widgets").with("limit", 10);
/// assert_eq!(
///     serde_json::to_string(&err).unwrap(),
///     r#"{"name":"QuotaExceeded","message":"too many widgets","limit":10}"#
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiError {
    /// Stable, machine-readable error name.
    pub name: Cow<'static, str>,
    /// Human-readable description.
    #[serde(default)]
    pub message: String,
    /// Further fields sent with the error (e.g. `code`, `errors`).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ApiError {
    /// Name of the error sent when no route matches a call.
    pub const NOT_FOUND: &'static str = "NotFound";
    /// Name of the error sent when a payload cannot be decoded into the handler's type.
    pub const BAD_REQUEST: &'static str = "BadRequest";
    /// Name of the error sent when a handler panics or fails unexpectedly.
    pub const INTERNAL: &'static str = "InternalError";
    /// Name of the error a client sees when a call it made timed out.
    pub const TIMEOUT: &'static str = "TimeoutError";

    /// An error with the given name and message and no extra fields.
    pub fn new(name: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            message: message.into(),
            extra: Map::new(),
        }
    }

    /// Adds an extra field. A value that cannot be represented as JSON is sent as `null`.
    #[must_use]
    pub fn with(mut self, key: impl Into<String>, value: impl Serialize) -> Self {
        self.extra.insert(
            key.into(),
            serde_json::to_value(value).unwrap_or(Value::Null),
        );
        self
    }

    /// `NotFound`: nothing answers to this route.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(Self::NOT_FOUND, message)
    }

    /// `BadRequest`: the payload does not fit what the handler expects.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(Self::BAD_REQUEST, message)
    }

    /// `InternalError`: something failed on the server; details stay in the server's log.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(Self::INTERNAL, message)
    }

    /// Reads an error sent by a peer, which may be any JSON value: an object with or without
    /// `name`/`message`, or a bare string (SocketCluster sends non-object errors as they are).
    pub fn from_value(value: Value) -> Self {
        match value {
            Value::Object(mut map) => {
                let name = match map.remove("name") {
                    Some(Value::String(name)) => name,
                    _ => "Error".to_owned(),
                };
                let message = match map.remove("message") {
                    Some(Value::String(message)) => message,
                    Some(other) => other.to_string(),
                    None => String::new(),
                };
                Self {
                    name: Cow::Owned(name),
                    message,
                    extra: map,
                }
            }
            Value::String(message) => Self::new("Error", message),
            other => Self::new("Error", other.to_string()),
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.name, self.message)
    }
}

impl std::error::Error for ApiError {}

/// Every error the library's fallible setup and client functions return.
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
    /// An endpoint's protobuf types could not be built.
    #[error("endpoint {endpoint}: {source}")]
    Protobuf {
        /// The endpoint's path.
        endpoint: String,
        /// What went wrong.
        source: crate::codec::protobuf::SchemaError,
    },
    /// A file named in the configuration could not be read.
    #[error("cannot read {path}: {source}")]
    ReadFile {
        /// The file.
        path: std::path::PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Resources could not be declared, stored or migrated.
    #[error(transparent)]
    Resource(#[from] crate::resource::ResourceError),
    /// A `[[room]]` cannot run.
    #[error("room {path}: {message}")]
    Room {
        /// The room's path.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The TLS certificate or key cannot be used.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// A client operation failed.
    #[error(transparent)]
    Client(#[from] crate::client::ClientError),
    /// An IO error outside any single connection (for example reading a file named in config).
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// `Result` with the crate's [`enum@Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_peer_errors_of_any_shape() {
        let err =
            ApiError::from_value(json!({"name":"CustomError","message":"bad thing","extra":42}));
        assert_eq!(err.name, "CustomError");
        assert_eq!(err.message, "bad thing");
        assert_eq!(err.extra["extra"], 42);
        assert_eq!(
            ApiError::from_value(json!("oops")),
            ApiError::new("Error", "oops")
        );
        assert_eq!(ApiError::from_value(json!({"message":"x"})).name, "Error");
    }

    #[test]
    fn serializes_flat() {
        let err = ApiError::not_found("Unknown procedure 'nope'");
        assert_eq!(
            serde_json::to_value(&err).unwrap(),
            json!({"name":"NotFound","message":"Unknown procedure 'nope'"})
        );
    }
}
