//! gwsocket framing, both directions: reading the child's length-prefixed frames as they
//! arrive, and writing frames (for the child's input and for tests).

use std::mem;

use super::{ChildMessage, ErrorLog, FramingError};

/// Length of a gwsocket frame header: destination id, type and payload length, each a
/// big-endian `u32`.
pub const GWSOCKET_HEADER_LEN: usize = 12;

/// The gwsocket frame type of a text payload.
pub const GWSOCKET_TEXT: u32 = 1;

/// The gwsocket frame type of a binary payload.
pub const GWSOCKET_BINARY: u32 = 2;

/// Where the reader of the child's gwsocket frames is within the current frame.
#[derive(Debug)]
pub(super) enum FrameReader {
    /// Reading the 12-byte header; `have` bytes of it are in `header`.
    Header {
        header: [u8; GWSOCKET_HEADER_LEN],
        have: usize,
    },
    /// Collecting a payload of `len` bytes (at most the maximum message size); it grows as
    /// bytes arrive rather than being allocated from the declared length.
    Payload {
        to: u32,
        binary: bool,
        len: usize,
        payload: Vec<u8>,
    },
    /// Dropping the payload of a rejected frame: `remaining` bytes still to skip.
    Skip { remaining: u32 },
}

impl FrameReader {
    /// Between frames, nothing read.
    pub(super) const START: Self = Self::Header {
        header: [0; GWSOCKET_HEADER_LEN],
        have: 0,
    };

    /// Reads `bytes`, the next chunk of output, appending every frame it completes to `out`.
    /// A frame whose payload is over `max` bytes, or of an unknown type, is reported to
    /// `errors` and skipped as its bytes arrive.
    pub(super) fn feed(
        &mut self,
        bytes: &[u8],
        max: usize,
        out: &mut Vec<ChildMessage>,
        errors: &mut ErrorLog,
    ) {
        let mut rest = bytes;
        while !rest.is_empty() {
            match self {
                Self::Header { header, have } => {
                    let want = GWSOCKET_HEADER_LEN.saturating_sub(*have);
                    let (now, later) = rest.split_at(want.min(rest.len()));
                    if let Some(slot) = header.get_mut(*have..*have + now.len()) {
                        slot.copy_from_slice(now);
                    }
                    *have += now.len();
                    rest = later;
                    if *have >= GWSOCKET_HEADER_LEN {
                        let header = *header;
                        *self = Self::start_frame(header, max, out, errors);
                    }
                }
                Self::Payload {
                    to,
                    binary,
                    len,
                    payload,
                } => {
                    let want = len.saturating_sub(payload.len());
                    let (now, later) = rest.split_at(want.min(rest.len()));
                    payload.extend_from_slice(now);
                    rest = later;
                    if payload.len() >= *len {
                        let message = gwsocket_message(*to, *binary, mem::take(payload));
                        out.push(message);
                        *self = Self::START;
                    }
                }
                Self::Skip { remaining } => {
                    let skip = rest.len().min(*remaining as usize);
                    rest = rest.get(skip..).unwrap_or_default();
                    *remaining -= skip as u32;
                    if *remaining == 0 {
                        *self = Self::START;
                    }
                }
            }
        }
    }

    /// A complete header arrived: the state that reads (or skips) the payload that follows.
    fn start_frame(
        header: [u8; GWSOCKET_HEADER_LEN],
        max: usize,
        out: &mut Vec<ChildMessage>,
        errors: &mut ErrorLog,
    ) -> Self {
        let [a, b, c, d, e, f, g, h, i, j, k, l] = header;
        let to = u32::from_be_bytes([a, b, c, d]);
        let kind = u32::from_be_bytes([e, f, g, h]);
        let len = u32::from_be_bytes([i, j, k, l]);
        let fits = usize::try_from(len).ok().filter(|len| *len <= max);
        let binary = match kind {
            GWSOCKET_TEXT => false,
            GWSOCKET_BINARY => true,
            _ => {
                errors.report(FramingError::UnknownType { to, kind, len });
                return Self::skip(len);
            }
        };
        match fits {
            None => {
                errors.report(FramingError::TooLong { to, len, max });
                Self::skip(len)
            }
            Some(0) => {
                out.push(gwsocket_message(to, binary, Vec::new()));
                Self::START
            }
            Some(len) => Self::Payload {
                to,
                binary,
                len,
                payload: Vec::new(),
            },
        }
    }

    /// The state that skips a rejected frame's `len` payload bytes.
    fn skip(len: u32) -> Self {
        if len == 0 {
            Self::START
        } else {
            Self::Skip { remaining: len }
        }
    }

    /// Ends the output: a partial frame is dropped and reported as
    /// [`FramingError::Truncated`] (a frame that was being skipped is not reported again). The
    /// reader is then back at [`Self::START`].
    pub(super) fn finish(&mut self, errors: &mut ErrorLog) {
        match mem::replace(self, Self::START) {
            Self::Header { have: 0, .. } | Self::Skip { .. } => {}
            Self::Header { have, .. } => errors.report(FramingError::Truncated {
                received: have,
                expected: GWSOCKET_HEADER_LEN as u64,
            }),
            Self::Payload { len, payload, .. } => errors.report(FramingError::Truncated {
                received: GWSOCKET_HEADER_LEN + payload.len(),
                expected: (GWSOCKET_HEADER_LEN + len) as u64,
            }),
        }
    }

    /// How many bytes of an unfinished frame the reader holds.
    pub(super) fn buffered_len(&self) -> usize {
        match self {
            Self::Header { have, .. } => *have,
            Self::Payload { payload, .. } => payload.len(),
            Self::Skip { .. } => 0,
        }
    }

    /// Whether the reader is between frames.
    pub(super) fn is_idle(&self) -> bool {
        matches!(self, Self::Header { have: 0, .. })
    }
}

/// A complete gwsocket payload as a message: destination 0 is everyone; text that is not valid
/// UTF-8 goes out as binary.
fn gwsocket_message(to: u32, binary: bool, payload: Vec<u8>) -> ChildMessage {
    let mut message = if binary {
        ChildMessage::new(payload, true)
    } else {
        ChildMessage::text(payload)
    };
    message.to = (to != 0).then_some(to);
    message
}

/// A gwsocket frame (the same layout in both directions): the big-endian `u32`s `id` (the
/// destination from the child, 0 meaning everyone; the sender towards the child), type (1 text,
/// 2 binary) and payload length, then the payload. A payload over `u32::MAX` bytes is cut to
/// that length so the frame stays well formed.
///
/// ```
/// use sockyard::room::framing::gwsocket_frame;
///
/// assert_eq!(gwsocket_frame(2, false, b"hi"), b"\0\0\0\x02\0\0\0\x01\0\0\0\x02hi");
/// ```
pub fn gwsocket_frame(id: u32, binary: bool, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let payload = payload.get(..len as usize).unwrap_or(payload);
    let mut frame = Vec::with_capacity(GWSOCKET_HEADER_LEN + payload.len());
    write_gwsocket_header(id, binary, len, &mut frame);
    frame.extend_from_slice(payload);
    frame
}

/// Appends a gwsocket header for a payload of `len` bytes from (or to) `id`.
pub(super) fn write_gwsocket_header(id: u32, binary: bool, len: u32, out: &mut Vec<u8>) {
    let kind = if binary {
        GWSOCKET_BINARY
    } else {
        GWSOCKET_TEXT
    };
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::room::framing::test_decode::*;
    use crate::room::framing::{OutputDecoder, OutputMode, ServerFraming};

    // ----- gwsocket -----

    fn gw(input: &[u8], max: usize) -> (Vec<ChildMessage>, Vec<FramingError>) {
        same_at_every_split(OutputMode::Gwsocket, ServerFraming::None, max, input)
    }

    #[test]
    fn gwsocket_frames_literal() {
        let input = b"\0\0\0\0\0\0\0\x01\0\0\0\x03all\
                      \0\0\0\x02\0\0\0\x01\0\0\0\x03two\
                      \0\0\0\x05\0\0\0\x02\0\0\0\x02\x00\xff";
        let (out, errors) = gw(input, MAX);
        assert_eq!(
            out,
            [
                text(b"all"),
                to(2, text(b"two")),
                to(5, binary(b"\x00\xff"))
            ]
        );
        assert_eq!(errors, []);
    }

    #[test]
    fn gwsocket_round_trips_its_own_frames() {
        let input = [
            gwsocket_frame(0, false, "héllo".as_bytes()),
            gwsocket_frame(9, true, b"\x01\x02"),
            gwsocket_frame(u32::MAX, false, b""),
        ]
        .concat();
        let (out, _) = gw(&input, MAX);
        assert_eq!(
            out,
            [
                text("héllo".as_bytes()),
                to(9, binary(b"\x01\x02")),
                to(u32::MAX, text(b""))
            ]
        );
    }

    #[test]
    fn gwsocket_newlines_are_ordinary_bytes() {
        // Destination 10, length 10, a payload of newlines: ScaleSocket cut this at every 0x0A.
        let mut input = b"\0\0\0\x0a\0\0\0\x01\0\0\0\x0a".to_vec();
        input.extend_from_slice(b"\n\n\n\n\n\n\n\n\n\n");
        input.extend_from_slice(b"\0\0\0\0\0\0\0\x02\0\0\0\x01\n");
        let (out, errors) = gw(&input, MAX);
        assert_eq!(out, [to(10, text(&[b'\n'; 10])), binary(b"\n")]);
        assert_eq!(errors, []);
    }

    #[test]
    fn gwsocket_ignores_json_framing() {
        let input = gwsocket_frame(0, false, br#"{"_to":3,"_meta":true}"#);
        let (out, _) = decode_with(OutputMode::Gwsocket, ServerFraming::Json, MAX, &[&input]);
        assert_eq!(out, [text(br#"{"_to":3,"_meta":true}"#)]);
    }

    #[test]
    fn gwsocket_invalid_utf8_text_is_binary() {
        let (out, _) = gw(b"\0\0\0\0\0\0\0\x01\0\0\0\x02\xc3\x28", MAX);
        assert_eq!(out, [binary(b"\xc3\x28")]);
    }

    #[test]
    fn gwsocket_unknown_type_is_skipped_and_reported() {
        let input = b"\0\0\0\x04\0\0\0\x03\0\0\0\x05\x01\x02\x03\x04\x05\
                      \0\0\0\0\0\0\0\x00\0\0\0\x00\
                      \0\0\0\0\0\0\0\x01\0\0\0\x02ok";
        let (out, errors) = gw(input, MAX);
        assert_eq!(out, [text(b"ok")]);
        assert_eq!(
            errors,
            [
                FramingError::UnknownType {
                    to: 4,
                    kind: 3,
                    len: 5
                },
                FramingError::UnknownType {
                    to: 0,
                    kind: 0,
                    len: 0
                }
            ]
        );
    }

    #[test]
    fn scalesocket_little_endian_frame_is_reported_not_misread() {
        // What ScaleSocket's scripts write: destination 2, text, 3 bytes, little-endian.
        let (out, errors) = gw(b"\x02\0\0\0\x01\0\0\0\x03\0\0\0two\n", MAX);
        assert_eq!(out, []);
        assert_eq!(
            errors,
            [FramingError::UnknownType {
                to: 0x0200_0000,
                kind: 0x0100_0000,
                len: 0x0300_0000
            }]
        );
    }

    #[test]
    fn gwsocket_oversized_frame_is_skipped_unbuffered() {
        let mut input = b"\0\0\0\x01\0\0\0\x01\0\0\0\x0a0123456789".to_vec();
        input.extend_from_slice(&gwsocket_frame(0, false, b"fits"));
        let (out, errors) = gw(&input, 4);
        assert_eq!(out, [text(b"fits")]);
        assert_eq!(
            errors,
            [FramingError::TooLong {
                to: 1,
                len: 10,
                max: 4
            }]
        );
        // The skipped payload is never held.
        let mut decoder = OutputDecoder::new(OutputMode::Gwsocket, ServerFraming::None, 4);
        let mut out = Vec::new();
        for byte in &input[..21] {
            decoder.feed(&[*byte], &mut out);
            assert!(decoder.buffered_len() <= GWSOCKET_HEADER_LEN);
        }
        assert_eq!(decoder.buffered_len(), 0);
        assert!(!decoder.is_idle());
    }

    #[test]
    fn gwsocket_huge_declared_length_allocates_nothing() {
        let mut decoder = OutputDecoder::new(OutputMode::Gwsocket, ServerFraming::None, MAX);
        let mut out = Vec::new();
        decoder.feed(b"\0\0\0\0\0\0\0\x02\xff\xff\xff\xff", &mut out);
        decoder.feed(&[0; 4096], &mut out);
        assert_eq!(decoder.buffered_len(), 0);
        assert_eq!(
            decoder.take_errors(),
            [FramingError::TooLong {
                to: 0,
                len: u32::MAX,
                max: MAX
            }]
        );
        // A frame within the limit grows with its bytes, not with its declared length.
        let mut decoder = OutputDecoder::new(OutputMode::Gwsocket, ServerFraming::None, MAX);
        decoder.feed(b"\0\0\0\0\0\0\0\x02\0\x10\0\0abc", &mut out);
        assert_eq!(decoder.buffered_len(), 3);
        let mut reader = FrameReader::START;
        let mut errors = ErrorLog::default();
        reader.feed(
            b"\0\0\0\0\0\0\0\x02\0\x10\0\0abc",
            MAX,
            &mut out,
            &mut errors,
        );
        match &reader {
            FrameReader::Payload { payload, .. } => assert!(payload.capacity() < 4096),
            other => panic!("unexpected state {other:?}"),
        }
    }

    #[test]
    fn gwsocket_truncated_frames_are_reported_at_finish() {
        let frame = gwsocket_frame(3, false, b"hello");
        for cut in 1..frame.len() {
            let (out, errors) = decode_with(
                OutputMode::Gwsocket,
                ServerFraming::None,
                MAX,
                &[&frame, &frame[..cut]],
            );
            assert_eq!(out, [to(3, text(b"hello"))], "cut at {cut}");
            assert_eq!(
                errors,
                [FramingError::Truncated {
                    received: cut,
                    expected: if cut < GWSOCKET_HEADER_LEN { 12 } else { 17 }
                }],
                "cut at {cut}"
            );
        }
        // A frame being skipped is reported once, not again at the end.
        let (_, errors) = decode_with(
            OutputMode::Gwsocket,
            ServerFraming::None,
            MAX,
            &[b"\0\0\0\0\0\0\0\x07\0\0\0\x09abc"],
        );
        assert_eq!(errors.len(), 1);
    }

    #[test]
    fn gwsocket_frame_literal() {
        assert_eq!(
            gwsocket_frame(0, true, b"\xff"),
            b"\0\0\0\0\0\0\0\x02\0\0\0\x01\xff"
        );
        assert_eq!(
            gwsocket_frame(258, false, &[b'a'; 256]),
            [&b"\0\0\x01\x02\0\0\0\x01\0\0\x01\0"[..], &[b'a'; 256]].concat()
        );
    }
}
