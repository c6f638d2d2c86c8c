//! Cuts a wrapped program's output into messages for its room, and encodes the room's client
//! messages as the program's input (pure: no IO).
//!
//! # Child → clients
//!
//! [`OutputDecoder`] takes the child's stdout in whatever chunks the pipe returned and yields
//! [`ChildMessage`]s, according to an [`OutputMode`]:
//!
//! - [`OutputMode::Lines`] (the default): one message per `\n`-terminated line, without the `\n`
//!   and without one `\r` just before it. Empty lines are (empty) messages.
//! - [`OutputMode::Delimiters`] (`--delimiters`, `--null`): one message per piece ending at any of
//!   the given bytes; nothing else is special, not even `\r` or `\n`.
//! - [`OutputMode::Binary`] (`--binary`): each chunk as read is one binary message.
//! - [`OutputMode::Gwsocket`]: gwsocket's length-prefixed frames (see [`gwsocket_frame`]).
//!
//! Nothing is lost and memory stays bounded: a piece longer than the decoder's maximum message
//! size is delivered as several messages of at most that size (cut, when possible, at a UTF-8
//! character boundary), and at end of output ([`OutputDecoder::finish`]) a last piece without a
//! delimiter is a message too. Pieces that are not valid UTF-8 go out as binary messages (where
//! ScaleSocket sent an empty string). Two exceptions drop data rather than misroute it, and are
//! reported through [`OutputDecoder::take_errors`]: a gwsocket frame over the limit, or of an
//! unknown type, is skipped as its bytes arrive (never buffered); and with JSON framing an
//! over-long piece that may be a JSON object is dropped, since its `_to` cannot be read and
//! sending it to everyone could leak a private message.
//!
//! With [`ServerFraming::Json`], each complete line or delimited piece that is a JSON object is
//! read for routing headers: `_to` (a connection id; missing or `null` means everyone), `_meta`
//! (store as room metadata instead of sending) and `_cache` (eligible for `--cache tagged`).
//! Messages are sent byte for byte as the program wrote them.
//!
//! # Clients → child
//!
//! [`encode_input`] writes one client message in the program's [`ClientFraming`]: a line, raw
//! bytes, a JSON object with `"_from"` set to the sender, or a gwsocket frame.
//!
//! The parts: `output` cuts lines, delimited pieces and binary chunks and reads JSON routing
//! headers; `gwsocket` reads and writes gwsocket frames (both directions); `input` encodes
//! client messages. This module holds what they share and re-exports their public items.

mod gwsocket;
mod input;
mod output;
#[cfg(test)]
mod test_decode;

use bytes::Bytes;
use thiserror::Error;

pub use gwsocket::{gwsocket_frame, GWSOCKET_BINARY, GWSOCKET_HEADER_LEN, GWSOCKET_TEXT};
pub use input::{encode_input, ClientFraming, InputError};
pub use output::{parse_delimiters, DelimiterError, OutputDecoder, OutputMode, ServerFraming};

/// How many [`FramingError`]s an [`OutputDecoder`] keeps until they are taken; later ones are
/// only counted (see [`OutputDecoder::errors_total`]), so a misbehaving program cannot make the
/// decoder grow without bound.
pub const MAX_PENDING_ERRORS: usize = 64;

/// One message from the child, ready to route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildMessage {
    /// The one connection to send it to, or `None` for everyone in the room. An id that is not
    /// in the room reaches nobody.
    pub to: Option<u32>,
    /// Whether it goes out as a binary WebSocket message: always in binary mode and for
    /// gwsocket type 2, and for any payload that is not valid UTF-8.
    pub binary: bool,
    /// The bytes to send, exactly as the child wrote them (for a `meta` message: the object
    /// without its `_meta` key, re-serialised).
    pub payload: Bytes,
    /// A JSON object with `"_meta": true`: store the payload as the room's metadata, do not
    /// send it to anyone (whatever `to` says).
    pub meta: bool,
    /// A JSON object with `"_cache": true`: kept by a `--cache tagged:N` history.
    pub cache: bool,
}

impl ChildMessage {
    /// A message for everyone in the room, with no metadata or cache flag.
    pub fn new(payload: impl Into<Bytes>, binary: bool) -> Self {
        Self {
            to: None,
            binary,
            payload: payload.into(),
            meta: false,
            cache: false,
        }
    }

    /// A text message for everyone, or a binary one if `payload` is not valid UTF-8.
    fn text(payload: Vec<u8>) -> Self {
        let binary = std::str::from_utf8(&payload).is_err();
        Self::new(payload, binary)
    }
}

/// Something in the child's output that could not be delivered as written. Nothing here stops
/// the room: the caller logs it (and may count it) and carries on.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FramingError {
    /// A gwsocket frame's type was neither 1 (text) nor 2 (binary). Its payload was skipped and
    /// decoding went on with the next frame.
    #[error(
        "gwsocket frame (destination {to}) has unknown type {kind}; its {len} payload bytes were skipped"
    )]
    UnknownType {
        /// The destination id from the header.
        to: u32,
        /// The type from the header.
        kind: u32,
        /// The declared payload length.
        len: u32,
    },
    /// A gwsocket frame declared a payload longer than the maximum message size. Its payload was
    /// skipped as it arrived (never buffered) and decoding went on with the next frame.
    #[error(
        "gwsocket frame (destination {to}) declares {len} payload bytes, over the {max}-byte message limit; it was skipped"
    )]
    TooLong {
        /// The destination id from the header.
        to: u32,
        /// The declared payload length.
        len: u32,
        /// The maximum message size.
        max: usize,
    },
    /// The output ended inside a gwsocket frame; the partial frame was dropped.
    #[error(
        "output ended {received} bytes into a gwsocket frame of at least {expected} bytes; the partial frame was dropped"
    )]
    Truncated {
        /// Bytes of the frame (header included) that did arrive.
        received: usize,
        /// The frame's full length, header included (12 when the header itself was cut).
        expected: u64,
    },
    /// With JSON framing, a line (or delimited piece) that may be a JSON object grew over the
    /// maximum message size. Its headers cannot be read without holding all of it, and sending it
    /// to everyone could leak a message meant for one client, so it was dropped up to its
    /// delimiter. (Over-long pieces that cannot be objects are delivered in fragments.)
    #[error(
        "a JSON line longer than the {max}-byte message limit was dropped (its `_to` could not be read)"
    )]
    JsonTooLong {
        /// The maximum message size.
        max: usize,
    },
    /// A JSON line had a routing header of the wrong type (`_to` not a `u32` or `null`, `_meta`
    /// or `_cache` not a boolean or `null`). As in ScaleSocket the whole header was ignored: the
    /// line was sent, unchanged, to everyone.
    #[error(
        "JSON header `{field}` has the wrong type; the header was ignored and the line sent to everyone"
    )]
    IgnoredHeader {
        /// `"_to"`, `"_meta"` or `"_cache"`.
        field: &'static str,
    },
}

impl FramingError {
    /// Whether output was lost: true for every problem except [`FramingError::IgnoredHeader`],
    /// whose line was still delivered (to everyone). Count these as dropped messages.
    pub fn dropped(&self) -> bool {
        !matches!(self, Self::IgnoredHeader { .. })
    }
}

/// The problems an [`OutputDecoder`] found and not yet handed out: at most
/// [`MAX_PENDING_ERRORS`] kept, all of them counted.
#[derive(Debug, Default)]
struct ErrorLog {
    /// Problems not yet taken.
    pending: Vec<FramingError>,
    /// Every problem ever reported, taken or not.
    total: u64,
}

impl ErrorLog {
    /// Records `error`, keeping it if there is room.
    fn report(&mut self, error: FramingError) {
        self.total = self.total.saturating_add(1);
        if self.pending.len() < MAX_PENDING_ERRORS {
            self.pending.push(error);
        }
    }

    /// Hands out the problems kept so far.
    fn take(&mut self) -> Vec<FramingError> {
        std::mem::take(&mut self.pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::room::framing::test_decode::MAX;

    #[test]
    fn pending_errors_are_capped_but_counted() {
        let frame = b"\0\0\0\0\0\0\0\x09\0\0\0\0";
        let mut decoder = OutputDecoder::new(OutputMode::Gwsocket, ServerFraming::None, MAX);
        let mut out = Vec::new();
        for _ in 0..100 {
            decoder.feed(frame, &mut out);
        }
        assert_eq!(decoder.take_errors().len(), MAX_PENDING_ERRORS);
        assert_eq!(decoder.errors_total(), 100);
        decoder.feed(frame, &mut out);
        assert_eq!(decoder.take_errors().len(), 1);
    }

    #[test]
    fn only_ignored_headers_lose_nothing() {
        assert!(!FramingError::IgnoredHeader { field: "_to" }.dropped());
        assert!(FramingError::JsonTooLong { max: 1 }.dropped());
        assert!(FramingError::Truncated {
            received: 1,
            expected: 12
        }
        .dropped());
    }

    #[test]
    fn framing_errors_read_well() {
        assert_eq!(
            FramingError::TooLong {
                to: 1,
                len: 10,
                max: 4
            }
            .to_string(),
            "gwsocket frame (destination 1) declares 10 payload bytes, over the 4-byte message limit; it was skipped"
        );
    }
}
