//! One load-generator connection: the HTTP upgrade, a receive buffer whose frames are found in
//! place with `sockyard::ws::frame` (nothing copied, nothing allocated per message), masked
//! writes, and the SocketCluster handshake.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context as _};
use sockyard::ws::frame::{self, OpCode, Role};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::frames::{self, ScFrames};

/// How long opening one connection (TCP, upgrade, SocketCluster handshake) may take.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest HTTP upgrade response we accept before giving up.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// Initial size of a connection's receive buffer; it grows only for frames larger than this.
const READ_BUFFER_BYTES: usize = 16 * 1024;

/// Free space below which the reader compacts (or grows) its buffer before reading.
const MIN_READ_SPACE: usize = 4 * 1024;

/// Largest frame a server may send the load generator.
const MAX_FRAME_BYTES: usize = 64 << 20;

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
    /// send (masked ones, unknown opcodes, …).
    pub(crate) fn next_frame(&mut self) -> anyhow::Result<Option<FrameRef>> {
        let data = &self.buf[self.head..self.tail];
        let Some(header) = frame::parse_frame(data, Role::Client, MAX_FRAME_BYTES)
            .context("bad frame from the server")?
        else {
            return Ok(None);
        };
        let start = self.head + header.header_len;
        let end = self.head + header.frame_len();
        self.head = end;
        Ok(Some(FrameRef {
            opcode: header.opcode,
            fin: header.fin,
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

/// An open connection ready to be driven.
#[derive(Debug)]
pub(crate) struct Client {
    /// The socket.
    pub(crate) stream: TcpStream,
    /// What has been received and not yet parsed.
    pub(crate) reader: FrameReader,
    /// The mask every frame this client sends uses.
    pub(crate) mask: [u8; 4],
    /// Next SocketCluster cid.
    pub(crate) next_cid: u64,
}

impl Client {
    /// Connects, upgrades and, given SocketCluster frames, completes the handshake in their
    /// codec.
    pub(crate) async fn open(
        addr: SocketAddr,
        path: &str,
        sc: Option<&ScFrames>,
    ) -> anyhow::Result<Self> {
        let (stream, reader) = tokio::time::timeout(CONNECT_TIMEOUT, upgrade(addr, path))
            .await
            .with_context(|| {
                format!("connecting to {addr} took longer than {CONNECT_TIMEOUT:?}")
            })??;
        let mut client = Self {
            stream,
            reader,
            mask: rand::random(),
            next_cid: 1,
        };
        if let Some(sc) = sc {
            tokio::time::timeout(CONNECT_TIMEOUT, client.handshake(sc))
                .await
                .context("no #handshake reply in time")??;
        }
        Ok(client)
    }

    /// Connects, upgrades and completes the SocketCluster handshake in JSON.
    pub(crate) async fn open_json(addr: SocketAddr, path: &str) -> anyhow::Result<Self> {
        static JSON: std::sync::OnceLock<ScFrames> = std::sync::OnceLock::new();
        let frames = match JSON.get() {
            Some(frames) => frames,
            None => {
                let frames = ScFrames::new(sockyard::codec::Encoding::Json, "echo", "")?;
                JSON.get_or_init(|| frames)
            }
        };
        Self::open(addr, path, Some(frames)).await
    }

    async fn handshake(&mut self, sc: &ScFrames) -> anyhow::Result<()> {
        let cid = self.take_cid();
        let (opcode, payload) = sc.handshake(cid)?;
        self.send(opcode, &payload).await?;
        self.read_until(
            |opcode, payload| sc.is_ping(opcode, payload),
            |opcode, payload| match opcode {
                OpCode::Text | OpCode::Binary => {
                    if sc
                        .check_handshake_reply(opcode, payload, cid)
                        .context("bad #handshake reply")?
                    {
                        return Ok(Some(()));
                    }
                    bail!(
                        "unexpected frame during the handshake: {}",
                        frames::show_frame(opcode, payload)
                    );
                }
                OpCode::Close => bail!("closed during the handshake: {}", close_reason(payload)),
                _ => bail!("unexpected frame during the handshake: {}", show(payload)),
            },
        )
        .await
    }

    /// The next cid, counted as used.
    pub(crate) fn take_cid(&mut self) -> u64 {
        let cid = self.next_cid;
        self.next_cid += 1;
        cid
    }

    /// Appends one complete frame with this client's mask to `out`.
    pub(crate) fn push_frame(&self, out: &mut Vec<u8>, opcode: OpCode, payload: &[u8]) {
        frame::write_masked_frame(out, opcode, payload, self.mask);
    }

    /// Sends one frame.
    pub(crate) async fn send(&mut self, opcode: OpCode, payload: &[u8]) -> anyhow::Result<()> {
        let mut out = Vec::new();
        self.push_frame(&mut out, opcode, payload);
        self.stream.write_all(&out).await?;
        Ok(())
    }

    /// Says goodbye properly (1000) and leaves without waiting for the answer.
    pub(crate) async fn close(&mut self) {
        let _ = self.send(OpCode::Close, &frame::close_body(1000, "")).await;
    }

    /// Answers `count` SocketCluster pings with empty text frames.
    pub(crate) async fn answer_pings(&mut self, count: usize) -> anyhow::Result<()> {
        if count > 0 {
            let mut out = Vec::new();
            for _ in 0..count {
                self.push_frame(&mut out, OpCode::Text, b"");
            }
            self.stream.write_all(&out).await?;
        }
        Ok(())
    }

    /// Reads frames until `on_frame` returns something (or fails), answering the frames
    /// `is_ping` calls SocketCluster pings instead of showing them to `on_frame`.
    pub(crate) async fn read_until<T>(
        &mut self,
        is_ping: impl Fn(OpCode, &[u8]) -> bool,
        mut on_frame: impl FnMut(OpCode, &[u8]) -> anyhow::Result<Option<T>>,
    ) -> anyhow::Result<T> {
        loop {
            let mut pongs = 0;
            while let Some(frame) = self.reader.next_frame()? {
                let payload = self.reader.payload(&frame);
                if is_ping(frame.opcode, payload) {
                    pongs += 1;
                } else if let Some(done) = on_frame(frame.opcode, payload)? {
                    return Ok(done);
                }
            }
            self.answer_pings(pongs).await?;
            self.reader.fill(&mut self.stream).await?;
        }
    }
}

/// Connects to `addr`, performs the HTTP/1.1 WebSocket upgrade for `path`, and returns the
/// stream with a reader holding any bytes received after the response head.
async fn upgrade(addr: SocketAddr, path: &str) -> anyhow::Result<(TcpStream, FrameReader)> {
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

/// Runs `open(index)` for indices `0..count`, at most `parallel` at a time, and collects what
/// they opened (in the order they finished); the first failure fails them all.
pub(crate) async fn open_many<T, F>(
    count: usize,
    parallel: usize,
    open: impl Fn(usize) -> F,
) -> anyhow::Result<Vec<T>>
where
    T: Send + 'static,
    F: Future<Output = anyhow::Result<T>> + Send + 'static,
{
    let mut opened = Vec::with_capacity(count);
    let mut opening = JoinSet::new();
    let mut started = 0;
    while opened.len() < count {
        while started < count && opening.len() < parallel {
            opening.spawn(open(started));
            started += 1;
        }
        let Some(joined) = opening.join_next().await else {
            break;
        };
        opened.push(joined??);
    }
    Ok(opened)
}

/// SocketCluster pings: an empty text frame (protocol v2) or `#1` (v1).
pub(crate) fn is_sc_ping(payload: &[u8]) -> bool {
    payload.is_empty() || payload == b"#1"
}

/// A frame's text for error messages, cut to a readable length.
pub(crate) fn show(payload: &[u8]) -> String {
    let text = String::from_utf8_lossy(&payload[..payload.len().min(300)]);
    if payload.len() > 300 {
        format!("{text:?}… ({} bytes)", payload.len())
    } else {
        format!("{text:?}")
    }
}

/// The code and reason of a close frame, for error messages.
pub(crate) fn close_reason(payload: &[u8]) -> String {
    match payload {
        [hi, lo, reason @ ..] => format!(
            "code {} {:?}",
            u16::from_be_bytes([*hi, *lo]),
            String::from_utf8_lossy(reason)
        ),
        _ => "no code".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_frames_are_found_in_place() {
        // A 300-byte text frame (16-bit length) and an empty one, as a server sends them.
        let payload = vec![b'x'; 300];
        let mut server = vec![0x81, 126, 0x01, 0x2C];
        server.extend_from_slice(&payload);
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

    #[test]
    fn masked_server_frames_are_refused() {
        let mut reader = FrameReader::new(&[0x81, 0x80, 1, 2, 3, 4]);
        assert!(reader.next_frame().is_err());
    }

    #[test]
    fn close_reasons() {
        assert_eq!(close_reason(&[0x03, 0xE8, b'o', b'k']), "code 1000 \"ok\"");
        assert_eq!(close_reason(&[]), "no code");
    }
}
