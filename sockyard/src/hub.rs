//! The services behind the protocol's reserved events, shared by every connection of a server:
//! the exchange, the authenticator, the access rules and the middleware stages, and the
//! operations that combine them (subscribe, publish, authenticate, handshake).

use std::sync::Arc;

use serde_json::{json, Value};

use crate::auth::access::AccessRules;
use crate::auth::{Authenticator, Claims};
use crate::config::{Authorizer, ChannelsConfig};
use crate::connection::ConnectionHandle;
use crate::error::ApiError;
use crate::exchange::{Exchange, SubscribeError};
use crate::protocol::socketcluster::{HandshakeReply, BROKER_ERROR, INVALID_ACTION};
use crate::resource::Resources;
use crate::router::{CallFuture, CallResult};
use crate::stages::{ChannelRequest, HandshakeRequest, Stages};

/// Everything a connection needs beyond its own socket.
#[derive(Debug)]
pub(crate) struct Hub {
    pub(crate) exchange: Exchange,
    pub(crate) auth: Authenticator,
    pub(crate) access: AccessRules,
    pub(crate) stages: Stages,
    pub(crate) channels: ChannelsConfig,
    /// Declared resources: their channels follow the resources' read rules.
    pub(crate) resources: Option<Resources>,
}

impl Hub {
    #[cfg(test)]
    pub(crate) fn for_tests() -> Self {
        Self {
            exchange: Exchange::in_memory(),
            auth: Authenticator::hs256(b"test", std::time::Duration::from_secs(3600)),
            access: AccessRules::default(),
            stages: Stages::default(),
            channels: ChannelsConfig::default(),
            resources: None,
        }
    }

    fn check_channel_name(&self, channel: &str) -> Result<(), ApiError> {
        if channel.is_empty() || channel.len() > self.channels.max_channel_name_bytes {
            return Err(ApiError::new(
                INVALID_ACTION,
                format!(
                    "Channel names must be 1 to {} bytes long",
                    self.channels.max_channel_name_bytes
                ),
            ));
        }
        Ok(())
    }

    /// Answers `#handshake`: verifies the offered token, runs the handshake stage, and returns
    /// the reply data. A rejection's error carries `statusCode`, the close code to use.
    pub(crate) fn handshake(
        self: &Arc<Self>,
        connection: ConnectionHandle,
        token: Option<String>,
        ping_timeout_ms: u64,
    ) -> CallFuture {
        let hub = self.clone();
        Box::pin(async move {
            let (claims, token_error) = match token.as_deref().map(|t| hub.auth.verify(t)) {
                None => (None, None),
                Some(Ok(claims)) => (Some(Arc::new(claims)), None),
                Some(Err(err)) => (None, Some(err)),
            };
            let auth_error = token_error.as_ref().map(|e| e.to_api_error());
            if let Some(stage) = &hub.stages.handshake {
                let request = HandshakeRequest {
                    connection: connection.clone(),
                    claims: claims.clone(),
                    auth_error: auth_error.clone(),
                };
                stage(request)
                    .await
                    .map_err(|r| r.error.with("statusCode", r.close_code))?;
            }
            let is_authenticated = claims.is_some();
            connection.set_claims(claims);
            if token_error.as_ref().is_some_and(|e| e.is_bad_token()) {
                // Queued now, written after the handshake reply.
                let _ = connection.transmit("#removeAuthToken", ());
            }
            let reply = HandshakeReply {
                id: connection.id(),
                ping_timeout: ping_timeout_ms,
                auth_error: auth_error.as_ref(),
                is_authenticated,
            };
            serde_json::to_value(reply)
                .map(Some)
                .map_err(|e| ApiError::internal(e.to_string()))
        })
    }

    /// Answers CTProto's `authorize`: the authorize stage if set, else the endpoint's
    /// authorizer. The claims become the connection's auth data and the reply.
    pub(crate) fn authorize(
        self: &Arc<Self>,
        connection: ConnectionHandle,
        authorizer: Authorizer,
        payload: Value,
    ) -> CallFuture {
        let hub = self.clone();
        Box::pin(async move {
            let claims = match &hub.stages.authorize {
                Some(stage) => stage(connection.clone(), payload).await?,
                None => hub.configured_authorizer(authorizer, &payload)?,
            };
            connection.set_claims(Some(Arc::new(claims.clone())));
            Ok(Some(Value::Object(claims)))
        })
    }

    fn configured_authorizer(
        &self,
        authorizer: Authorizer,
        payload: &Value,
    ) -> Result<Claims, ApiError> {
        if let Some(token) = payload.get("token").and_then(Value::as_str) {
            return self.auth.verify(token).map_err(|e| e.to_api_error());
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
                crate::auth::access::AUTH_ERROR,
                "payload must carry a token or a username",
            ));
        }
        Err(ApiError::new(
            crate::auth::access::AUTH_ERROR,
            "payload must carry a token",
        ))
    }

    /// Answers `#subscribe` (invoke form).
    pub(crate) fn subscribe(
        self: &Arc<Self>,
        connection: ConnectionHandle,
        channel: String,
        data: Option<Value>,
    ) -> CallFuture {
        let hub = self.clone();
        Box::pin(async move {
            hub.check_channel_name(&channel)?;
            let claims = connection.claims();
            let resource_rule = match &hub.resources {
                Some(resources) => resources.check_subscribe(&channel, claims.as_deref()).await,
                None => None,
            };
            match resource_rule {
                Some(result) => result?,
                None => hub.access.check_subscribe(&channel, claims.as_deref())?,
            }
            let mut request = ChannelRequest {
                connection: connection.clone(),
                channel,
                data,
            };
            if let Some(stage) = &hub.stages.subscribe {
                request = stage(request).await?;
            }
            let channel = request.channel;
            hub.exchange
                .subscribe(&connection, &channel, hub.channels.max_subscriptions)
                .await
                .map_err(|err| {
                    let reason = match err {
                        SubscribeError::Limit(_) => format!("BrokerError: {err}"),
                        other => other.to_string(),
                    };
                    ApiError::new(
                        BROKER_ERROR,
                        format!("Failed to subscribe socket to the {channel} channel - {reason}"),
                    )
                })?;
            Ok(None)
        })
    }

    /// Answers `#unsubscribe`.
    pub(crate) fn unsubscribe(
        self: &Arc<Self>,
        connection: ConnectionHandle,
        channel: String,
    ) -> CallFuture {
        let hub = self.clone();
        Box::pin(async move {
            if hub.exchange.unsubscribe(&connection, &channel).await {
                return Ok(None);
            }
            Err(ApiError::new(
                BROKER_ERROR,
                format!(
                    "Failed to unsubscribe socket from the {channel} channel - InvalidActionError: Socket {} is not subscribed to the {channel} channel",
                    connection.id()
                ),
            ))
        })
    }

    /// Answers a client's `#publish`.
    pub(crate) fn publish(
        self: &Arc<Self>,
        connection: ConnectionHandle,
        channel: String,
        data: Option<Value>,
    ) -> CallFuture {
        let hub = self.clone();
        Box::pin(async move {
            if !hub.channels.allow_client_publish {
                return Err(ApiError::new(
                    INVALID_ACTION,
                    "Client publish feature is disabled",
                ));
            }
            hub.check_channel_name(&channel)?;
            if hub
                .resources
                .as_ref()
                .is_some_and(|r| r.is_resource_channel(&channel))
            {
                return Err(ApiError::new(
                    crate::auth::access::FORBIDDEN,
                    format!(
                        "{channel} carries a resource's changes: only the server publishes there"
                    ),
                ));
            }
            hub.access
                .check_publish(&channel, connection.claims().as_deref())?;
            let mut request = ChannelRequest {
                connection,
                channel,
                data,
            };
            if let Some(stage) = &hub.stages.publish_in {
                request = stage(request).await?;
            }
            hub.exchange
                .publish(&request.channel, request.data.as_ref())
                .await
                .map_err(|e| ApiError::new(BROKER_ERROR, e.to_string()))?;
            Ok(None)
        })
    }

    /// Answers `#authenticate`. A bad token is an error reply followed by `#removeAuthToken`; a
    /// refusal by the authenticate stage is a successful reply saying `isAuthenticated: false`.
    pub(crate) fn authenticate(
        self: &Arc<Self>,
        connection: ConnectionHandle,
        token: Option<String>,
    ) -> CallFuture {
        let hub = self.clone();
        Box::pin(async move {
            // Whatever happens next, the connection no longer counts as authenticated by its old
            // token unless the new one is accepted (as the official server).
            let Some(token) = token else {
                hub.drop_claims(&connection);
                let _ = connection.transmit("#removeAuthToken", ());
                return Err(
                    ApiError::new("AuthTokenInvalidError", "jwt must be provided")
                        .with("isBadToken", true),
                );
            };
            let claims = match hub.auth.verify(&token) {
                Ok(claims) => Arc::new(claims),
                Err(err) => {
                    hub.drop_claims(&connection);
                    if err.is_bad_token() {
                        let _ = connection.transmit("#removeAuthToken", ());
                    }
                    return Err(err.to_api_error());
                }
            };
            if let Some(stage) = &hub.stages.authenticate {
                if let Err(err) = stage(connection.clone(), claims.clone()).await {
                    hub.drop_claims(&connection);
                    return Ok(Some(json!({"isAuthenticated": false, "authError": err})));
                }
            }
            connection.set_claims(Some(claims));
            Ok(Some(json!({"isAuthenticated": true, "authError": null})))
        })
    }

    /// Checks a call against the route access rules.
    pub(crate) fn check_call(&self, connection: &ConnectionHandle, route: &str) -> CallResult {
        self.access
            .check_call(route, connection.claims().as_deref())
            .map(|()| None)
    }

    /// Forgets the connection's claims (without telling the client) and leaves channels it may
    /// no longer hold.
    pub(crate) fn drop_claims(&self, connection: &ConnectionHandle) {
        if connection.claims().is_some() {
            connection.set_claims(None);
            self.revoke_subscriptions(connection);
        }
    }

    /// After a connection lost its authentication: kicks it out of the channels it may no longer
    /// hold.
    pub(crate) fn revoke_subscriptions(&self, connection: &ConnectionHandle) {
        let claims: Option<&Claims> = None;
        for channel in connection.subscriptions() {
            if let Err(err) = self.access.check_subscribe(&channel, claims) {
                connection.kick_out(&channel, &err.message);
            }
        }
    }
}
