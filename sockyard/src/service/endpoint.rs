//! Endpoints: a path, the dialect spoken there and its codec (`[[endpoint]]` settings), and the
//! resolved form every connection of the endpoint reads — its format, timings and routes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::codec::protobuf::{Schema, SchemaError};
use crate::codec::{Codec, Encoding};
use crate::protocol::{Dialect, Format, ProtocolVersion, SessionOptions};
use crate::router::RouteTable;

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
    /// Allowed `Origin`s of WebSocket upgrades: full origins (`https://example.com`) or
    /// `host[:port]`. A browser's connection from a page of another origin gets 403 before
    /// the upgrade; clients that send no `Origin` (not browsers) are let in. Default empty:
    /// every origin.
    pub origins: Vec<String>,
    /// Protobuf codec settings (`[endpoint.protobuf]`); used when `codec = "protobuf"`.
    pub protobuf: ProtobufConfig,
    /// Raw endpoints (required there): the route every message calls, with the message as its
    /// data (text as a string, binary as `{"$binary":…}`). Other dialects ignore it. Default
    /// none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
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
            origins: Vec::new(),
            protobuf: ProtobufConfig::default(),
            route: None,
        }
    }
}

/// Why an endpoint's codec could not be set up.
#[derive(Debug, Error)]
pub enum EndpointError {
    /// A `.proto` file named in the configuration could not be read.
    #[error("cannot read {path}: {source}")]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The endpoint's protobuf types could not be built.
    #[error("endpoint {endpoint}: {source}")]
    Protobuf {
        /// The endpoint's path.
        endpoint: String,
        /// What went wrong.
        source: SchemaError,
    },
}

/// One endpoint's settings, resolved: what its connections read.
#[derive(Debug)]
pub(crate) struct Endpoint {
    /// How its messages look on the wire.
    pub(crate) format: Format,
    /// What its dialect sessions start with.
    pub(crate) session: SessionOptions,
    /// What `#api` routes answer with (protobuf endpoints).
    pub(crate) api_routes: Vec<ApiRoute>,
    /// Time allowed for the opening exchange (handshake or `authorize`).
    pub(crate) opening_timeout: Duration,
    pub(crate) authorizer: Authorizer,
    pub(crate) ping_interval: Duration,
    pub(crate) ping_timeout: Duration,
    /// Allowed `Origin`s of upgrades (empty: any).
    pub(crate) origins: Vec<String>,
    pub(crate) routes: Arc<RouteTable>,
}

impl Endpoint {
    /// Resolves `config`: reads and compiles its `.proto` texts (relative paths against
    /// `base_dir`). SocketCluster endpoints allow `handshake_timeout` for the handshake; CTProto
    /// endpoints their own `authorize_timeout_ms`. Replies are capped at `max_reply_bytes`.
    pub(crate) fn new(
        config: &EndpointConfig,
        handshake_timeout: Duration,
        max_reply_bytes: usize,
        base_dir: Option<&Path>,
        routes: Arc<RouteTable>,
    ) -> Result<Self, EndpointError> {
        let opening_timeout = match config.dialect {
            Dialect::CtProto => Duration::from_millis(config.authorize_timeout_ms),
            _ => handshake_timeout,
        };
        Ok(Self {
            format: Format {
                dialect: config.dialect,
                encoding: config.encoding(base_dir)?,
            },
            session: SessionOptions {
                version: config.protocol_version,
                max_reply_bytes,
                route: config.route.clone(),
            },
            api_routes: config.protobuf.routes.clone(),
            opening_timeout,
            authorizer: config.authorizer,
            ping_interval: Duration::from_millis(config.ping_interval_ms),
            ping_timeout: Duration::from_millis(config.ping_timeout_ms),
            origins: config.origins.clone(),
            routes,
        })
    }
}

impl EndpointConfig {
    /// Builds the endpoint's encoding; for protobuf, reads and compiles its `.proto` texts.
    fn encoding(&self, base_dir: Option<&Path>) -> Result<Encoding, EndpointError> {
        match self.codec {
            Codec::Json => Ok(Encoding::Json),
            Codec::Msgpack => Ok(Encoding::Msgpack),
            Codec::Protobuf => {
                let settings = &self.protobuf;
                let mut sources = Vec::new();
                for file in &settings.files {
                    let path = match base_dir {
                        Some(dir) => dir.join(file),
                        None => PathBuf::from(file),
                    };
                    let text = std::fs::read_to_string(&path)
                        .map_err(|source| EndpointError::ReadFile { path, source })?;
                    sources.push((file.clone(), text));
                }
                for (i, text) in settings.inline.iter().enumerate() {
                    sources.push((format!("inline[{i}].proto"), text.clone()));
                }
                let schema = Schema::compile(&sources, settings.api, &settings.events).map_err(
                    |source| EndpointError::Protobuf {
                        endpoint: self.path.clone(),
                        source,
                    },
                )?;
                Ok(Encoding::Protobuf(Arc::new(schema)))
            }
        }
    }
}
