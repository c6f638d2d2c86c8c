//! The services behind packets, shared by every connection of a server: what a decoded
//! [`Packet`] does — a call through the router (or socketcluster-api's `#api`), a channel
//! operation through the exchange, an opening or authentication through the token keys — with
//! the access rules and the middleware [`stages`] in front.
//!
//! The connection hands each packet to [`Services::dispatch`] and gets back the work to wait
//! for; it never decides what a packet means.

pub(crate) mod api;
mod authentication;
mod channels;
pub(crate) mod endpoint;
mod open;
pub mod stages;

use std::sync::Arc;

use crate::error::ApiError;
use crate::metrics::{ErrorKind, Metrics};
use crate::peer::{Common, ConnectionHandle};
use crate::protocol::{CallId, Packet};
use crate::resource::Resources;
use crate::router::CallFuture;

pub use channels::ChannelsConfig;
pub(crate) use endpoint::Endpoint;
pub use endpoint::{ApiRoute, Authorizer, EndpointConfig, EndpointError, ProtobufConfig};
pub(crate) use open::{OpenFuture, Opening};
use stages::Stages;

/// Everything a connection's packets reach beyond the connection itself.
#[derive(Debug)]
pub(crate) struct Services {
    /// The exchange, token keys and access rules every connection handle shares.
    pub(crate) common: Arc<Common>,
    pub(crate) stages: Stages,
    pub(crate) channels: ChannelsConfig,
    /// Declared resources: their channels follow the resources' read rules.
    pub(crate) resources: Option<Resources>,
}

/// What a packet asks of its connection.
pub(crate) enum Dispatched {
    /// Nothing to wait for.
    Done,
    /// A call in progress; its result answers `id` (a transmit's result is only logged).
    Call {
        id: Option<CallId>,
        future: CallFuture,
    },
    /// The opening exchange in progress, answering `id`.
    Open { id: CallId, future: OpenFuture },
    /// An error that answers no request.
    Unanswered(ApiError),
    /// The client announced that it is closing.
    Close { code: u16, reason: String },
}

impl Services {
    /// What `packet`, received on `connection` of `endpoint`, asks for. Replies to the server's
    /// own invokes are delivered at once.
    pub(crate) fn dispatch(
        self: &Arc<Self>,
        connection: &ConnectionHandle,
        endpoint: &Endpoint,
        packet: Packet,
        metrics: &Metrics,
    ) -> Dispatched {
        let handle = connection.clone();
        let (id, future) = match packet {
            Packet::Open { id, credentials } => {
                let future = self.open(handle, endpoint.authorizer, credentials);
                return Dispatched::Open { id, future };
            }
            Packet::Call { id, route, data } => {
                let future = match self.check_call(connection, &route) {
                    Err(err) => Box::pin(std::future::ready(Err(err))) as CallFuture,
                    Ok(_) => endpoint.routes.call(connection, &route, data, id.is_none()),
                };
                (id, future)
            }
            Packet::Api { id, route, data } => {
                let future = match self.check_call(connection, &route) {
                    Err(err) => Box::pin(std::future::ready(Err(err))) as CallFuture,
                    Ok(_) => api::call(endpoint, handle, data),
                };
                (id, future)
            }
            Packet::Subscribe {
                id: Some(id),
                channel,
                data,
            } => (Some(id), self.subscribe(handle, channel, data)),
            // As the official SocketCluster server: a transmitted subscribe subscribes nobody.
            Packet::Subscribe { id: None, .. } => return Dispatched::Done,
            Packet::Unsubscribe { id, channel } => (id, self.unsubscribe(handle, channel)),
            Packet::Publish { id, channel, data } => (id, self.publish(handle, channel, data)),
            Packet::Authenticate { id, token } => (Some(id), self.authenticate(handle, token)),
            Packet::Deauthenticate => {
                // The client dropped its token itself: no token removal is sent back.
                connection.drop_claims();
                return Dispatched::Done;
            }
            Packet::Invalid { id: None, error } => {
                metrics.error(ErrorKind::invalid_request);
                return Dispatched::Unanswered(error);
            }
            Packet::Invalid { id, error } => {
                metrics.error(ErrorKind::invalid_request);
                (id, Box::pin(std::future::ready(Err(error))) as CallFuture)
            }
            Packet::Reply { id, result } => {
                connection.resolve(id, result);
                return Dispatched::Done;
            }
            Packet::Disconnect { code, reason } => {
                let code = code
                    .filter(|c| matches!(c, 1000..=1003 | 1007..=1014 | 3000..=4999))
                    .unwrap_or(1000);
                let reason = match reason {
                    Some(serde_json::Value::String(text)) => text,
                    _ => String::new(),
                };
                return Dispatched::Close { code, reason };
            }
            Packet::Raw(_) => {
                metrics.error(ErrorKind::raw_message);
                return Dispatched::Done;
            }
        };
        Dispatched::Call { id, future }
    }
}
