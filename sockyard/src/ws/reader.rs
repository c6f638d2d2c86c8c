//! Turns a stream of bytes into whole WebSocket messages: frame parsing, unmasking, reassembly of
//! fragments and UTF-8 checks, holding no buffer at all between messages.

use bytes::Bytes;

use super::frame::{self, FrameError, OpCode, Role};

/// One complete WebSocket message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message; its bytes are valid UTF-8.
    Text(Bytes),
    /// A binary message.
    Binary(Bytes),
    /// A ping control frame with its application data.
    Ping(Bytes),
    /// A pong control frame with its application data.
    Pong(Bytes),
    /// A close frame: `None` when it carried no status code.
    Close(Option<(u16, String)>),
}

/// Incremental message parser for one connection.
///
/// Bytes are fed in whatever pieces the socket returned. While the connection is idle (no
/// partial frame, no open fragmented message) the reader owns no heap memory, so an idle
/// connection costs only this struct.
#[derive(Debug)]
pub struct MessageReader {
    role: Role,
    max_message: usize,
    /// Bytes of a frame that has not been completely received yet.
    partial: Vec<u8>,
    /// A fragmented message being reassembled.
    fragments: Option<Fragmented>,
    /// The peer's close frame has been read: it is the last frame the peer may send, so
    /// whatever follows it is discarded unread (RFC 6455 §5.5.1).
    closed: bool,
}

impl MessageReader {
    /// A reader for the given side of the connection that refuses messages over `max_message`
    /// bytes (whether sent in one frame or in fragments).
    pub fn new(role: Role, max_message: usize) -> Self {
        Self {
            role,
            max_message,
            partial: Vec::new(),
            fragments: None,
            closed: false,
        }
    }

    /// Whether the reader holds no partial frame and no partial message.
    pub fn is_idle(&self) -> bool {
        self.partial.is_empty() && self.fragments.is_none()
    }

    /// Parses as many complete messages as `input` (together with any bytes kept from earlier
    /// calls) contains, appending them to `out`. Leftover bytes of an incomplete frame are kept.
    ///
    /// An error means the peer broke the protocol; the connection must be closed with
    /// [`FrameError::close_code`]. Messages parsed before the error are still in `out`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<Message>) -> Result<(), FrameError> {
        if self.closed {
            return Ok(());
        }
        if self.partial.is_empty() {
            let consumed = self.parse(input, out)?;
            self.keep(&input[consumed..]);
        } else {
            self.partial.extend_from_slice(input);
            let buffered = std::mem::take(&mut self.partial);
            let consumed = self.parse(&buffered, out)?;
            if consumed == 0 {
                self.partial = buffered;
            } else {
                self.keep(&buffered[consumed..]);
            }
        }
        Ok(())
    }

    /// Stores the unparsed tail, reserving room for the whole frame when its header is known so
    /// a large frame arriving in many reads is not reallocated repeatedly.
    fn keep(&mut self, rest: &[u8]) {
        if rest.is_empty() {
            self.partial = Vec::new();
            return;
        }
        let expected = frame::parse_header(rest, self.role, self.max_message)
            .ok()
            .flatten()
            .map_or(rest.len(), |h| h.header_len + h.payload_len);
        let mut partial = Vec::with_capacity(expected.max(rest.len()));
        partial.extend_from_slice(rest);
        self.partial = partial;
    }

    /// Parses complete frames from the front of `buf`; returns how many bytes were consumed.
    fn parse(&mut self, buf: &[u8], out: &mut Vec<Message>) -> Result<usize, FrameError> {
        let mut pos = 0;
        while !self.closed {
            let Some(header) = frame::parse_header(&buf[pos..], self.role, self.max_message)?
            else {
                break;
            };
            let start = pos + header.header_len;
            let end = start + header.payload_len;
            if end > buf.len() {
                break;
            }
            let mut payload = buf[start..end].to_vec();
            if let Some(mask) = header.mask {
                frame::apply_mask(&mut payload, mask);
            }
            pos = end;
            self.on_frame(header.fin, header.opcode, payload, out)?;
        }
        if self.closed {
            // Nothing after the close frame is read: keep none of it.
            return Ok(buf.len());
        }
        Ok(pos)
    }

    fn on_frame(
        &mut self,
        fin: bool,
        opcode: OpCode,
        payload: Vec<u8>,
        out: &mut Vec<Message>,
    ) -> Result<(), FrameError> {
        match opcode {
            OpCode::Ping => out.push(Message::Ping(payload.into())),
            OpCode::Pong => out.push(Message::Pong(payload.into())),
            OpCode::Close => {
                out.push(Message::Close(frame::parse_close_body(&payload)?));
                self.closed = true;
                self.fragments = None;
            }
            OpCode::Text | OpCode::Binary => {
                if self.fragments.is_some() {
                    return Err(FrameError::BadFragment);
                }
                let mut message = Fragmented {
                    opcode,
                    data: payload,
                    checked: 0,
                };
                if fin {
                    out.push(message.finish()?);
                } else {
                    message.check_text()?;
                    self.fragments = Some(message);
                }
            }
            OpCode::Continuation => {
                let Some(message) = self.fragments.as_mut() else {
                    return Err(FrameError::BadFragment);
                };
                let data = &mut message.data;
                let total = data.len() + payload.len();
                if total > self.max_message {
                    return Err(FrameError::TooLarge {
                        len: total as u64,
                        max: self.max_message,
                    });
                }
                data.extend_from_slice(&payload);
                if fin {
                    if let Some(message) = self.fragments.take() {
                        out.push(message.finish()?);
                    }
                } else {
                    message.check_text()?;
                }
            }
        }
        Ok(())
    }
}

/// A message whose frames have not all arrived yet (or a whole one-frame message).
#[derive(Debug)]
struct Fragmented {
    opcode: OpCode,
    data: Vec<u8>,
    /// For text: how many leading bytes are known to be valid UTF-8.
    checked: usize,
}

impl Fragmented {
    /// Fails fast on text that can no longer become valid UTF-8, checking only the bytes that
    /// arrived since the last check; a character cut at the end of a fragment may still be
    /// completed by the next one.
    fn check_text(&mut self) -> Result<(), FrameError> {
        if self.opcode != OpCode::Text {
            return Ok(());
        }
        match simdutf8::compat::from_utf8(&self.data[self.checked..]) {
            Ok(_) => self.checked = self.data.len(),
            Err(err) if err.error_len().is_none() => self.checked += err.valid_up_to(),
            Err(_) => return Err(FrameError::InvalidUtf8),
        }
        Ok(())
    }

    /// The complete message; text must be valid UTF-8 to the end.
    fn finish(self) -> Result<Message, FrameError> {
        if self.opcode == OpCode::Text {
            simdutf8::basic::from_utf8(&self.data[self.checked..])
                .map_err(|_| FrameError::InvalidUtf8)?;
            Ok(Message::Text(self.data.into()))
        } else {
            Ok(Message::Binary(self.data.into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::frame::{write_header, write_masked_frame};

    const KEY: [u8; 4] = [0x11, 0x22, 0x33, 0x44];

    fn masked(opcode: OpCode, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        write_masked_frame(&mut out, opcode, payload, KEY);
        out
    }

    fn fragment(fin: bool, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        write_header(&mut out, fin, opcode, payload.len(), Some(KEY));
        let start = out.len();
        out.extend_from_slice(payload);
        frame::apply_mask(&mut out[start..], KEY);
        out
    }

    #[test]
    fn reads_several_messages_from_one_buffer() {
        let mut input = masked(OpCode::Text, b"{\"event\":\"a\"}");
        input.extend(masked(OpCode::Ping, b"p"));
        input.extend(masked(OpCode::Binary, &[0, 1, 2]));
        let mut reader = MessageReader::new(Role::Server, 1024);
        let mut out = Vec::new();
        reader.feed(&input, &mut out).unwrap();
        assert_eq!(
            out,
            [
                Message::Text(Bytes::from_static(b"{\"event\":\"a\"}")),
                Message::Ping(Bytes::from_static(b"p")),
                Message::Binary(Bytes::from_static(&[0, 1, 2])),
            ]
        );
        assert!(reader.is_idle());
    }

    #[test]
    fn reassembles_a_message_fed_one_byte_at_a_time() {
        let input = masked(OpCode::Text, "héllo wörld".as_bytes());
        let mut reader = MessageReader::new(Role::Server, 1024);
        let mut out = Vec::new();
        for byte in &input {
            reader.feed(std::slice::from_ref(byte), &mut out).unwrap();
        }
        assert_eq!(out, [Message::Text(Bytes::from("héllo wörld"))]);
        assert!(reader.is_idle());
    }

    #[test]
    fn joins_fragments_and_allows_control_frames_between_them() {
        let mut input = fragment(false, OpCode::Text, b"hel");
        input.extend(masked(OpCode::Ping, b""));
        input.extend(fragment(false, OpCode::Continuation, b"lo "));
        input.extend(fragment(true, OpCode::Continuation, b"there"));
        let mut reader = MessageReader::new(Role::Server, 1024);
        let mut out = Vec::new();
        reader.feed(&input, &mut out).unwrap();
        assert_eq!(
            out,
            [
                Message::Ping(Bytes::new()),
                Message::Text(Bytes::from_static(b"hello there"))
            ]
        );
    }

    #[test]
    fn refuses_fragmented_messages_over_the_limit() {
        let mut input = fragment(false, OpCode::Binary, &[0; 600]);
        input.extend(fragment(true, OpCode::Continuation, &[0; 600]));
        let mut reader = MessageReader::new(Role::Server, 1000);
        let err = reader.feed(&input, &mut Vec::new()).unwrap_err();
        assert_eq!(
            err,
            FrameError::TooLarge {
                len: 1200,
                max: 1000
            }
        );
    }

    #[test]
    fn rejects_stray_continuations_and_interleaved_messages() {
        let mut reader = MessageReader::new(Role::Server, 1000);
        let stray = fragment(true, OpCode::Continuation, b"x");
        assert_eq!(
            reader.feed(&stray, &mut Vec::new()),
            Err(FrameError::BadFragment)
        );

        let mut reader = MessageReader::new(Role::Server, 1000);
        let mut input = fragment(false, OpCode::Text, b"a");
        input.extend(masked(OpCode::Text, b"b"));
        assert_eq!(
            reader.feed(&input, &mut Vec::new()),
            Err(FrameError::BadFragment)
        );
    }

    #[test]
    fn rejects_invalid_utf8_text() {
        let mut reader = MessageReader::new(Role::Server, 1000);
        let input = masked(OpCode::Text, &[0xC3, 0x28]);
        let err = reader.feed(&input, &mut Vec::new()).unwrap_err();
        assert_eq!(err.close_code(), 1007);
    }

    #[test]
    fn parses_close_frames() {
        let mut reader = MessageReader::new(Role::Server, 1000);
        let mut out = Vec::new();
        let mut body = vec![0x10, 0x04];
        body.extend_from_slice(b"done");
        reader
            .feed(&masked(OpCode::Close, &body), &mut out)
            .unwrap();
        assert_eq!(out, [Message::Close(Some((4100, "done".into())))]);
    }

    #[test]
    fn fragmented_text_fails_as_soon_as_it_cannot_become_utf8() {
        // Autobahn 6.4.1: "κόσμε" then 0xF4 0x90 (past U+10FFFF) then more; the second fragment
        // already settles it, before the message ends.
        let mut reader = MessageReader::new(Role::Server, 1000);
        let first = fragment(false, OpCode::Text, "κόσμε".as_bytes());
        assert_eq!(reader.feed(&first, &mut Vec::new()), Ok(()));
        let bad = fragment(false, OpCode::Continuation, &[0xF4, 0x90, 0x80, 0x80]);
        assert_eq!(
            reader.feed(&bad, &mut Vec::new()),
            Err(FrameError::InvalidUtf8)
        );
        // A character split between fragments is fine.
        let mut reader = MessageReader::new(Role::Server, 1000);
        let mut input = fragment(false, OpCode::Text, &[b'a', 0xC3]);
        input.extend(fragment(false, OpCode::Continuation, &[0xA9, 0xE2, 0x82]));
        input.extend(fragment(true, OpCode::Continuation, &[0xAC]));
        let mut out = Vec::new();
        reader.feed(&input, &mut out).unwrap();
        assert_eq!(out, [Message::Text(Bytes::from("aé€"))]);
        // One that is never completed is not.
        let mut reader = MessageReader::new(Role::Server, 1000);
        let mut input = fragment(false, OpCode::Text, &[b'a', 0xC3]);
        input.extend(fragment(true, OpCode::Continuation, b""));
        assert_eq!(
            reader.feed(&input, &mut Vec::new()),
            Err(FrameError::InvalidUtf8)
        );
    }

    #[test]
    fn nothing_after_the_close_frame_is_read() {
        // Autobahn 7.1.3: a ping after the close frame gets no pong, so it must not surface.
        let mut input = masked(OpCode::Close, &[0x03, 0xE8]);
        input.extend(masked(OpCode::Ping, b""));
        input.extend(masked(OpCode::Text, b"late"));
        let mut reader = MessageReader::new(Role::Server, 1000);
        let mut out = Vec::new();
        reader.feed(&input, &mut out).unwrap();
        assert_eq!(out, [Message::Close(Some((1000, String::new())))]);
        assert!(reader.is_idle());
        // Later bytes, even ones that break the framing rules, are discarded too.
        reader.feed(&masked(OpCode::Ping, b"p"), &mut out).unwrap();
        reader.feed(&[0xFF, 0xFF, 0xFF], &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert!(reader.is_idle());
    }

    #[test]
    fn keeps_partial_frames_and_frees_them_after_completion() {
        let input = masked(OpCode::Binary, &[7; 300]);
        let mut reader = MessageReader::new(Role::Server, 1000);
        let mut out = Vec::new();
        reader.feed(&input[..100], &mut out).unwrap();
        assert!(out.is_empty());
        assert!(!reader.is_idle());
        assert!(reader.partial.capacity() >= input.len());
        reader.feed(&input[100..], &mut out).unwrap();
        assert_eq!(out, [Message::Binary(Bytes::from(vec![7; 300]))]);
        assert_eq!(reader.partial.capacity(), 0);
    }
}
