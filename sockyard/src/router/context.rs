//! What a handler knows about the call it is serving: the connection it came from and the
//! parameters its route matched.

use std::sync::Arc;

use serde::Serialize;

use crate::auth::Claims;
use crate::error::ApiError;
use crate::peer::ConnectionHandle;

/// Route parameters captured from a path pattern such as `/creature/:id`, in pattern order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// The value captured for `name`, if the pattern has such a parameter.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// All captured `(name, value)` pairs.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Whether nothing was captured.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn push(&mut self, name: &str, value: &str) {
        self.0.push((name.to_owned(), value.to_owned()));
    }
}

/// The context passed to every handler and middleware.
///
/// ```
/// use sockyard::{ApiError, Context, Router};
///
/// let routes = Router::new().get("/room/:name/say", |ctx: Context, text: String| async move {
///     let name = ctx.param("name").unwrap_or("lobby").to_owned();
///     let from = ctx.claims().and_then(|c| c.get("username").cloned());
///     ctx.publish(&format!("room/{name}"), serde_json::json!({ "from": from, "text": text }))
///         .await?;
///     Ok::<_, ApiError>(())
/// });
/// assert!(routes.build().unwrap().contains("GET /room/lobby/say"));
/// ```
#[derive(Debug, Clone)]
pub struct Context {
    connection: ConnectionHandle,
    params: Params,
}

impl Context {
    pub(crate) fn new(connection: ConnectionHandle, params: Params) -> Self {
        Self { connection, params }
    }

    /// The connection the call arrived on: its id, and a way to push to it or close it.
    pub fn connection(&self) -> &ConnectionHandle {
        &self.connection
    }

    /// The parameters matched by the route's path pattern (empty for named routes).
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// Shorthand for `params().get(name)`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name)
    }

    /// The claims of the caller's auth token, if it is authenticated.
    pub fn claims(&self) -> Option<Arc<Claims>> {
        self.connection.claims()
    }

    /// Signs a token with `claims`, makes the caller authenticated with it and sends it to the
    /// client (`#setAuthToken`). Returns the token.
    pub fn set_auth_token(&self, claims: Claims) -> Result<String, ApiError> {
        self.connection.set_auth_token(claims)
    }

    /// Drops the caller's authentication and tells its client (`#removeAuthToken`).
    pub fn deauthenticate(&self) {
        self.connection.deauthenticate();
    }

    /// Publishes `data` on `channel` to every subscriber (access rules for clients do not apply
    /// to the server's own publications).
    pub async fn publish(&self, channel: &str, data: impl Serialize) -> Result<(), ApiError> {
        let data = serde_json::to_value(data).map_err(|e| ApiError::internal(e.to_string()))?;
        self.connection
            .common()
            .exchange
            .publish(channel, Some(&data))
            .await
            .map_err(|e| ApiError::new(ApiError::BROKER_ERROR, e.to_string()))
    }
}
