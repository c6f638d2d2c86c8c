//! Authentication: signing and verifying JWT auth tokens as SocketCluster does (HS256 with a
//! shared key by default, RS256/ES256 with key files), and the errors clients expect when a
//! token is bad.

pub mod access;
mod settings;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind as JwtErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Map, Value};
use thiserror::Error;

use crate::error::ApiError;

pub use settings::{AuthAlgorithm, AuthConfig, DEMO_AUTH_KEY};

/// The claims of a token: a JSON object (for example `{"username":"ann","iat":…,"exp":…}`).
pub type Claims = Map<String, Value>;

/// Why an auth configuration cannot be used.
#[derive(Debug, Error)]
pub enum AuthSetupError {
    /// A key file could not be read.
    #[error("cannot read {key} file {}: {error}", path.display())]
    ReadKey {
        /// The config key naming the file.
        key: &'static str,
        /// The file, as resolved.
        path: PathBuf,
        /// The underlying error (shown in the message, so not repeated as its source).
        error: std::io::Error,
    },
    /// A key is not valid for the algorithm.
    #[error("invalid {key}: {message}")]
    BadKey {
        /// The config key naming the key.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// Why a token was refused, with SocketCluster's error names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// `exp` is in the past (`AuthTokenExpiredError`).
    Expired {
        /// When it expired, in seconds since the Unix epoch.
        expiry: u64,
    },
    /// Bad signature, bad algorithm or not a JWT at all (`AuthTokenInvalidError`).
    Invalid(&'static str),
    /// `nbf` is in the future (`AuthTokenNotBeforeError`); not treated as a bad token.
    NotBefore {
        /// When it becomes valid, in seconds since the Unix epoch.
        date: u64,
    },
    /// Anything else (`AuthTokenError`).
    Other(String),
}

impl TokenError {
    /// Whether the client should throw the token away (SocketCluster's `isBadToken`); the server
    /// then also sends `#removeAuthToken`.
    pub fn is_bad_token(&self) -> bool {
        !matches!(self, Self::NotBefore { .. })
    }

    /// The error as a client sees it, e.g. `{"name":"AuthTokenExpiredError","message":"jwt
    /// expired","expiry":"2026-11-22T12:21:23.000Z","isBadToken":true}`.
    pub fn to_api_error(&self) -> ApiError {
        match self {
            Self::Expired { expiry } => ApiError::new("AuthTokenExpiredError", "jwt expired")
                .with("expiry", iso_date(*expiry))
                .with("isBadToken", true),
            Self::Invalid(message) => {
                ApiError::new("AuthTokenInvalidError", *message).with("isBadToken", true)
            }
            Self::NotBefore { date } => ApiError::new("AuthTokenNotBeforeError", "jwt not active")
                .with("date", iso_date(*date))
                .with("isBadToken", false),
            Self::Other(message) => {
                ApiError::new("AuthTokenError", message.clone()).with("isBadToken", true)
            }
        }
    }
}

fn iso_date(seconds: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_secs(seconds)).to_string()
}

/// Seconds since the Unix epoch.
pub fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Signs and verifies tokens with one key and algorithm; cheap to clone.
#[derive(Clone)]
pub struct Authenticator {
    inner: Arc<Keys>,
}

#[derive(Clone)]
struct Keys {
    algorithm: Algorithm,
    encoding: EncodingKey,
    decoding: DecodingKey,
    default_expiry: u64,
    rules: TokenRules,
}

/// What a token must have besides a good signature, from `[auth]`.
#[derive(Debug, Clone, Copy, Default)]
struct TokenRules {
    /// `auth.require_exp`.
    require_exp: bool,
    /// `auth.max_token_age_s`, when not 0.
    max_age: Option<u64>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("algorithm", &self.inner.algorithm)
            .field("default_expiry", &self.inner.default_expiry)
            .field("require_exp", &self.inner.rules.require_exp)
            .field("max_age", &self.inner.rules.max_age)
            .finish_non_exhaustive()
    }
}

/// Where the HS256 key came from, so the binary can warn about a random one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    /// `auth.key` in the configuration.
    Config,
    /// The environment variable named by `auth.key_env`.
    Environment,
    /// Neither was set: a random key, different on every start.
    Random,
    /// RS256/ES256 key files.
    Files,
}

impl Authenticator {
    /// An HS256 authenticator with a shared secret.
    pub fn hs256(secret: &[u8], default_expiry: Duration) -> Self {
        Self::from_parts(
            Algorithm::HS256,
            EncodingKey::from_secret(secret),
            DecodingKey::from_secret(secret),
            default_expiry,
        )
    }

    /// Builds the authenticator `config` describes, reading key files (relative paths from
    /// the working directory) and the key's environment variable; says where the key came
    /// from.
    pub fn from_config(config: &AuthConfig) -> Result<(Self, KeySource), AuthSetupError> {
        Self::from_config_in(config, None)
    }

    /// [`Self::from_config`] with relative key file paths taken from `base_dir` (a
    /// configuration file's directory, [`crate::Config::base_dir`]) when given.
    pub fn from_config_in(
        config: &AuthConfig,
        base_dir: Option<&Path>,
    ) -> Result<(Self, KeySource), AuthSetupError> {
        let (mut auth, source) = Self::keys_from_config(config, base_dir)?;
        Arc::make_mut(&mut auth.inner).rules = TokenRules {
            require_exp: config.require_exp,
            max_age: (config.max_token_age_s > 0).then_some(config.max_token_age_s),
        };
        Ok((auth, source))
    }

    fn keys_from_config(
        config: &AuthConfig,
        base_dir: Option<&Path>,
    ) -> Result<(Self, KeySource), AuthSetupError> {
        let expiry = Duration::from_secs(config.default_expiry_s);
        match config.algorithm {
            AuthAlgorithm::HS256 => {
                let from_env = std::env::var(&config.key_env)
                    .ok()
                    .filter(|k| !k.is_empty());
                let (secret, source) = if !config.key.is_empty() {
                    (config.key.clone(), KeySource::Config)
                } else if let Some(key) = from_env {
                    (key, KeySource::Environment)
                } else {
                    let bytes: [u8; 32] = rand::random();
                    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                    (hex, KeySource::Random)
                };
                Ok((Self::hs256(secret.as_bytes(), expiry), source))
            }
            AuthAlgorithm::RS256 | AuthAlgorithm::ES256 => {
                let read = |key, path| read_key(key, path, base_dir);
                let private = read("auth.private_key_file", &config.private_key_file)?;
                let public = read("auth.public_key_file", &config.public_key_file)?;
                let bad = |key: &'static str| {
                    move |e: jsonwebtoken::errors::Error| AuthSetupError::BadKey {
                        key,
                        message: e.to_string(),
                    }
                };
                let (algorithm, encoding, decoding) = if config.algorithm == AuthAlgorithm::RS256 {
                    (
                        Algorithm::RS256,
                        EncodingKey::from_rsa_pem(&private)
                            .map_err(bad("auth.private_key_file"))?,
                        DecodingKey::from_rsa_pem(&public).map_err(bad("auth.public_key_file"))?,
                    )
                } else {
                    (
                        Algorithm::ES256,
                        EncodingKey::from_ec_pem(&private).map_err(bad("auth.private_key_file"))?,
                        DecodingKey::from_ec_pem(&public).map_err(bad("auth.public_key_file"))?,
                    )
                };
                let auth = Self::from_parts(algorithm, encoding, decoding, expiry);
                // A key pair that does not match would only fail later, on every login.
                let probe = auth
                    .sign(Claims::new())
                    .map_err(|e| AuthSetupError::BadKey {
                        key: "auth.private_key_file",
                        message: e.message,
                    })?;
                auth.verify(&probe).map_err(|_| AuthSetupError::BadKey {
                    key: "auth.public_key_file",
                    message: "does not match the private key".to_owned(),
                })?;
                Ok((auth, KeySource::Files))
            }
        }
    }

    fn from_parts(
        algorithm: Algorithm,
        encoding: EncodingKey,
        decoding: DecodingKey,
        default_expiry: Duration,
    ) -> Self {
        Self {
            inner: Arc::new(Keys {
                algorithm,
                encoding,
                decoding,
                default_expiry: default_expiry.as_secs(),
                rules: TokenRules::default(),
            }),
        }
    }

    /// Signs `claims`, adding `iat` (now) and, unless present, `exp` (now + default expiry).
    pub fn sign(&self, mut claims: Claims) -> Result<String, ApiError> {
        let now = now_seconds();
        claims.insert("iat".to_owned(), Value::from(now));
        if !claims.contains_key("exp") {
            claims.insert(
                "exp".to_owned(),
                Value::from(now + self.inner.default_expiry),
            );
        }
        jsonwebtoken::encode(
            &Header::new(self.inner.algorithm),
            &claims,
            &self.inner.encoding,
        )
        .map_err(|e| ApiError::new("AuthTokenError", format!("could not sign token: {e}")))
    }

    /// Verifies a signed token and returns its claims: the signature, `exp` and `nbf`, and the
    /// configured rules (`auth.require_exp`, `auth.max_token_age_s`).
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let mut validation = Validation::new(self.inner.algorithm);
        validation.required_spec_claims.clear();
        validation.leeway = 0;
        validation.validate_nbf = true;
        match jsonwebtoken::decode::<Claims>(token, &self.inner.decoding, &validation) {
            Ok(data) => self.inner.rules.check(data.claims),
            Err(err) => Err(classify(err.kind(), token)),
        }
    }
}

impl TokenRules {
    /// Passes the claims of a token whose signature and times are good, if they follow the
    /// rules.
    fn check(self, claims: Claims) -> Result<Claims, TokenError> {
        if self.require_exp && !claims.contains_key("exp") {
            return Err(TokenError::Invalid("jwt has no exp"));
        }
        if let Some(max_age) = self.max_age {
            let issued = claims
                .get("iat")
                .and_then(Value::as_u64)
                .ok_or(TokenError::Invalid("jwt has no iat"))?;
            let expiry = issued.saturating_add(max_age);
            if now_seconds() > expiry {
                return Err(TokenError::Expired { expiry });
            }
        }
        Ok(claims)
    }
}

fn classify(kind: &JwtErrorKind, token: &str) -> TokenError {
    let claim = |name: &str| {
        jsonwebtoken::dangerous::insecure_decode::<Claims>(token)
            .ok()
            .and_then(|data| data.claims.get(name).and_then(Value::as_u64))
            .unwrap_or(0)
    };
    match kind {
        JwtErrorKind::ExpiredSignature => TokenError::Expired {
            expiry: claim("exp"),
        },
        JwtErrorKind::ImmatureSignature => TokenError::NotBefore { date: claim("nbf") },
        JwtErrorKind::InvalidSignature => TokenError::Invalid("invalid signature"),
        JwtErrorKind::InvalidAlgorithm | JwtErrorKind::InvalidAlgorithmName => {
            TokenError::Invalid("invalid algorithm")
        }
        JwtErrorKind::InvalidToken
        | JwtErrorKind::Base64(_)
        | JwtErrorKind::Json(_)
        | JwtErrorKind::Utf8(_)
        | JwtErrorKind::InvalidClaimFormat(_) => TokenError::Invalid("jwt malformed"),
        other => TokenError::Other(format!("{other:?}")),
    }
}

/// Reads the key file `path` (named by config key `key`), relative to `base_dir` if given.
fn read_key(
    key: &'static str,
    path: &str,
    base_dir: Option<&Path>,
) -> Result<Vec<u8>, AuthSetupError> {
    let path = base_dir.map_or_else(|| PathBuf::from(path), |dir| dir.join(path));
    std::fs::read(&path).map_err(|error| AuthSetupError::ReadKey { key, path, error })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use serde_json::json;

    fn claims(value: Value) -> Claims {
        value.as_object().unwrap().clone()
    }

    fn b64(value: &Value) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
    }

    #[test]
    fn signs_with_iat_and_default_exp_and_verifies() {
        let auth = Authenticator::hs256(b"secret", Duration::from_secs(86400));
        let token = auth.sign(claims(json!({"username": "ann"}))).unwrap();
        let back = auth.verify(&token).unwrap();
        assert_eq!(back["username"], "ann");
        let iat = back["iat"].as_u64().unwrap();
        assert_eq!(back["exp"].as_u64().unwrap(), iat + 86400);
        // An explicit exp wins.
        let token = auth
            .sign(claims(json!({"exp": now_seconds() + 5})))
            .unwrap();
        assert_eq!(auth.verify(&token).unwrap()["exp"], now_seconds() + 5);
    }

    #[test]
    fn maps_failures_to_socketcluster_errors() {
        let auth = Authenticator::hs256(b"secret", Duration::from_secs(60));
        let other = Authenticator::hs256(b"other", Duration::from_secs(60));
        let token = other.sign(Claims::new()).unwrap();
        let err = auth.verify(&token).unwrap_err();
        assert_eq!(err, TokenError::Invalid("invalid signature"));
        assert_eq!(
            serde_json::to_value(err.to_api_error()).unwrap(),
            json!({"name":"AuthTokenInvalidError","message":"invalid signature","isBadToken":true})
        );

        let expired = auth.sign(claims(json!({"exp": 1_700_000_000u64}))).unwrap();
        let err = auth.verify(&expired).unwrap_err();
        assert_eq!(
            err,
            TokenError::Expired {
                expiry: 1_700_000_000
            }
        );
        assert_eq!(
            serde_json::to_value(err.to_api_error()).unwrap(),
            json!({"name":"AuthTokenExpiredError","message":"jwt expired","expiry":"2023-11-14T22:13:20.000Z","isBadToken":true})
        );

        for garbage in ["", "abc", "a.b.c", "eyJhbGciOiJIUzI1NiJ9.bm90IGpzb24.x"] {
            assert_eq!(
                auth.verify(garbage),
                Err(TokenError::Invalid("jwt malformed")),
                "{garbage}"
            );
        }

        let future = auth
            .sign(claims(json!({"nbf": now_seconds() + 3600})))
            .unwrap();
        let err = auth.verify(&future).unwrap_err();
        assert!(matches!(err, TokenError::NotBefore { .. }));
        assert!(!err.is_bad_token());
    }

    #[test]
    fn require_exp_and_max_token_age_refuse_what_they_say() {
        let plain = Authenticator::hs256(b"secret", Duration::from_secs(60));
        let encode = |claims: Value| {
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &claims,
                &EncodingKey::from_secret(b"secret"),
            )
            .unwrap()
        };
        let now = now_seconds();
        let forever = encode(json!({"username": "ann", "iat": now}));
        let old = encode(json!({"iat": now - 3600, "exp": now + 3600}));
        let ageless = encode(json!({"exp": now + 3600}));
        // Without the rules (the default) all three are good.
        for token in [&forever, &old, &ageless] {
            assert!(plain.verify(token).is_ok());
        }
        let mut config = AuthConfig {
            key: "secret".to_owned(),
            require_exp: true,
            ..AuthConfig::default()
        };
        let (strict, _) = Authenticator::from_config(&config).unwrap();
        assert_eq!(
            strict.verify(&forever),
            Err(TokenError::Invalid("jwt has no exp"))
        );
        assert!(strict.verify(&old).is_ok());
        config.require_exp = false;
        config.max_token_age_s = 600;
        let (young, _) = Authenticator::from_config(&config).unwrap();
        assert_eq!(
            young.verify(&old),
            Err(TokenError::Expired {
                expiry: now - 3600 + 600
            })
        );
        assert_eq!(
            young.verify(&ageless),
            Err(TokenError::Invalid("jwt has no iat"))
        );
        assert!(young.verify(&forever).is_ok());
        assert!(young.verify(&young.sign(Claims::new()).unwrap()).is_ok());
    }

    #[test]
    fn key_files_resolve_from_the_base_dir_and_errors_say_why_once() {
        let keys = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/keys");
        let config = AuthConfig {
            algorithm: AuthAlgorithm::ES256,
            private_key_file: "ec-private.pem".to_owned(),
            public_key_file: "ec-public.pem".to_owned(),
            ..AuthConfig::default()
        };
        let (_, source) = Authenticator::from_config_in(&config, Some(&keys)).unwrap();
        assert_eq!(source, KeySource::Files);
        let err = Authenticator::from_config_in(&config, Some(&keys.join("missing"))).unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with(&format!(
                "cannot read auth.private_key_file file {}: ",
                keys.join("missing/ec-private.pem").display()
            )),
            "{message}"
        );
        assert_eq!(message.matches("os error 2").count(), 1, "{message}");
        assert!(
            std::error::Error::source(&err).is_none(),
            "the OS error is in the message only, so a chain shows it once"
        );
    }

    #[test]
    fn refuses_unsigned_and_other_algorithm_tokens() {
        let auth = Authenticator::hs256(b"secret", Duration::from_secs(60));
        let payload = b64(&json!({"username": "mallory", "exp": now_seconds() + 60}));
        let none = format!("{}.{payload}.", b64(&json!({"alg": "none", "typ": "JWT"})));
        assert!(matches!(auth.verify(&none), Err(TokenError::Invalid(_))));
        let hs512 = format!(
            "{}.{payload}.c2ln",
            b64(&json!({"alg": "HS512", "typ": "JWT"}))
        );
        assert!(matches!(auth.verify(&hs512), Err(TokenError::Invalid(_))));
    }
}
