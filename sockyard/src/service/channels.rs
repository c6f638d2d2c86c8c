//! The channel operations a client asks for — subscribe, unsubscribe, publish — with the access
//! rules, the resources' channel rules and the stages in front of the exchange; and their
//! `[channels]` settings.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::stages::ChannelRequest;
use super::Services;
use crate::auth::access::FORBIDDEN;
use crate::error::ApiError;
use crate::exchange::{SubscribeError, SubscriptionLimits};
use crate::peer::ConnectionHandle;
use crate::router::CallFuture;

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
    /// Bytes the names of one connection's channels may take together. Default 65536.
    pub max_subscription_bytes: usize,
    /// Longest channel name in bytes. Default 256.
    pub max_channel_name_bytes: usize,
}

impl Default for ChannelsConfig {
    fn default() -> Self {
        Self {
            allow_client_publish: true,
            max_subscriptions: 1000,
            max_subscription_bytes: 64 << 10,
            max_channel_name_bytes: 256,
        }
    }
}

impl ChannelsConfig {
    fn subscription_limits(&self) -> SubscriptionLimits {
        SubscriptionLimits {
            count: self.max_subscriptions,
            bytes: self.max_subscription_bytes,
        }
    }
}

impl Services {
    fn check_channel_name(&self, channel: &str) -> Result<(), ApiError> {
        if channel.is_empty() || channel.len() > self.channels.max_channel_name_bytes {
            return Err(ApiError::new(
                ApiError::INVALID_ACTION,
                format!(
                    "Channel names must be 1 to {} bytes long",
                    self.channels.max_channel_name_bytes
                ),
            ));
        }
        Ok(())
    }

    /// Answers a subscription request (invoke form).
    pub(crate) fn subscribe(
        self: &Arc<Self>,
        connection: ConnectionHandle,
        channel: String,
        data: Option<Value>,
    ) -> CallFuture {
        let services = self.clone();
        Box::pin(async move {
            services.check_channel_name(&channel)?;
            let claims = connection.claims();
            let resource_rule = match &services.resources {
                Some(resources) => resources.check_subscribe(&channel, claims.as_deref()).await,
                None => None,
            };
            match resource_rule {
                Some(result) => result?,
                None => services
                    .common
                    .access
                    .check_subscribe(&channel, claims.as_deref())?,
            }
            let mut request = ChannelRequest {
                connection: connection.clone(),
                channel,
                data,
            };
            if let Some(stage) = &services.stages.subscribe {
                request = stage(request).await?;
            }
            let channel = request.channel;
            services
                .common
                .exchange
                .subscribe(
                    &connection,
                    &channel,
                    services.channels.subscription_limits(),
                )
                .await
                .map_err(|err| {
                    let reason = match err {
                        SubscribeError::Limit(_) | SubscribeError::NameBytes(_) => {
                            format!("BrokerError: {err}")
                        }
                        other => other.to_string(),
                    };
                    ApiError::new(
                        ApiError::BROKER_ERROR,
                        format!("Failed to subscribe socket to the {channel} channel - {reason}"),
                    )
                })?;
            Ok(None)
        })
    }

    /// Answers a request to leave a channel.
    pub(crate) fn unsubscribe(
        self: &Arc<Self>,
        connection: ConnectionHandle,
        channel: String,
    ) -> CallFuture {
        let services = self.clone();
        Box::pin(async move {
            if services
                .common
                .exchange
                .unsubscribe(&connection, &channel)
                .await
            {
                return Ok(None);
            }
            Err(ApiError::new(
                ApiError::BROKER_ERROR,
                format!(
                    "Failed to unsubscribe socket from the {channel} channel - InvalidActionError: Socket {} is not subscribed to the {channel} channel",
                    connection.id()
                ),
            ))
        })
    }

    /// Answers a client's publication.
    pub(crate) fn publish(
        self: &Arc<Self>,
        connection: ConnectionHandle,
        channel: String,
        data: Option<Value>,
    ) -> CallFuture {
        let services = self.clone();
        Box::pin(async move {
            if !services.channels.allow_client_publish {
                return Err(ApiError::new(
                    ApiError::INVALID_ACTION,
                    "Client publish feature is disabled",
                ));
            }
            services.check_channel_name(&channel)?;
            if services
                .resources
                .as_ref()
                .is_some_and(|r| r.is_resource_channel(&channel))
            {
                return Err(ApiError::new(
                    FORBIDDEN,
                    format!(
                        "{channel} carries a resource's changes: only the server publishes there"
                    ),
                ));
            }
            services
                .common
                .access
                .check_publish(&channel, connection.claims().as_deref())?;
            let mut request = ChannelRequest {
                connection,
                channel,
                data,
            };
            if let Some(stage) = &services.stages.publish_in {
                request = stage(request).await?;
            }
            services
                .common
                .exchange
                .publish(&request.channel, request.data.as_ref())
                .await
                .map_err(|e| ApiError::new(ApiError::BROKER_ERROR, e.to_string()))?;
            Ok(None)
        })
    }
}
