//! Codecs turn dialect envelopes into frame payloads and back (pure, no IO).
//!
//! A SocketCluster codec sees the same packet shapes whatever the encoding: an event
//! `{event, data?, cid?}` or a reply `{rid, data?}` / `{rid, error}`. The dialect decides what the
//! packets mean; the codec only decides how they look on the wire. Pings never pass through a
//! codec.

pub mod json;
pub mod msgpack;
pub mod protobuf;

use std::sync::Arc;

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;
use thiserror::Error;

use crate::error::ApiError;

pub use json::{Binary, BINARY_KEY};

/// The kind of wire encoding an endpoint uses (as written in config).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Codec {
    /// JSON in text frames, as SocketCluster's default `sc-formatter`.
    #[default]
    Json,
    /// MessagePack in binary frames, as `sc-codec-min-bin`.
    Msgpack,
    /// Protobuf in binary frames, as `sc-codec-protobuf`, with types from `.proto` text.
    Protobuf,
}

/// A ready-to-use encoding: the codec and, for protobuf, its type table.
#[derive(Debug, Clone)]
pub enum Encoding {
    /// JSON.
    Json,
    /// MessagePack.
    Msgpack,
    /// Protobuf with this schema.
    Protobuf(Arc<protobuf::Schema>),
}

/// What a codec remembers about one connection (for protobuf: which type answers each
/// request).
#[derive(Debug, Default)]
pub struct CodecState {
    replies: protobuf::ReplyTypes,
}

impl Encoding {
    /// The kind of codec.
    pub fn codec(&self) -> Codec {
        match self {
            Self::Json => Codec::Json,
            Self::Msgpack => Codec::Msgpack,
            Self::Protobuf(_) => Codec::Protobuf,
        }
    }

    /// Distinguishes protobuf schemas (0 for the other codecs): publications are encoded once
    /// per (dialect, codec, schema).
    pub fn schema_id(&self) -> u64 {
        match self {
            Self::Protobuf(schema) => schema.id(),
            _ => 0,
        }
    }

    /// Decodes one frame payload; `binary` says whether it arrived in a binary frame.
    pub fn decode(&self, payload: &[u8], binary: bool, state: &mut CodecState) -> Decoded {
        match self {
            // sc-formatter reads text and binary frames alike.
            Self::Json => json::decode(payload),
            Self::Msgpack if binary => msgpack::decode(payload),
            Self::Protobuf(schema) if binary => schema.decode(payload, &mut state.replies),
            // Text frames under a binary codec carry no packets.
            _ => Decoded::Raw(String::from_utf8_lossy(payload).into_owned()),
        }
    }

    /// Appends the encoded envelope to `out` and says which frame type must carry it.
    pub fn encode(
        &self,
        envelope: &Envelope<'_>,
        state: &mut CodecState,
        out: &mut Vec<u8>,
    ) -> Result<FrameKind, CodecError> {
        match self {
            Self::Json => json::encode(envelope, out),
            Self::Msgpack => msgpack::encode(envelope, out),
            Self::Protobuf(schema) => schema.encode(envelope, &mut state.replies, out),
        }
    }

    /// The protocol-v1 ping (`#1`) as this codec sends it: raw text for JSON, through the codec
    /// for the binary ones (what v14-era clients with those codecs expect).
    pub fn v1_ping(&self) -> (FrameKind, Vec<u8>) {
        match self {
            Self::Json => (FrameKind::Text, b"#1".to_vec()),
            Self::Msgpack => (FrameKind::Binary, vec![0xa2, b'#', b'1']),
            Self::Protobuf(_) => (FrameKind::Binary, vec![0x01, protobuf::PING]),
        }
    }

    /// The protocol-v1 pong (`#2`) as this codec sends it.
    pub fn v1_pong(&self) -> (FrameKind, Vec<u8>) {
        match self {
            Self::Json => (FrameKind::Text, b"#2".to_vec()),
            Self::Msgpack => (FrameKind::Binary, vec![0xa2, b'#', b'2']),
            Self::Protobuf(_) => (FrameKind::Binary, vec![0x01, protobuf::PONG]),
        }
    }
}

/// Whether an encoded payload goes out as a text or a binary WebSocket frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// A text frame (the payload is UTF-8).
    Text,
    /// A binary frame.
    Binary,
}

/// What a frame decoded to.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    /// One or more packets, in order (a JSON array is a batch).
    Packets(Vec<Value>),
    /// Something that is not a packet at all: SocketCluster hands it to the app as a "raw"
    /// message and never replies to it.
    Raw(String),
    /// A JSON packet nested deeper than [`json::MAX_DEPTH`]; `cid` is its call id when it has
    /// one, so the caller can be told instead of left waiting.
    TooDeep {
        /// The packet's top-level `cid`.
        cid: Option<u64>,
    },
    /// A binary packet its codec could not read, whose call id it could still read: the caller
    /// is answered with an error instead of left waiting. (A frame without a readable call id
    /// is [`Decoded::Raw`], as the official codecs leave it.)
    Malformed {
        /// The packet's call id.
        cid: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// A batch read packet by packet because part of it could not be read whole: each item is
    /// one packet, in order ([`Decoded::Packets`] of one, or one that could not be read), and the
    /// readable ones are served as if they had come alone.
    Batch(Vec<Self>),
}

/// A packet to encode, borrowing its parts.
#[derive(Debug, Clone, Copy)]
pub enum Envelope<'a> {
    /// A transmit (`cid: None`) or an invoke.
    Event {
        /// Event (procedure) name.
        event: &'a str,
        /// Payload; left out of the frame when `None`.
        data: Option<&'a Value>,
        /// Call id for an invoke.
        cid: Option<u64>,
    },
    /// A reply to a call.
    Reply {
        /// The id of the call being answered.
        rid: u64,
        /// The result: success data (left out when `None`) or an error.
        result: Result<Option<&'a Value>, &'a ApiError>,
    },
}

/// Encoding failed; the message is dropped and the failure logged.
#[derive(Debug, Error)]
pub enum CodecError {
    /// A value could not be serialised.
    #[error("could not encode message: {0}")]
    Encode(String),
}

impl Serialize for Envelope<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match *self {
            Self::Event { event, data, cid } => {
                let len = 1 + usize::from(data.is_some()) + usize::from(cid.is_some());
                let mut map = serializer.serialize_map(Some(len))?;
                map.serialize_entry("event", event)?;
                if let Some(data) = data {
                    map.serialize_entry("data", &json::Wire(data))?;
                }
                if let Some(cid) = cid {
                    map.serialize_entry("cid", &cid)?;
                }
                map.end()
            }
            Self::Reply { rid, result } => {
                let has_body = !matches!(result, Ok(None));
                let mut map = serializer.serialize_map(Some(1 + usize::from(has_body)))?;
                map.serialize_entry("rid", &rid)?;
                match result {
                    Ok(Some(data)) => map.serialize_entry("data", &json::Wire(data))?,
                    Ok(None) => {}
                    Err(error) => map.serialize_entry("error", error)?,
                }
                map.end()
            }
        }
    }
}
