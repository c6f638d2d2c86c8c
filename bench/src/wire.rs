//! Just enough client-side WebSocket for a load generator: the HTTP upgrade, masked frame
//! encoding, and a reader that finds frames by parsing only their headers.
//!
//! Nothing here allocates per message: frames are appended to caller-owned buffers and
//! received frames are returned as ranges into the reader's buffer.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context as _};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest HTTP upgrade response we accept before giving up.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// Initial size of a connection's receive buffer; it grows only for frames larger than this.
const READ_BUFFER_BYTES: usize = 16 * 1024;

/// Free space below which the reader compacts (or grows) its buffer before reading.
const MIN_READ_SPACE: usize = 4 * 1024;

/// WebSocket opcodes the load generator deals with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpCode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
    Other(u8),
}

impl OpCode {
    fn from_bits(bits: u8) -> Self {
        match bits {
            0x0 => Self::Continuation,
            0x1 => Self::Text,
            0x2 => Self::Binary,
            0x8 => Self::Close,
            0x9 => Self::Ping,
            0xA => Self::Pong,
            other => Self::Other(other),
        }
    }

    fn bits(self) -> u8 {
        match self {
            Self::Continuation => 0x0,
            Self::Text => 0x1,
            Self::Binary => 0x2,
            Self::Close => 0x8,
            Self::Ping => 0x9,
            Self::Pong => 0xA,
            Self::Other(bits) => bits,
        }
    }
}

/// Appends one complete (FIN) client frame to `out`, masking `payload` with `mask`.
pub(crate) fn push_frame(out: &mut Vec<u8>, opcode: OpCode, payload: &[u8], mask: [u8; 4]) {
    out.push(0x80 | opcode.bits());
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if let Ok(short) = u16::try_from(len) {
        out.push(0x80 | 126);
        out.extend_from_slice(&short.to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
}

/// One frame found in a [`FrameReader`]'s buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FrameRef {
    /// The frame's opcode.
    pub(crate) opcode: OpCode,
    /// Whether the FIN bit was set.
    pub(crate) fin: bool,
    /// Where the payload lies in the reader's buffer (see [`FrameReader::payload`]).
    start: usize,
    end: usize,
}

/// A receive buffer that yields whole server frames without copying their payloads.
#[derive(Debug)]
pub(crate) struct FrameReader {
    buf: Vec<u8>,
    /// Unparsed bytes are `buf[head..tail]`.
    head: usize,
    tail: usize,
    /// Free space below which [`FrameReader::fill`] compacts or grows the buffer.
    min_read_space: usize,
}

impl FrameReader {
    /// An empty reader that starts with `initial` (bytes read past the HTTP response).
    pub(crate) fn new(initial: &[u8]) -> Self {
        let mut buf = vec![0; READ_BUFFER_BYTES.max(initial.len())];
        buf[..initial.len()].copy_from_slice(initial);
        Self {
            buf,
            head: 0,
            tail: initial.len(),
            min_read_space: MIN_READ_SPACE,
        }
    }

    /// Swaps the buffer for one of `bytes` (or what the unparsed bytes need, if more) that is
    /// compacted once less than `min_read_space` is free. For holding many mostly idle
    /// connections, whose frames are small, with less memory.
    pub(crate) fn resize(&mut self, bytes: usize, min_read_space: usize) {
        let pending = &self.buf[self.head..self.tail];
        let mut buf = vec![0; bytes.max(pending.len() + min_read_space)];
        buf[..pending.len()].copy_from_slice(pending);
        self.tail = pending.len();
        self.head = 0;
        self.buf = buf;
        self.min_read_space = min_read_space;
    }

    /// The payload of `frame`, valid until the next read.
    pub(crate) fn payload(&self, frame: &FrameRef) -> &[u8] {
        &self.buf[frame.start..frame.end]
    }

    /// The next complete frame already buffered, if any. Errors on frames a server must not
    /// send (masked ones).
    pub(crate) fn next_frame(&mut self) -> anyhow::Result<Option<FrameRef>> {
        let data = &self.buf[self.head..self.tail];
        if data.len() < 2 {
            return Ok(None);
        }
        let fin = data[0] & 0x80 != 0;
        let opcode = OpCode::from_bits(data[0] & 0x0F);
        if data[1] & 0x80 != 0 {
            bail!("the server sent a masked frame");
        }
        let (len, header) = match data[1] & 0x7F {
            126 => {
                if data.len() < 4 {
                    return Ok(None);
                }
                (usize::from(u16::from_be_bytes([data[2], data[3]])), 4)
            }
            127 => {
                if data.len() < 10 {
                    return Ok(None);
                }
                let mut bytes = [0; 8];
                bytes.copy_from_slice(&data[2..10]);
                let len = u64::from_be_bytes(bytes);
                (usize::try_from(len).context("frame length")?, 10)
            }
            short => (usize::from(short), 2),
        };
        if data.len() < header + len {
            return Ok(None);
        }
        let start = self.head + header;
        let end = start + len;
        self.head = end;
        Ok(Some(FrameRef {
            opcode,
            fin,
            start,
            end,
        }))
    }

    /// Reads more bytes from `stream`; fails on EOF. Makes room first (moving a partial frame
    /// to the front, or growing the buffer when a frame is larger than it).
    pub(crate) async fn fill(&mut self, stream: &mut TcpStream) -> anyhow::Result<()> {
        if self.head == self.tail {
            self.head = 0;
            self.tail = 0;
        }
        if self.buf.len() - self.tail < self.min_read_space {
            if self.head > 0 {
                self.buf.copy_within(self.head..self.tail, 0);
                self.tail -= self.head;
                self.head = 0;
            }
            if self.buf.len() - self.tail < self.min_read_space {
                let bigger = self.buf.len() * 2;
                self.buf.resize(bigger, 0);
            }
        }
        let n = stream.read(&mut self.buf[self.tail..]).await?;
        if n == 0 {
            bail!("the server closed the TCP connection");
        }
        self.tail += n;
        Ok(())
    }
}

/// Connects to `addr`, performs the HTTP/1.1 WebSocket upgrade for `path`, and returns the
/// stream with a reader holding any bytes received after the response head.
pub(crate) async fn connect(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> anyhow::Result<(TcpStream, FrameReader)> {
    tokio::time::timeout(timeout, connect_inner(addr, path))
        .await
        .with_context(|| format!("connecting to {addr} took longer than {timeout:?}"))?
}

async fn connect_inner(addr: SocketAddr, path: &str) -> anyhow::Result<(TcpStream, FrameReader)> {
    let mut stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("TCP connect to {addr}"))?;
    stream.set_nodelay(true)?;
    // The key only has to be 16 bytes in base64; this server-side check is all it is for.
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: c29ja3lhcmQtYmVuY2gtMQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            bail!(
                "connection closed during the upgrade; got {:?}",
                String::from_utf8_lossy(&head)
            );
        }
        head.extend_from_slice(&chunk[..n]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            let status = head.split(|&b| b == b'\r').next().unwrap_or_default();
            if !status.starts_with(b"HTTP/1.1 101") {
                bail!(
                    "upgrade refused: {:?}",
                    String::from_utf8_lossy(&head[..end])
                );
            }
            return Ok((stream, FrameReader::new(&head[end + 4..])));
        }
        if head.len() > MAX_RESPONSE_HEAD {
            bail!("upgrade response head is too long");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_frame_round_trips_through_the_header_parser() {
        let mut out = Vec::new();
        let payload = vec![b'x'; 300];
        push_frame(&mut out, OpCode::Text, &payload, [1, 2, 3, 4]);
        assert_eq!(out[0], 0x81);
        assert_eq!(out[1], 0x80 | 126);
        assert_eq!(out.len(), 4 + 4 + 300);
        // Unmask and clear the mask bit to make it look like a server frame.
        let mask = [out[4], out[5], out[6], out[7]];
        let mut server = vec![out[0], 126, out[2], out[3]];
        server.extend(out[8..].iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
        server.extend_from_slice(&[0x81, 0]);
        let mut reader = FrameReader::new(&server);
        let frame = reader.next_frame().unwrap().unwrap();
        assert_eq!(frame.opcode, OpCode::Text);
        assert!(frame.fin);
        assert_eq!(reader.payload(&frame), &payload[..]);
        let empty = reader.next_frame().unwrap().unwrap();
        assert!(reader.payload(&empty).is_empty());
        assert!(reader.next_frame().unwrap().is_none());
    }

    #[test]
    fn partial_header_waits_for_more() {
        let mut reader = FrameReader::new(&[0x81, 126, 0x01]);
        assert!(reader.next_frame().unwrap().is_none());
    }
}
