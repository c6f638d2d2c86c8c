//! Opening a connection: the client's credentials checked by the token keys, the handshake or
//! authorize stage, or the endpoint's authorizer; the claims it ends with become the
//! connection's authentication.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde_json::Value;

use super::endpoint::Authorizer;
use super::stages::HandshakeRequest;
use super::Services;
use crate::auth::access::AUTH_ERROR;
use crate::auth::Claims;
use crate::error::ApiError;
use crate::peer::ConnectionHandle;
use crate::protocol::{Credentials, Outgoing};

/// How an opening went: the connection is open, authenticated or not.
#[derive(Debug, Clone, Default)]
pub(crate) struct Opening {
    /// The claims the connection is authenticated with.
    pub(crate) claims: Option<Arc<Claims>>,
    /// Why an offered token was refused (the connection opened without it).
    pub(crate) auth_error: Option<ApiError>,
}

/// An opening in progress; an error refuses it (and carries `statusCode`, the close code, when
/// the handshake stage chose one).
pub(crate) type OpenFuture = BoxFuture<'static, Result<Opening, ApiError>>;

impl Services {
    /// Starts the opening exchange with what the client presented.
    pub(crate) fn open(
        self: &Arc<Self>,
        connection: ConnectionHandle,
        authorizer: Authorizer,
        credentials: Credentials,
    ) -> OpenFuture {
        match credentials {
            Credentials::Token(token) => self.handshake(connection, token),
            Credentials::Authorize(payload) => self.authorize(connection, authorizer, payload),
        }
    }

    /// An optional token: verified, then the handshake stage decides. A bad token opens the
    /// connection unauthenticated and tells the client to drop it.
    fn handshake(
        self: &Arc<Self>,
        connection: ConnectionHandle,
        token: Option<String>,
    ) -> OpenFuture {
        let services = self.clone();
        Box::pin(async move {
            let (claims, token_error) =
                match token.as_deref().map(|t| services.common.auth.verify(t)) {
                    None => (None, None),
                    Some(Ok(claims)) => (Some(Arc::new(claims)), None),
                    Some(Err(err)) => (None, Some(err)),
                };
            let auth_error = token_error.as_ref().map(|e| e.to_api_error());
            if let Some(stage) = &services.stages.handshake {
                let request = HandshakeRequest {
                    connection: connection.clone(),
                    claims: claims.clone(),
                    auth_error: auth_error.clone(),
                };
                stage(request)
                    .await
                    .map_err(|r| r.error.with("statusCode", r.close_code))?;
            }
            connection.set_claims(claims.clone());
            if token_error.as_ref().is_some_and(|e| e.is_bad_token()) {
                // Queued now, written after the opening's reply.
                let _ = connection.send(&Outgoing::TokenRemoved);
            }
            Ok(Opening { claims, auth_error })
        })
    }

    /// A payload that must authorize the connection: the authorize stage if set, else the
    /// endpoint's authorizer.
    fn authorize(
        self: &Arc<Self>,
        connection: ConnectionHandle,
        authorizer: Authorizer,
        payload: Value,
    ) -> OpenFuture {
        let services = self.clone();
        Box::pin(async move {
            let claims = match &services.stages.authorize {
                Some(stage) => stage(connection.clone(), payload).await?,
                None => services.configured_authorizer(authorizer, &payload)?,
            };
            let claims = Arc::new(claims);
            connection.set_claims(Some(claims.clone()));
            Ok(Opening {
                claims: Some(claims),
                auth_error: None,
            })
        })
    }

    fn configured_authorizer(
        &self,
        authorizer: Authorizer,
        payload: &Value,
    ) -> Result<Claims, ApiError> {
        if let Some(token) = payload.get("token").and_then(Value::as_str) {
            return self.common.auth.verify(token).map_err(|e| e.to_api_error());
        }
        if authorizer == Authorizer::TokenOrUsername {
            if let Some(username) = payload.get("username").and_then(Value::as_str) {
                let username = username.trim();
                if !username.is_empty() {
                    let mut claims = Claims::new();
                    claims.insert("username".to_owned(), Value::String(username.to_owned()));
                    return Ok(claims);
                }
            }
            return Err(ApiError::new(
                AUTH_ERROR,
                "payload must carry a token or a username",
            ));
        }
        Err(ApiError::new(AUTH_ERROR, "payload must carry a token"))
    }
}
