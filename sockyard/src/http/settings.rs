//! `[server]`: where a server listens, how it logs, how long it waits at shutdown, and its TLS
//! files. The library reads the shutdown timeout and the TLS files; the binary binds `listen`
//! and sets up logging.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

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

impl ServerConfig {
    /// `shutdown_timeout_ms` as a duration.
    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_millis(self.shutdown_timeout_ms)
    }
}
