//! WebSocket frame layout (RFC 6455 §5): pure header parsing, masking and encoding, no IO.

use thiserror::Error;

/// The opcode in the low nibble of a frame's first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpCode {
    /// A continuation of a fragmented message.
    Continuation,
    /// A UTF-8 text message (or its first fragment).
    Text,
    /// A binary message (or its first fragment).
    Binary,
    /// A close control frame.
    Close,
    /// A ping control frame.
    Ping,
    /// A pong control frame.
    Pong,
}

impl OpCode {
    fn from_nibble(nibble: u8) -> Result<Self, FrameError> {
        Ok(match nibble {
            0x0 => Self::Continuation,
            0x1 => Self::Text,
            0x2 => Self::Binary,
            0x8 => Self::Close,
            0x9 => Self::Ping,
            0xA => Self::Pong,
            other => return Err(FrameError::UnknownOpcode(other)),
        })
    }

    fn nibble(self) -> u8 {
        match self {
            Self::Continuation => 0x0,
            Self::Text => 0x1,
            Self::Binary => 0x2,
            Self::Close => 0x8,
            Self::Ping => 0x9,
            Self::Pong => 0xA,
        }
    }

    /// Control frames (close, ping, pong) may not be fragmented and carry at most 125 bytes.
    pub fn is_control(self) -> bool {
        matches!(self, Self::Close | Self::Ping | Self::Pong)
    }
}

/// Which end of the connection is parsing: a server expects masked frames, a client unmasked ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// We are the server: every inbound frame must be masked.
    Server,
    /// We are the client: inbound frames must not be masked.
    Client,
}

/// A frame that breaks RFC 6455 or one of our limits. Every variant ends the connection with the
/// close code given by [`FrameError::close_code`].
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// One of the RSV1–RSV3 bits is set, but no extension was negotiated.
    #[error("reserved bits set without a negotiated extension")]
    ReservedBits,
    /// The opcode is one of the reserved values.
    #[error("unknown opcode {0:#x}")]
    UnknownOpcode(u8),
    /// A control frame is fragmented or longer than 125 bytes.
    #[error("malformed control frame")]
    BadControlFrame,
    /// A 64-bit payload length has its most significant bit set (RFC 6455 §5.2).
    #[error("64-bit payload length with the most significant bit set")]
    BadLength,
    /// A client sent an unmasked frame, or a server a masked one.
    #[error("frame masking does not match the sender's role")]
    BadMask,
    /// The declared payload length exceeds the configured maximum.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Declared (or accumulated) length.
        len: u64,
        /// Configured maximum.
        max: usize,
    },
    /// A continuation frame arrived with no message in progress, or a new data frame arrived
    /// while a fragmented message was still open.
    #[error("unexpected continuation or interleaved fragmented message")]
    BadFragment,
    /// A text message is not valid UTF-8.
    #[error("text message is not valid UTF-8")]
    InvalidUtf8,
    /// A close frame carries a 1-byte body or a code that may not be sent on the wire.
    #[error("malformed close frame")]
    BadClose,
}

impl FrameError {
    /// The close code a server sends when it meets this error (RFC 6455 §7.4.1).
    pub fn close_code(&self) -> u16 {
        match self {
            Self::TooLarge { .. } => 1009,
            Self::InvalidUtf8 => 1007,
            _ => 1002,
        }
    }
}

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Whether this is the final fragment of a message.
    pub fin: bool,
    /// The frame's opcode.
    pub opcode: OpCode,
    /// The masking key, if the frame is masked.
    pub mask: Option<[u8; 4]>,
    /// Payload length in bytes.
    pub payload_len: usize,
    /// Length of the header itself (2 to 14 bytes).
    pub header_len: usize,
}

impl FrameHeader {
    /// Bytes the whole frame takes: its header and its payload.
    pub fn frame_len(&self) -> usize {
        self.header_len.saturating_add(self.payload_len)
    }
}

/// Parses a frame header from the start of `buf`.
///
/// Returns `Ok(None)` when `buf` does not yet hold the whole header. The payload length is checked
/// against `max_payload` before any payload is read, so an oversized frame is refused at once.
pub fn parse_header(
    buf: &[u8],
    role: Role,
    max_payload: usize,
) -> Result<Option<FrameHeader>, FrameError> {
    let [b0, b1, ..] = *buf else {
        return Ok(None);
    };
    if b0 & 0x70 != 0 {
        return Err(FrameError::ReservedBits);
    }
    let fin = b0 & 0x80 != 0;
    let opcode = OpCode::from_nibble(b0 & 0x0F)?;
    let masked = b1 & 0x80 != 0;
    if masked != (role == Role::Server) {
        return Err(FrameError::BadMask);
    }
    let len7 = b1 & 0x7F;
    let (len, mut header_len) = match len7 {
        126 => {
            let Some(bytes) = buf.get(2..4) else {
                return Ok(None);
            };
            (u64::from(u16::from_be_bytes([bytes[0], bytes[1]])), 4)
        }
        127 => {
            let Some(bytes) = buf.get(2..10) else {
                return Ok(None);
            };
            if bytes[0] & 0x80 != 0 {
                return Err(FrameError::BadLength);
            }
            let mut eight = [0u8; 8];
            eight.copy_from_slice(bytes);
            (u64::from_be_bytes(eight), 10)
        }
        short => (u64::from(short), 2),
    };
    if opcode.is_control() && (!fin || len > 125) {
        return Err(FrameError::BadControlFrame);
    }
    if len > max_payload as u64 {
        return Err(FrameError::TooLarge {
            len,
            max: max_payload,
        });
    }
    let mask = if masked {
        let Some(bytes) = buf.get(header_len..header_len + 4) else {
            return Ok(None);
        };
        header_len += 4;
        Some([bytes[0], bytes[1], bytes[2], bytes[3]])
    } else {
        None
    };
    Ok(Some(FrameHeader {
        fin,
        opcode,
        mask,
        // `len <= max_payload`, which is a usize, so this cannot truncate.
        payload_len: len as usize,
        header_len,
    }))
}

/// Parses the frame at the start of `buf` once all of it is there: its header, whose
/// `header_len` and `payload_len` locate the payload in `buf`. `Ok(None)` while part of the
/// header or of the payload is still missing.
///
/// For reading frames in place from a buffer, without [`MessageReader`]'s copies and
/// reassembly of fragments (the payload is left masked if the frame is).
///
/// [`MessageReader`]: super::reader::MessageReader
pub fn parse_frame(
    buf: &[u8],
    role: Role,
    max_payload: usize,
) -> Result<Option<FrameHeader>, FrameError> {
    Ok(parse_header(buf, role, max_payload)?.filter(|header| header.frame_len() <= buf.len()))
}

/// XORs `data` with the 4-byte masking key, as if `data` started at payload offset 0.
///
/// Works a machine word at a time; the result is identical to the byte-by-byte definition.
pub fn apply_mask(data: &mut [u8], mask: [u8; 4]) {
    let word = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        let value = u64::from_ne_bytes(bytes) ^ word;
        chunk.copy_from_slice(&value.to_ne_bytes());
    }
    for (byte, key) in chunks.into_remainder().iter_mut().zip(mask.iter().cycle()) {
        *byte ^= key;
    }
}

/// Appends a frame header for a payload of `len` bytes to `out`, with an optional masking key.
pub fn write_header(
    out: &mut Vec<u8>,
    fin: bool,
    opcode: OpCode,
    len: usize,
    mask: Option<[u8; 4]>,
) {
    let b0 = if fin { 0x80 } else { 0 } | opcode.nibble();
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    out.push(b0);
    if len < 126 {
        out.push(mask_bit | len as u8);
    } else if let Ok(short) = u16::try_from(len) {
        out.push(mask_bit | 126);
        out.extend_from_slice(&short.to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    if let Some(key) = mask {
        out.extend_from_slice(&key);
    }
}

/// Appends one complete, unmasked (server-to-client) frame to `out`.
pub fn write_frame(out: &mut Vec<u8>, opcode: OpCode, payload: &[u8]) {
    out.reserve(payload.len() + 10);
    write_header(out, true, opcode, payload.len(), None);
    out.extend_from_slice(payload);
}

/// Appends one complete masked (client-to-server) frame to `out`.
pub fn write_masked_frame(out: &mut Vec<u8>, opcode: OpCode, payload: &[u8], mask: [u8; 4]) {
    out.reserve(payload.len() + 14);
    write_header(out, true, opcode, payload.len(), Some(mask));
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], mask);
}

/// Builds a close frame body: the code in network order followed by a UTF-8 reason, which is
/// truncated (on a character boundary) so the body fits in a control frame.
pub fn close_body(code: u16, reason: &str) -> Vec<u8> {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut body = Vec::with_capacity(2 + end);
    body.extend_from_slice(&code.to_be_bytes());
    body.extend_from_slice(&reason.as_bytes()[..end]);
    body
}

/// Parses a close frame body into `(code, reason)`; an empty body is `None` (no status).
pub fn parse_close_body(body: &[u8]) -> Result<Option<(u16, String)>, FrameError> {
    match body {
        [] => Ok(None),
        [_] => Err(FrameError::BadClose),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            let sendable = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
            if !sendable {
                return Err(FrameError::BadClose);
            }
            let reason = simdutf8::basic::from_utf8(reason).map_err(|_| FrameError::InvalidUtf8)?;
            Ok(Some((code, reason.to_owned())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 1 << 20;

    #[test]
    fn parses_masked_hello_from_rfc_example() {
        // RFC 6455 §5.7: a single-frame masked text message "Hello".
        let frame = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let header = parse_header(&frame, Role::Server, MAX).unwrap().unwrap();
        assert_eq!(header.opcode, OpCode::Text);
        assert!(header.fin);
        assert_eq!(header.payload_len, 5);
        assert_eq!(header.header_len, 6);
        let mut payload = frame[6..].to_vec();
        apply_mask(&mut payload, header.mask.unwrap());
        assert_eq!(payload, b"Hello");
    }

    #[test]
    fn parses_unmasked_frames_as_client_and_rejects_them_as_server() {
        let frame = [0x81, 0x05, b'H', b'e', b'l', b'l', b'o'];
        let header = parse_header(&frame, Role::Client, MAX).unwrap().unwrap();
        assert_eq!((header.payload_len, header.header_len), (5, 2));
        assert_eq!(
            parse_header(&frame, Role::Server, MAX),
            Err(FrameError::BadMask)
        );
    }

    #[test]
    fn reports_incomplete_headers() {
        assert_eq!(parse_header(&[0x81], Role::Server, MAX), Ok(None));
        assert_eq!(
            parse_header(&[0x82, 0xFE, 0x01], Role::Server, MAX),
            Ok(None)
        );
        assert_eq!(
            parse_header(&[0x82, 0xFE, 0x01, 0x00, 1, 2], Role::Server, MAX),
            Ok(None)
        );
        assert_eq!(
            parse_header(&[0x82, 0xFF, 0, 0, 0, 0], Role::Server, MAX),
            Ok(None)
        );
    }

    #[test]
    fn parses_16_and_64_bit_lengths() {
        let header = parse_header(&[0x82, 0xFE, 0x01, 0x00, 1, 2, 3, 4], Role::Server, MAX)
            .unwrap()
            .unwrap();
        assert_eq!((header.payload_len, header.header_len), (256, 8));
        let frame = [0x82, 0xFF, 0, 0, 0, 0, 0, 1, 0, 0, 9, 9, 9, 9];
        let header = parse_header(&frame, Role::Server, MAX).unwrap().unwrap();
        assert_eq!((header.payload_len, header.header_len), (65536, 14));
    }

    #[test]
    fn refuses_oversized_frames_from_the_header_alone() {
        // 10 MiB declared, nothing of the payload present yet.
        let frame = [0x82, 0xFF, 0, 0, 0, 0, 0, 0xA0, 0, 0, 1, 2, 3, 4];
        let err = parse_header(&frame, Role::Server, MAX).unwrap_err();
        assert_eq!(
            err,
            FrameError::TooLarge {
                len: 10 << 20,
                max: MAX
            }
        );
        assert_eq!(err.close_code(), 1009);
    }

    #[test]
    fn refuses_64_bit_lengths_with_the_top_bit_set() {
        let frame = [0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4];
        let err = parse_header(&frame, Role::Server, MAX).unwrap_err();
        assert_eq!(err, FrameError::BadLength);
        assert_eq!(err.close_code(), 1002);
        // Refused as soon as the length bytes are there, whatever the limit.
        assert_eq!(
            parse_header(&frame[..10], Role::Server, usize::MAX),
            Err(FrameError::BadLength)
        );
    }

    #[test]
    fn rejects_reserved_bits_opcodes_and_bad_control_frames() {
        assert_eq!(
            parse_header(&[0xC1, 0x80, 0, 0, 0, 0], Role::Server, MAX),
            Err(FrameError::ReservedBits)
        );
        assert_eq!(
            parse_header(&[0x83, 0x80, 0, 0, 0, 0], Role::Server, MAX),
            Err(FrameError::UnknownOpcode(3))
        );
        // Fragmented ping.
        assert_eq!(
            parse_header(&[0x09, 0x80, 0, 0, 0, 0], Role::Server, MAX),
            Err(FrameError::BadControlFrame)
        );
        // Ping with 126 bytes.
        assert_eq!(
            parse_header(&[0x89, 0xFE, 0, 126], Role::Server, MAX),
            Err(FrameError::BadControlFrame)
        );
    }

    #[test]
    fn parses_whole_frames_in_place() {
        // Two unmasked server frames back to back: text "hi", then an empty ping.
        let buf = [0x81, 0x02, b'h', b'i', 0x89, 0x00];
        let first = parse_frame(&buf, Role::Client, MAX).unwrap().unwrap();
        assert_eq!((first.opcode, first.fin), (OpCode::Text, true));
        assert_eq!((first.header_len, first.payload_len), (2, 2));
        assert_eq!(first.frame_len(), 4);
        assert_eq!(&buf[first.header_len..first.frame_len()], b"hi");
        let second = parse_frame(&buf[4..], Role::Client, MAX).unwrap().unwrap();
        assert_eq!((second.opcode, second.frame_len()), (OpCode::Ping, 2));
        assert_eq!(parse_frame(&buf[6..], Role::Client, MAX), Ok(None));
    }

    #[test]
    fn waits_for_the_whole_payload() {
        assert_eq!(
            parse_frame(&[0x81, 0x02, b'h'], Role::Client, MAX),
            Ok(None)
        );
        // A 256-byte binary frame with a 16-bit length.
        let mut frame = vec![0x82, 0x7E, 0x01, 0x00];
        frame.extend_from_slice(&[7; 255]);
        assert_eq!(parse_frame(&frame, Role::Client, MAX), Ok(None));
        frame.push(7);
        let header = parse_frame(&frame, Role::Client, MAX).unwrap().unwrap();
        assert_eq!((header.header_len, header.payload_len), (4, 256));
        // Masked frames are checked against the role as in `parse_header`.
        assert_eq!(
            parse_frame(&[0x81, 0x82, 1, 2, 3, 4, 0, 0], Role::Client, MAX),
            Err(FrameError::BadMask)
        );
        let masked = parse_frame(&[0x81, 0x82, 1, 2, 3, 4, 0, 0], Role::Server, MAX)
            .unwrap()
            .unwrap();
        assert_eq!((masked.header_len, masked.frame_len()), (6, 8));
    }

    #[test]
    fn writes_headers_for_each_length_class() {
        let mut out = Vec::new();
        write_frame(&mut out, OpCode::Text, b"hi");
        assert_eq!(out, [0x81, 0x02, b'h', b'i']);
        out.clear();
        write_header(&mut out, true, OpCode::Binary, 300, None);
        assert_eq!(out, [0x82, 0x7E, 0x01, 0x2C]);
        out.clear();
        write_header(&mut out, false, OpCode::Text, 70_000, Some([1, 2, 3, 4]));
        assert_eq!(out, [0x01, 0xFF, 0, 0, 0, 0, 0, 1, 0x11, 0x70, 1, 2, 3, 4]);
    }

    #[test]
    fn masked_frames_round_trip() {
        let payload: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let mut out = Vec::new();
        write_masked_frame(&mut out, OpCode::Binary, &payload, [9, 8, 7, 6]);
        let header = parse_header(&out, Role::Server, MAX).unwrap().unwrap();
        let mut body = out[header.header_len..].to_vec();
        apply_mask(&mut body, header.mask.unwrap());
        assert_eq!(body, payload);
    }

    #[test]
    fn mask_matches_bytewise_definition_for_every_length() {
        let key = [0xA1, 0x02, 0xF3, 0x44];
        for len in 0..40 {
            let original: Vec<u8> = (0..len as u8).collect();
            let mut fast = original.clone();
            apply_mask(&mut fast, key);
            let slow: Vec<u8> = original
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ key[i % 4])
                .collect();
            assert_eq!(fast, slow, "length {len}");
        }
    }

    #[test]
    fn close_bodies() {
        assert_eq!(close_body(1001, "bye"), [0x03, 0xE9, b'b', b'y', b'e']);
        assert_eq!(
            parse_close_body(&[0x0F, 0xA1, b'o', b'k']),
            Ok(Some((4001, "ok".into())))
        );
        assert_eq!(parse_close_body(&[]), Ok(None));
        assert_eq!(parse_close_body(&[0x03]), Err(FrameError::BadClose));
        // 1005 and 1006 may never appear on the wire.
        assert_eq!(parse_close_body(&[0x03, 0xED]), Err(FrameError::BadClose));
        assert_eq!(
            parse_close_body(&[0x03, 0xE8, 0xFF]),
            Err(FrameError::InvalidUtf8)
        );
        // A long reason is cut on a character boundary so the body fits in 125 bytes.
        let long = "é".repeat(100);
        let body = close_body(1000, &long);
        assert!(body.len() <= 125);
        assert!(std::str::from_utf8(&body[2..]).is_ok());
    }
}
