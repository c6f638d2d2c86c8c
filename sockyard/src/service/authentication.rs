//! Authenticating an open connection (`#authenticate` with a signed token), and the route access
//! check every call goes through.

use std::sync::Arc;

use serde_json::json;

use super::Services;
use crate::error::ApiError;
use crate::peer::ConnectionHandle;
use crate::protocol::Outgoing;
use crate::router::{CallFuture, CallResult};

impl Services {
    /// Answers an authentication request. A bad token is an error reply followed by a token
    /// removal; a refusal by the authenticate stage is a successful reply saying
    /// `isAuthenticated: false`.
    pub(crate) fn authenticate(
        self: &Arc<Self>,
        connection: ConnectionHandle,
        token: Option<String>,
    ) -> CallFuture {
        let services = self.clone();
        Box::pin(async move {
            // Whatever happens next, the connection no longer counts as authenticated by its old
            // token unless the new one is accepted (as the official server).
            let Some(token) = token else {
                connection.drop_claims();
                let _ = connection.send(&Outgoing::TokenRemoved);
                return Err(
                    ApiError::new("AuthTokenInvalidError", "jwt must be provided")
                        .with("isBadToken", true),
                );
            };
            let claims = match services.common.auth.verify(&token) {
                Ok(claims) => Arc::new(claims),
                Err(err) => {
                    connection.drop_claims();
                    if err.is_bad_token() {
                        let _ = connection.send(&Outgoing::TokenRemoved);
                    }
                    return Err(err.to_api_error());
                }
            };
            if let Some(stage) = &services.stages.authenticate {
                if let Err(err) = stage(connection.clone(), claims.clone()).await {
                    connection.drop_claims();
                    return Ok(Some(json!({"isAuthenticated": false, "authError": err})));
                }
            }
            connection.set_claims(Some(claims));
            Ok(Some(json!({"isAuthenticated": true, "authError": null})))
        })
    }

    /// Checks a call against the route access rules.
    pub(crate) fn check_call(&self, connection: &ConnectionHandle, route: &str) -> CallResult {
        self.common
            .access
            .check_call(route, connection.claims().as_deref())
            .map(|()| None)
    }
}
