//! Configuration as plain data: what a TOML file (`sockyard serve --config FILE`) or a Rust
//! program sets. Each section's type belongs to the module it configures; this module gathers
//! them into [`Config`], re-exports them so the whole reference reads in one place, parses and
//! validates. Every field documents its default; the embedded default file (`sockyard config`)
//! lists every key.
//!
//! [`Config::default`] is the demo application (the embedded default of `sockyard serve`): five
//! endpoints, the public demo auth key, resources and the `private/*` rule.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use crate::auth::access::AccessRules;
pub use crate::auth::{AuthAlgorithm, AuthConfig, DEMO_AUTH_KEY};
pub use crate::connection::Limits;
pub use crate::demo::{DemoConfig, DEMO_PROTO};
pub use crate::http::{LogFormat, ServerConfig};
pub use crate::protocol::{Dialect, ProtocolVersion};
pub use crate::resource::{ResourceDef, StorageConfig};
pub use crate::room::RoomOptions;
pub use crate::service::{
    ApiRoute, Authorizer, ChannelsConfig, EndpointConfig, EndpointError, ProtobufConfig,
};

use crate::demo;

/// The embedded default configuration: the demo application, every key shown with its default.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// The whole configuration. Keys left out of a file take the defaults of [`Config::default`],
/// which are exactly the values in [`DEFAULT_TOML`].
///
/// **`Config::default()` is the demo application**, not a minimal server: five endpoints
/// (`/socketcluster/`, `/ctproto` trusting `{username}`, `/socketcluster-minbin/`,
/// `/socketcluster-protobuf/`, and `/echo`, raw WebSocket calling `echo`), the public demo auth
/// key (a warning is logged whenever a server runs with it), the demo resources' declarations
/// and the `private/*` rule. A real server sets its own key and endpoints; a TOML text or file
/// says only what differs:
///
/// ```
/// use sockyard::Config;
///
/// let config = Config::from_toml_str(
///     r#"
///     [auth]
///     key = "a-long-random-secret"
///
///     [[endpoint]]
///     path = "/socketcluster/"
///     "#,
///     "example",
/// )
/// .unwrap();
/// assert_eq!(config.endpoints.len(), 1);
/// assert_eq!(Config::default().endpoints.len(), 5);
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct Config {
    /// Listening address, logging and shutdown.
    pub server: ServerConfig,
    /// Per-connection and per-server limits.
    pub limits: Limits,
    /// WebSocket endpoints (`[[endpoint]]` tables). Default: `/socketcluster/`.
    #[serde(rename = "endpoint")]
    pub endpoints: Vec<EndpointConfig>,
    /// Auth tokens: key, algorithm, expiry.
    pub auth: AuthConfig,
    /// Pub/sub settings.
    pub channels: ChannelsConfig,
    /// Who may subscribe, publish and call (`[[access.channel]]`, `[[access.route]]`).
    pub access: AccessRules,
    /// Where resources are stored, and their paging limits.
    pub storage: StorageConfig,
    /// Declared resources (`[[resource]]` tables).
    #[serde(rename = "resource")]
    pub resources: Vec<ResourceDef>,
    /// Rooms: programs wrapped as WebSocket servers (`[[room]]` tables), beside the endpoints.
    #[serde(rename = "room", skip_serializing_if = "Vec::is_empty")]
    pub rooms: Vec<RoomOptions>,
    /// The built-in demo procedures.
    pub demo: DemoConfig,
    /// Directory relative paths in the configuration (e.g. `.proto` files) are resolved
    /// against: the configuration file's directory.
    #[serde(skip)]
    pub base_dir: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server: ServerConfig::default(),
            limits: Limits::default(),
            endpoints: demo::endpoints(),
            auth: AuthConfig::default(),
            channels: ChannelsConfig::default(),
            access: demo::access_rules(),
            storage: StorageConfig::default(),
            resources: demo::resources(),
            rooms: Vec::new(),
            demo: DemoConfig::default(),
            base_dir: None,
        }
    }
}

/// Why a configuration was refused.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The TOML is malformed, has an unknown key or a value of the wrong type.
    #[error("{origin}: invalid config at `{key}`:\n{message}")]
    Parse {
        /// File name or `<embedded default>`.
        origin: String,
        /// Dotted path of the offending key.
        key: String,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A value has the right type but is not acceptable.
    #[error("invalid config at `{key}`: {message}")]
    Invalid {
        /// Dotted path of the offending key.
        key: String,
        /// What is wrong.
        message: String,
    },
}

impl Config {
    /// Reads and validates a TOML file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Self::from_toml_str(&text, &path.display().to_string())?;
        config.base_dir = path.parent().map(Path::to_path_buf);
        Ok(config)
    }

    /// Parses and validates TOML text; `origin` names it in error messages.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let parse_error = |key: String, message: String| ConfigError::Parse {
            origin: origin.to_owned(),
            key,
            message,
        };
        let deserializer = toml::Deserializer::parse(text)
            .map_err(|e| parse_error("(document)".into(), e.to_string()))?;
        let config: Self = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let key = e.path().to_string();
            let mut inner = e.into_inner();
            inner.set_input(Some(text));
            parse_error(key, inner.to_string())
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what the types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: &str| {
            Err(ConfigError::Invalid {
                key: key.to_owned(),
                message: message.to_owned(),
            })
        };
        if self.server.log_level.trim().is_empty() {
            return invalid("server.log_level", "must not be empty");
        }
        if self.server.tls_cert.is_some() != self.server.tls_key.is_some() {
            return invalid(
                "server.tls_cert",
                "tls_cert and tls_key must be given together",
            );
        }
        let limits = &self.limits;
        for (key, value) in [
            ("limits.max_message_bytes", limits.max_message_bytes),
            (
                "limits.max_messages_per_second",
                limits.max_messages_per_second as usize,
            ),
            ("limits.outbound_queue_length", limits.outbound_queue_length),
            ("limits.outbound_queue_bytes", limits.outbound_queue_bytes),
            ("limits.max_reply_bytes", limits.max_reply_bytes),
            ("limits.write_buffer_bytes", limits.write_buffer_bytes),
            ("limits.inbound_queue_bytes", limits.inbound_queue_bytes),
            ("limits.max_connections", limits.max_connections),
            (
                "limits.max_connections_per_ip",
                limits.max_connections_per_ip,
            ),
        ] {
            if value == 0 {
                return invalid(key, "must be greater than 0");
            }
        }
        if limits.http_header_timeout_ms == 0 {
            return invalid("limits.http_header_timeout_ms", "must be greater than 0");
        }
        if limits.write_stall_timeout_ms == 0 {
            return invalid("limits.write_stall_timeout_ms", "must be greater than 0");
        }
        if self.channels.max_subscriptions == 0
            || self.channels.max_subscription_bytes == 0
            || self.channels.max_channel_name_bytes == 0
        {
            return invalid("channels", "limits must be greater than 0");
        }
        if self.storage.max_limit == 0 || self.storage.default_limit > self.storage.max_limit {
            return invalid(
                "storage.default_limit",
                "must be at most storage.max_limit, which must be above 0",
            );
        }
        for (i, resource) in self.resources.iter().enumerate() {
            if let Err(err) = resource.check() {
                return invalid(&format!("resource[{i}]"), &err.message);
            }
        }
        if self.auth.default_expiry_s == 0 {
            return invalid("auth.default_expiry_s", "must be greater than 0");
        }
        if matches!(
            self.auth.algorithm,
            AuthAlgorithm::RS256 | AuthAlgorithm::ES256
        ) && (self.auth.private_key_file.is_empty() || self.auth.public_key_file.is_empty())
        {
            return invalid(
                "auth.private_key_file",
                "RS256 and ES256 need both private_key_file and public_key_file",
            );
        }
        if self.endpoints.is_empty() {
            return invalid("endpoint", "at least one [[endpoint]] is required");
        }
        let mut paths = HashSet::new();
        for (i, endpoint) in self.endpoints.iter().enumerate() {
            let key = |field: &str| format!("endpoint[{i}].{field}");
            if !endpoint.path.starts_with('/') {
                return invalid(&key("path"), "must start with `/`");
            }
            if matches!(endpoint.path.as_str(), "/health" | "/metrics") {
                return invalid(&key("path"), "is reserved for the HTTP API");
            }
            if !paths.insert(endpoint.path.as_str()) {
                return invalid(&key("path"), "is used by another endpoint");
            }
            if endpoint.dialect == Dialect::Raw
                && endpoint.route.as_deref().is_none_or(str::is_empty)
            {
                return invalid(&key("route"), "is required for a raw endpoint");
            }
            if endpoint.authorize_timeout_ms == 0 {
                return invalid(&key("authorize_timeout_ms"), "must be greater than 0");
            }
            if endpoint.ping_interval_ms == 0 {
                return invalid(&key("ping_interval_ms"), "must be greater than 0");
            }
            if endpoint.ping_interval_ms >= endpoint.ping_timeout_ms {
                return invalid(
                    &key("ping_interval_ms"),
                    "must be below ping_timeout_ms, or clients time out between pings",
                );
            }
        }
        for (i, room) in self.rooms.iter().enumerate() {
            let key = |field: &str| format!("room[{i}].{field}");
            if !room.path.starts_with('/') || !room.path.ends_with('/') || room.path.len() < 3 {
                return invalid(
                    &key("path"),
                    "must start and end with `/`, e.g. \"/rooms/\"",
                );
            }
            if self
                .endpoints
                .iter()
                .any(|e| e.path.starts_with(&room.path))
                || !paths.insert(room.path.as_str())
            {
                return invalid(&key("path"), "overlaps an endpoint or another [[room]]");
            }
            if let Err(problem) = room.check() {
                return invalid(&key("command"), &problem.to_string());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_equals_the_coded_defaults() {
        let parsed = Config::from_toml_str(DEFAULT_TOML, "<embedded default>").unwrap();
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn embedded_default_documents_every_key() {
        // Serialising the defaults lists every key; each must appear in the embedded file.
        let all = toml::to_string(&Config::default()).unwrap();
        for line in all.lines() {
            if let Some((key, _)) = line.split_once(" = ") {
                let key = key.trim();
                // Documented as `key = …` on its own line or inside an inline table.
                let documented = DEFAULT_TOML.lines().any(|l| {
                    let l = l.trim_start();
                    !l.starts_with('#')
                        && (l.starts_with(&format!("{key} = "))
                            || l.contains(&format!(" {key} = ")))
                });
                assert!(
                    documented,
                    "key `{key}` is missing from config/default.toml"
                );
            }
        }
    }

    #[test]
    fn empty_file_means_defaults() {
        assert_eq!(Config::from_toml_str("", "t").unwrap(), Config::default());
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = Config::from_toml_str("[limits]\nmax_frame = 5\n", "my.toml").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("my.toml"), "{text}");
        assert!(text.contains("max_frame"), "{text}");
        assert!(text.contains("line 2"), "{text}");
    }

    #[test]
    fn bad_values_are_named() {
        let err = Config::from_toml_str("[server]\nlisten = \"nowhere\"\n", "t").unwrap_err();
        assert!(err.to_string().contains("`server.listen`"), "{err}");
        let err = Config::from_toml_str("[limits]\nmax_message_bytes = -1\n", "t").unwrap_err();
        assert!(
            err.to_string().contains("`limits.max_message_bytes`"),
            "{err}"
        );
        let err = Config::from_toml_str("[[endpoint]]\npath = \"/a\"\ncodec = \"xml\"\n", "t")
            .unwrap_err();
        assert!(err.to_string().contains("`endpoint[0].codec`"), "{err}");
        let err = Config::from_toml_str("[limits]\noutbound_queue_length = 0\n", "t").unwrap_err();
        assert!(
            err.to_string().contains("`limits.outbound_queue_length`"),
            "{err}"
        );
    }

    #[test]
    fn tls_files_come_in_pairs_and_the_header_deadline_is_positive() {
        let err = Config::from_toml_str("[server]\ntls_cert = \"c.pem\"\n", "t").unwrap_err();
        assert!(err.to_string().contains("`server.tls_cert`"), "{err}");
        let err = Config::from_toml_str("[server]\ntls_key = \"k.pem\"\n", "t").unwrap_err();
        assert!(err.to_string().contains("`server.tls_cert`"), "{err}");
        let both = "[server]\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\n";
        assert!(Config::from_toml_str(both, "t").is_ok());
        let err = Config::from_toml_str("[limits]\nhttp_header_timeout_ms = 0\n", "t").unwrap_err();
        assert!(
            err.to_string().contains("`limits.http_header_timeout_ms`"),
            "{err}"
        );
    }

    #[test]
    fn endpoint_rules_are_checked() {
        let err = Config::from_toml_str(
            "[[endpoint]]\npath = \"/a\"\nping_interval_ms = 5000\nping_timeout_ms = 5000\n",
            "t",
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("endpoint[0].ping_interval_ms"),
            "{err}"
        );
        let err = Config::from_toml_str(
            "[[endpoint]]\npath = \"/a\"\n[[endpoint]]\npath = \"/a\"\n",
            "t",
        )
        .unwrap_err();
        assert!(err.to_string().contains("endpoint[1].path"), "{err}");
        let err = Config::from_toml_str("[[endpoint]]\npath = \"a\"\n", "t").unwrap_err();
        assert!(err.to_string().contains("must start with"), "{err}");
        let err = Config::from_toml_str("[[endpoint]]\npath = \"/a\"\ndialect = \"raw\"\n", "t")
            .unwrap_err();
        assert!(err.to_string().contains("endpoint[0].route"), "{err}");
        let raw = Config::from_toml_str(
            "[[endpoint]]\npath = \"/a\"\ndialect = \"raw\"\nroute = \"echo\"\n",
            "t",
        )
        .unwrap();
        assert_eq!(raw.endpoints[0].route.as_deref(), Some("echo"));
        let ok = Config::from_toml_str(
            "[[endpoint]]\npath = \"/v1\"\nprotocol_version = \"1\"\n",
            "t",
        )
        .unwrap();
        assert_eq!(ok.endpoints[0].protocol_version, ProtocolVersion::V1);
    }
}
