//! Wire dialects: each turns frames into the one internal [`Packet`] model and back, with no IO.
//!
//! Everything above this module (router, connection logic) sees only packets, so the same route
//! serves every dialect.

pub mod ctproto;
pub mod socketcluster;

use std::borrow::Cow;

use serde_json::Value;

use crate::error::ApiError;

/// A call id (`cid` / `rid` in SocketCluster): a positive number chosen by the caller.
pub type CallId = u64;

/// One inbound message, as the layers above the dialect see it.
#[derive(Debug, Clone, PartialEq)]
pub enum Packet {
    /// The opening handshake. `data` is the request's data object (with `authToken`).
    Handshake {
        /// Call id to answer.
        id: CallId,
        /// The signed auth token the client offered, if any.
        auth_token: Option<String>,
    },
    /// CTProto's first message, `authorize`, with its payload for the authorizer.
    Authorize {
        /// Call id to answer.
        id: CallId,
        /// The authorize payload (e.g. `{token}`).
        payload: Value,
    },
    /// A procedure call. `id: None` is a transmit, which is never answered.
    Call {
        /// Call id for an invoke; `None` for a transmit.
        id: Option<CallId>,
        /// The route (event or procedure) name.
        route: String,
        /// The payload, `None` when the client left it out.
        data: Option<Value>,
    },
    /// A subscription request (SocketCluster `#subscribe`). Only the invoke form (`id` set)
    /// subscribes, as in the official server.
    Subscribe {
        /// Call id of an invoke; `None` for a transmit.
        id: Option<CallId>,
        /// The channel.
        channel: String,
        /// Data sent along with the subscription (seen by the subscribe stage).
        data: Option<Value>,
    },
    /// Leaving a channel (`#unsubscribe`, whose data is the bare channel name).
    Unsubscribe {
        /// Call id of an invoke; `None` for a transmit (what the official clients send).
        id: Option<CallId>,
        /// The channel.
        channel: String,
    },
    /// A publication: from a client to the server, or (in a client) delivered by the server.
    Publish {
        /// Call id of an invoke; `None` for a transmit or a delivery.
        id: Option<CallId>,
        /// The channel.
        channel: String,
        /// The published data.
        data: Option<Value>,
    },
    /// `#authenticate` with a signed token.
    Authenticate {
        /// Call id to answer.
        id: CallId,
        /// The token, if the data was a string.
        token: Option<String>,
    },
    /// `#removeAuthToken`: the sender drops its auth token.
    Deauthenticate,
    /// A reserved event with malformed data: answered with `error` when it was an invoke.
    Invalid {
        /// Call id of an invoke.
        id: Option<CallId>,
        /// What to answer.
        error: ApiError,
    },
    /// A reply to a call the server made.
    Reply {
        /// The id of the server's call.
        id: CallId,
        /// Success data or the peer's error.
        result: Result<Option<Value>, ApiError>,
    },
    /// A protocol-v1 client announcing that it is about to close (`#disconnect`).
    Disconnect {
        /// The close code it announced.
        code: Option<u16>,
        /// The reason it gave.
        reason: Option<Value>,
    },
    /// A message that is not a packet (e.g. non-JSON text); never answered.
    Raw(String),
}

/// What one inbound item means to the connection, in the order the frame carried them.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    /// A packet for the layers above.
    Packet(Packet),
    /// A pong (the client is alive).
    Pong,
    /// The client broke the protocol; close with this code and reason.
    Close(u16, Cow<'static, str>),
}
