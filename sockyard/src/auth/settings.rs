//! `[auth]`: how auth tokens (JWT) are signed and verified.

use serde::{Deserialize, Serialize};

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
    /// PEM private key for RS256/ES256 (signing). A relative path is taken from the
    /// configuration file's directory.
    pub private_key_file: String,
    /// PEM public key for RS256/ES256 (verifying). A relative path is taken from the
    /// configuration file's directory.
    pub public_key_file: String,
    /// Seconds until a token expires when its claims set no `exp`. Default 86400.
    pub default_expiry_s: u64,
    /// Refuse tokens without an `exp` claim (`AuthTokenInvalidError`). Default false: a token
    /// without one never expires, as in SocketCluster.
    pub require_exp: bool,
    /// Refuse tokens issued (`iat`) more than this many seconds ago, whatever their `exp`
    /// (`AuthTokenExpiredError`; a token without `iat` is then invalid). Checked when a token
    /// is presented; a connection signed in keeps it until its `exp`. Default 0: no limit.
    pub max_token_age_s: u64,
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

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            algorithm: AuthAlgorithm::HS256,
            key: DEMO_AUTH_KEY.to_owned(),
            key_env: "SOCKYARD_AUTH_KEY".to_owned(),
            private_key_file: String::new(),
            public_key_file: String::new(),
            default_expiry_s: 86_400,
            require_exp: false,
            max_token_age_s: 0,
        }
    }
}
