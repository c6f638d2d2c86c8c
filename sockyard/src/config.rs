//! Configuration as plain data: what a TOML file (`sockyard serve --config FILE`) or a Rust
//! program sets. Every field documents its default; the embedded default file
//! (`sockyard config`) lists every key.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::auth::access::AccessRules;
use crate::codec::Codec;
use crate::protocol::socketcluster::ProtocolVersion;

pub use crate::resource::StorageConfig;

/// The embedded default configuration: the demo application, every key shown with its default.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// The whole configuration. Keys left out of a file take the defaults of [`Config::default`],
/// which are exactly the values in [`DEFAULT_TOML`].
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
    pub resources: Vec<crate::resource::ResourceDef>,
    /// Rooms: programs wrapped as WebSocket servers (`[[room]]` tables), beside the endpoints.
    #[serde(rename = "room", skip_serializing_if = "Vec::is_empty")]
    pub rooms: Vec<crate::room::RoomOptions>,
    /// The built-in demo procedures.
    pub demo: DemoConfig,
    /// Directory relative paths in the configuration (e.g. `.proto` files) are resolved
    /// against: the configuration file's directory.
    #[serde(skip)]
    pub base_dir: Option<PathBuf>,
}

/// The HS256 key of the embedded demo configuration. It is public, so tokens signed with it
/// prove nothing; a warning is logged whenever a server runs with it.
pub const DEMO_AUTH_KEY: &str = "sockyard-demo-key-not-secret";

/// `[auth]`: how auth tokens (JWT) are signed and verified.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct AuthConfig {
    /// `HS256` (shared key), `RS256` or `ES256` (key files). Default `HS256`.
    pub algorithm: AuthAlgorithm,
    /// The HS256 key. Empty: read the environment variable named by `key_env`; if that is unset
    /// too, a random key is made at start-up (with a warning), so tokens do not survive a
    /// restart. The embedded demo configuration uses a public demo key.
    pub key: String,
    /// Environment variable holding the HS256 key when `key` is empty. Default
    /// `SOCKYARD_AUTH_KEY`.
    pub key_env: String,
    /// PEM private key for RS256/ES256 (signing).
    pub private_key_file: String,
    /// PEM public key for RS256/ES256 (verifying).
    pub public_key_file: String,
    /// Seconds until a token expires when its claims set no `exp`. Default 86400.
    pub default_expiry_s: u64,
}

/// The signing algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[non_exhaustive]
pub enum AuthAlgorithm {
    /// HMAC-SHA256 with a shared key.
    #[default]
    HS256,
    /// RSA PKCS#1 v1.5 with SHA-256.
    RS256,
    /// ECDSA P-256 with SHA-256.
    ES256,
}

/// `[channels]`: pub/sub settings.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct ChannelsConfig {
    /// Whether clients may publish (`#publish`). When false they get `InvalidActionError`
    /// "Client publish feature is disabled"; Rust code can still publish. Default true.
    pub allow_client_publish: bool,
    /// Channels one connection may be subscribed to at once. Default 1000.
    pub max_subscriptions: usize,
    /// Longest channel name in bytes. Default 256.
    pub max_channel_name_bytes: usize,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            algorithm: AuthAlgorithm::HS256,
            key: DEMO_AUTH_KEY.to_owned(),
            key_env: "SOCKYARD_AUTH_KEY".to_owned(),
            private_key_file: String::new(),
            public_key_file: String::new(),
            default_expiry_s: 86_400,
        }
    }
}

impl Default for ChannelsConfig {
    fn default() -> Self {
        Self {
            allow_client_publish: true,
            max_subscriptions: 1000,
            max_channel_name_bytes: 256,
        }
    }
}

/// `[server]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Address to listen on. Default `127.0.0.1:8000`; overridden by `--listen` or
    /// `SOCKYARD_LISTEN`.
    pub listen: SocketAddr,
    /// Log filter: `error`, `warn`, `info`, `debug`, `trace`, or a `tracing` filter directive
    /// such as `sockyard=debug`. Default `info`; overridden by `--log-level` or
    /// `SOCKYARD_LOG_LEVEL`.
    pub log_level: String,
    /// Log line format: `text` or `json`. Default `text`.
    pub log_format: LogFormat,
    /// How long a graceful shutdown waits for connections to drain and close, in milliseconds.
    /// Default 5000.
    pub shutdown_timeout_ms: u64,
    /// PEM certificate chain: with `tls_key`, the port answers `wss://` and `https://` only.
    /// Default none (plain `ws://`); overridden by `--tls-cert` or `SOCKYARD_TLS_CERT`.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_cert`. Default none; overridden by `--tls-key` or
    /// `SOCKYARD_TLS_KEY`.
    pub tls_key: Option<PathBuf>,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[limits]`: every bound Sockyard enforces, with its default.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct Limits {
    /// Largest inbound WebSocket message in bytes (one frame or the sum of its fragments). A
    /// larger one closes the connection with 1009. Default 1048576 (1 MiB).
    pub max_message_bytes: usize,
    /// Packets processed per second per connection (a batch of N counts N). Beyond this,
    /// processing pauses until the budget refills, and reading stops once
    /// `inbound_queue_bytes` are waiting: nothing is dropped, TCP pushes back on the client.
    /// Bursts up to one second's worth are allowed. Default 10000.
    pub max_messages_per_second: u32,
    /// Frames that other tasks (publishes, server pushes) may queue for one connection. When
    /// full, the connection is closed with 4400 as a slow consumer. Default 1024.
    pub outbound_queue_length: usize,
    /// Bytes of encoded replies a connection may have waiting to be written before Sockyard
    /// stops reading its requests (backpressure on a client that does not read). Default
    /// 262144 (256 KiB).
    pub write_buffer_bytes: usize,
    /// Bytes of received messages waiting to be processed (behind a slow handler or the message
    /// budget) before Sockyard stops reading from that socket. Default 1048576 (1 MiB).
    pub inbound_queue_bytes: usize,
    /// Milliseconds a client has to send its handshake after connecting; then 4005. Default
    /// 10000.
    pub handshake_timeout_ms: u64,
    /// Milliseconds a new TCP connection has for the TLS handshake (when TLS is on) and again
    /// for complete HTTP request headers; then it is dropped. Default 10000.
    pub http_header_timeout_ms: u64,
    /// Milliseconds to wait for the client's close frame after sending ours. Default 2000.
    pub close_timeout_ms: u64,
    /// Open WebSocket connections the server accepts in total; beyond it, upgrades get HTTP
    /// 503. Default 100000.
    pub max_connections: usize,
    /// Open WebSocket connections accepted from one IP address; beyond it, HTTP 503. Default
    /// 10000.
    pub max_connections_per_ip: usize,
}

/// One `[[endpoint]]`: a path, the dialect spoken there and its codec.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct EndpointConfig {
    /// URL path matched exactly (SocketCluster clients use `/socketcluster/`, with the slash).
    pub path: String,
    /// Wire dialect. Default `socketcluster`.
    pub dialect: Dialect,
    /// Encoding. Default `json`.
    pub codec: Codec,
    /// SocketCluster protocol version: `"1"`, `"2"` or `"both"` (both pings sent, either pong
    /// accepted). Default `"both"`.
    pub protocol_version: ProtocolVersion,
    /// Milliseconds between server pings. Must be below `ping_timeout_ms`. Default 8000.
    pub ping_interval_ms: u64,
    /// Milliseconds without any message from the client before closing with 4001; also sent
    /// to the client as its own ping watchdog. Default 20000.
    pub ping_timeout_ms: u64,
    /// CTProto: milliseconds a client has to send `authorize` after connecting; then 1013
    /// "Authorization required". (SocketCluster endpoints use `limits.handshake_timeout_ms`.)
    /// Default 3000.
    pub authorize_timeout_ms: u64,
    /// CTProto: how `authorize` payloads are checked: `token` or `token_or_username`. Default
    /// `token`.
    pub authorizer: Authorizer,
    /// Protobuf codec settings (`[endpoint.protobuf]`); used when `codec = "protobuf"`.
    pub protobuf: ProtobufConfig,
}

/// `[endpoint.protobuf]`: the message types of a protobuf endpoint.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct ProtobufConfig {
    /// `.proto` files, relative to the configuration file. Default none.
    pub files: Vec<String>,
    /// `.proto` texts written inline. Default none.
    pub inline: Vec<String>,
    /// Register socketcluster-api's `#api` event (ids 8 and 9, as the original). Default false.
    pub api: bool,
    /// Events with their message types, numbered in order after the built-in ones (and
    /// `#api`): `{ event = "echo", request = ".app.Echo", response = ".app.EchoReply" }`.
    pub events: Vec<crate::codec::protobuf::EventTypes>,
    /// For `#api`: the message type each route answers with, and the type its errors use
    /// (`[[endpoint.protobuf.routes]]` tables).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<ApiRoute>,
}

/// `[[endpoint.protobuf.routes]]`: what a route answers over `#api`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiRoute {
    /// `GET`, `POST`, `PUT`, `PATCH` or `DELETE`.
    pub method: String,
    /// The route's path pattern, as registered (e.g. `/creature/:id`).
    pub path: String,
    /// Full name of the message type of successful results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<String>,
    /// Full name of the message type of errors (their `message` and extra fields fill it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The wire dialect of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Dialect {
    /// SocketCluster protocol v1/v2.
    #[default]
    SocketCluster,
    /// CTProto: `{messageId, type, payload}` with an `authorize` first message.
    CtProto,
}

/// How a CTProto endpoint checks the `authorize` payload (a Rust authorize stage, when set,
/// replaces it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Authorizer {
    /// `{token}`: a token signed with the server's auth key; its claims become the auth data.
    #[default]
    Token,
    /// `{token}`, or `{username}` taken on trust (the demo).
    TokenOrUsername,
}

/// The demo's resources: `creature {name, age ≥ 0}`, `album {title}`, `song {title}` under
/// `album`.
fn demo_resources() -> Vec<crate::resource::ResourceDef> {
    use crate::resource::{FieldDef, FieldType, ResourceDef};
    vec![
        ResourceDef::new(
            "creature",
            [
                ("name", FieldDef::new(FieldType::String).required()),
                ("age", FieldDef::new(FieldType::Integer).min(0.0)),
            ],
        ),
        ResourceDef::new(
            "album",
            [("title", FieldDef::new(FieldType::String).required())],
        ),
        ResourceDef::new(
            "song",
            [("title", FieldDef::new(FieldType::String).required())],
        )
        .parent("album"),
    ]
}

/// `[demo]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct DemoConfig {
    /// Register the demo procedures (`echo`, `login`, `whoami`). `login` gives a token to anyone
    /// who asks: never enable it where that matters. Default `true`.
    pub enabled: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server: ServerConfig::default(),
            limits: Limits::default(),
            endpoints: vec![
                EndpointConfig::default(),
                demo_ctproto_endpoint(),
                demo_minbin_endpoint(),
                demo_protobuf_endpoint(),
            ],
            auth: AuthConfig::default(),
            channels: ChannelsConfig::default(),
            access: demo_access_rules(),
            storage: StorageConfig::default(),
            resources: demo_resources(),
            rooms: Vec::new(),
            demo: DemoConfig::default(),
            base_dir: None,
        }
    }
}

/// The demo's CTProto endpoint at `/ctproto`, accepting `{token}` or `{username}`.
fn demo_ctproto_endpoint() -> EndpointConfig {
    EndpointConfig {
        path: "/ctproto".to_owned(),
        dialect: Dialect::CtProto,
        authorizer: Authorizer::TokenOrUsername,
        ..EndpointConfig::default()
    }
}

/// The demo's MessagePack endpoint (as `sc-codec-min-bin`).
fn demo_minbin_endpoint() -> EndpointConfig {
    EndpointConfig {
        path: "/socketcluster-minbin/".to_owned(),
        codec: Codec::Msgpack,
        ..EndpointConfig::default()
    }
}

/// The `.proto` text of the demo's protobuf endpoint (socketcluster-api's example).
pub const DEMO_PROTO: &str = include_str!("../config/demo.proto");

/// The demo's protobuf endpoint: socketcluster-api's `#api` with `GET /resource` answering
/// `.app.ResponseMessage` and `GET /fail` failing with `.app.SomeError`.
fn demo_protobuf_endpoint() -> EndpointConfig {
    let route = |path: &str| ApiRoute {
        method: "GET".to_owned(),
        path: path.to_owned(),
        response: Some(".app.ResponseMessage".to_owned()),
        error: Some(".app.SomeError".to_owned()),
    };
    EndpointConfig {
        path: "/socketcluster-protobuf/".to_owned(),
        codec: Codec::Protobuf,
        protobuf: ProtobufConfig {
            files: Vec::new(),
            inline: vec![DEMO_PROTO.to_owned()],
            api: true,
            events: Vec::new(),
            routes: [route("/resource"), route("/fail")]
                .into_iter()
                .chain(demo_creature_routes())
                .collect(),
        },
        ..EndpointConfig::default()
    }
}

/// `#api` routes for the demo's `creature` resource.
fn demo_creature_routes() -> Vec<ApiRoute> {
    [
        ("POST", "/creature", ".app.Creature"),
        ("GET", "/creature", ".app.CreaturePage"),
        ("GET", "/creature/:id", ".app.Creature"),
        ("PUT", "/creature/:id", ".app.Creature"),
        ("PATCH", "/creature/:id", ".app.Creature"),
        ("DELETE", "/creature/:id", ".app.Creature"),
    ]
    .into_iter()
    .map(|(method, path, response)| ApiRoute {
        method: method.to_owned(),
        path: path.to_owned(),
        response: Some(response.to_owned()),
        error: Some(".app.ResourceError".to_owned()),
    })
    .collect()
}

/// The demo's rule: channels named `private/…` need an authenticated connection.
fn demo_access_rules() -> AccessRules {
    use crate::auth::access::{ChannelRule, Pattern, Rule};
    AccessRules {
        channels: vec![ChannelRule {
            pattern: Pattern::new("private/*"),
            subscribe: Rule::Authenticated,
            publish: Rule::Authenticated,
        }],
        routes: Vec::new(),
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8000)),
            log_level: "info".to_owned(),
            log_format: LogFormat::Text,
            shutdown_timeout_ms: 5000,
            tls_cert: None,
            tls_key: None,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: 1 << 20,
            max_messages_per_second: 10_000,
            outbound_queue_length: 1024,
            write_buffer_bytes: 256 << 10,
            inbound_queue_bytes: 1 << 20,
            handshake_timeout_ms: 10_000,
            http_header_timeout_ms: 10_000,
            close_timeout_ms: 2000,
            max_connections: 100_000,
            max_connections_per_ip: 10_000,
        }
    }
}

impl Default for EndpointConfig {
    fn default() -> Self {
        Self {
            path: "/socketcluster/".to_owned(),
            dialect: Dialect::SocketCluster,
            codec: Codec::Json,
            protocol_version: ProtocolVersion::Both,
            ping_interval_ms: 8000,
            ping_timeout_ms: 20_000,
            authorize_timeout_ms: 3000,
            authorizer: Authorizer::Token,
            protobuf: ProtobufConfig::default(),
        }
    }
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self { enabled: true }
    }
}

impl ServerConfig {
    /// `shutdown_timeout_ms` as a duration.
    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_millis(self.shutdown_timeout_ms)
    }
}

impl Limits {
    /// `http_header_timeout_ms` as a duration.
    pub fn http_header_timeout(&self) -> Duration {
        Duration::from_millis(self.http_header_timeout_ms)
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
        if self.channels.max_subscriptions == 0 || self.channels.max_channel_name_bytes == 0 {
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
                return invalid(&key("command"), &problem);
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
        let ok = Config::from_toml_str(
            "[[endpoint]]\npath = \"/v1\"\nprotocol_version = \"1\"\n",
            "t",
        )
        .unwrap();
        assert_eq!(ok.endpoints[0].protocol_version, ProtocolVersion::V1);
    }
}
