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
    /// A fragmented message being reassembled: its opcode and the payload so far.
    fragments: Option<(OpCode, Vec<u8>)>,
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
        while let Some(header) = frame::parse_header(&buf[pos..], self.role, self.max_message)? {
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
            OpCode::Close => out.push(Message::Close(frame::parse_close_body(&payload)?)),
            OpCode::Text | OpCode::Binary => {
                if self.fragments.is_some() {
                    return Err(FrameError::BadFragment);
                }
                if fin {
                    out.push(finish(opcode, payload)?);
                } else {
                    self.fragments = Some((opcode, payload));
                }
            }
            OpCode::Continuation => {
                let Some((_, data)) = self.fragments.as_mut() else {
                    return Err(FrameError::BadFragment);
                };
                let total = data.len() + payload.len();
                if total > self.max_message {
                    return Err(FrameError::TooLarge {
                        len: total as u64,
                        max: self.max_message,
                    });
                }
                data.extend_from_slice(&payload);
                if fin {
                    if let Some((first, data)) = self.fragments.take() {
                        out.push(finish(first, data)?);
                    }
                }
            }
        }
        Ok(())
    }
}

fn finish(opcode: OpCode, payload: Vec<u8>) -> Result<Message, FrameError> {
    if opcode == OpCode::Text {
        simdutf8::basic::from_utf8(&payload).map_err(|_| FrameError::InvalidUtf8)?;
        Ok(Message::Text(payload.into()))
    } else {
        Ok(Message::Binary(payload.into()))
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
