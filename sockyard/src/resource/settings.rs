//! [`StorageConfig`], the resources' settings (`[storage]`): where records live and how long a
//! page of them is.

use serde::{Deserialize, Serialize};

/// `[storage]`: where resource records live, and the page sizes of `list`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct StorageConfig {
    /// `sqlite://FILE` (created on first run; relative to the working directory) or
    /// `postgres://user@host:port/database`. Default `sqlite://sockyard.db`.
    pub url: String,
    /// Connections to PostgreSQL (SQLite uses one). Default 8.
    pub max_connections: u32,
    /// Records a `list` returns when the query has no `$limit`. Default 100.
    pub default_limit: u64,
    /// The largest `$limit` accepted. Default 1000.
    pub max_limit: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://sockyard.db".to_owned(),
            max_connections: 8,
            default_limit: 100,
            max_limit: 1000,
        }
    }
}
