//! One WebSocket connection: the single type that owns a socket's IO.
//!
//! `Connection` reads frames, runs the dialect, hands packets to the services strictly in
//! order, writes replies and queued pushes, sends pings and enforces the limits. It is one
//! hand-written state machine polled by one task, so a connection costs one task and no idle
//! buffers:
//!
//! - reads go into a per-thread scratch buffer; only a partially received frame is kept;
//! - replies and pushes are gathered into one buffer and written with one call per wake-up
//!   (everything that is ready goes out together), then the buffer is released;
//! - one timer serves every deadline (handshake, ping, pong, close, throttling).
//!
//! What a packet means is decided by the dialect (`protocol/`) and what it does by the services
//! (`service/`); this module only moves bytes and keeps time. The processing of calls, one at a
//! time, is in `calls.rs`.

mod budget;
mod calls;
mod limits;
#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

pub use limits::Limits;

use crate::codec::FrameKind;
use crate::metrics::{ErrorKind, Metrics};
use crate::peer::ConnectionHandle;
use crate::protocol::{self, Inbound, Packet, Session};
use crate::service::{Endpoint, Services};
use crate::ws::frame::{self, OpCode, Role};
use crate::ws::{Message, MessageReader};
use budget::Budget;
use calls::InFlight;

/// Close code sent when a connection's outbound queue overflows (a slow consumer).
pub(crate) const CLOSE_SLOW_CONSUMER: u16 = 4400;
/// Close code sent to every connection when the server shuts down.
pub(crate) const CLOSE_GOING_AWAY: u16 = 1001;

/// Size of the per-thread read buffer. One read takes at most this much from a socket.
const SCRATCH_BYTES: usize = 64 * 1024;

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; SCRATCH_BYTES]);
}

/// Where the connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Serving messages.
    Open,
    /// Our close frame is queued; waiting for the peer's (other data is ignored).
    Closing,
    /// The close handshake is over (or abandoned): flush and finish.
    Closed,
}

/// How a connection ended, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ending {
    pub(crate) code: u16,
    pub(crate) reason: String,
}

/// What every connection of one server shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) limits: Limits,
    pub(crate) metrics: Metrics,
    pub(crate) services: Arc<Services>,
}

/// The IO owner for one upgraded WebSocket.
pub(crate) struct Connection<S> {
    io: S,
    handle: ConnectionHandle,
    shared: Arc<Shared>,
    endpoint: Arc<Endpoint>,
    reader: MessageReader,
    session: Session,
    /// Data messages received before the handshake was processed; they are decoded only when
    /// their turn comes, because the handshake changes how later frames are read.
    received: VecDeque<Message>,
    /// Decoded items waiting for their turn, each with the bytes it accounts for.
    inbox: VecDeque<(Inbound, usize)>,
    /// Bytes of `received` and `inbox` together; reading pauses above `inbound_queue_bytes`.
    queued_bytes: usize,
    call: Option<InFlight>,
    /// Encoded bytes waiting to be written, and how much of them is already written.
    out: Vec<u8>,
    written: usize,
    /// Frames added to `out` since metrics were last updated.
    frames_out: u64,
    phase: Phase,
    /// The peer's close frame arrived: the body to echo once earlier messages are processed.
    peer_close: Option<Vec<u8>>,
    ending: Option<Ending>,
    read_eof: bool,
    timer: Pin<Box<Sleep>>,
    handshake_deadline: Option<Instant>,
    next_ping: Option<Instant>,
    close_deadline: Option<Instant>,
    paused_until: Option<Instant>,
    last_seen: Instant,
    /// Since when the unwritten output has made no progress (`None`: nothing is waiting).
    write_waiting_since: Option<Instant>,
    /// The socket is given up: whatever is unwritten is dropped with it.
    abandoned: bool,
    budget: Budget,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    /// Wraps an upgraded socket. `early` holds bytes the HTTP layer read past the request.
    pub(crate) fn new(
        io: S,
        early: &[u8],
        handle: ConnectionHandle,
        shared: Arc<Shared>,
        endpoint: Arc<Endpoint>,
    ) -> Self {
        let now = Instant::now();
        let limits = &shared.limits;
        let session = Session::new(endpoint.format.dialect, &endpoint.session);
        // A session open from the start (no opening exchange) has no opening deadline and is
        // pinged at once.
        let (handshake_deadline, next_ping) = if session.is_open() {
            (None, Some(now + endpoint.ping_interval))
        } else {
            (Some(now + endpoint.opening_timeout), None)
        };
        let first_deadline = handshake_deadline.or(next_ping).unwrap_or(now);
        let mut connection = Self {
            io,
            handle,
            reader: MessageReader::new(Role::Server, limits.max_message_bytes),
            session,
            received: VecDeque::new(),
            inbox: VecDeque::new(),
            queued_bytes: 0,
            call: None,
            out: Vec::new(),
            written: 0,
            frames_out: 0,
            phase: Phase::Open,
            peer_close: None,
            ending: None,
            read_eof: false,
            timer: Box::pin(tokio::time::sleep_until(first_deadline)),
            handshake_deadline,
            next_ping,
            close_deadline: None,
            write_waiting_since: None,
            abandoned: false,
            paused_until: None,
            last_seen: now,
            budget: Budget::new(limits.max_messages_per_second, now),
            shared,
            endpoint,
        };
        if !early.is_empty() {
            connection.absorb(early);
        }
        connection
    }

    /// Runs the connection to its end and says how it ended.
    pub(crate) async fn run(mut self) -> Ending {
        std::future::poll_fn(|cx| self.poll_run(cx)).await;
        self.handle.mark_closed();
        self.ending.unwrap_or(Ending {
            code: 1006,
            reason: "connection lost".to_owned(),
        })
    }

    fn poll_run(&mut self, cx: &mut TaskContext<'_>) -> Poll<()> {
        self.handle.register(cx.waker());
        let result = self.poll_steps(cx);
        if self.frames_out > 0 {
            self.shared.metrics.messages_out.inc_by(self.frames_out);
            self.frames_out = 0;
        }
        result
    }

    fn poll_steps(&mut self, cx: &mut TaskContext<'_>) -> Poll<()> {
        loop {
            let mut progress = false;
            if self.phase == Phase::Open {
                if let Some(request) = self.handle.take_close_request() {
                    self.start_close(request.code, &request.reason);
                } else if self.handle.overflowed() {
                    self.shared.metrics.error(ErrorKind::slow_consumer);
                    self.start_close(CLOSE_SLOW_CONSUMER, "Outbound queue overflow");
                }
            }
            self.poll_timers(cx);
            if self.abandoned {
                return Poll::Ready(());
            }
            progress |= self.drive_calls(cx);
            if self.peer_close.is_some() {
                self.finish_peer_close();
            }
            // Whether pushes may still be queued behind what goes out now. A push wakes the
            // task only when the queue was empty, so once this write is done the loop must
            // come back for them rather than wait.
            let mut queued_behind = false;
            if self.phase == Phase::Open {
                let high_water = self.shared.limits.write_buffer_bytes;
                queued_behind = if self.out.len() >= high_water {
                    true
                } else {
                    let drained = self.handle.drain_into(&mut self.out, high_water);
                    self.frames_out += drained.frames as u64;
                    drained.more
                };
            }
            if self.may_read() {
                match self.poll_read(cx) {
                    Poll::Ready(Ok(())) => progress = true,
                    Poll::Ready(Err(err)) => {
                        self.lost(&err);
                        return Poll::Ready(());
                    }
                    Poll::Pending => {}
                }
            }
            let was_waiting = self.write_waiting_since.is_some();
            match self.poll_write(cx) {
                Poll::Ready(Err(err)) => {
                    self.lost(&err);
                    return Poll::Ready(());
                }
                Poll::Ready(Ok(())) => {
                    let idle =
                        self.call.is_none() && self.inbox.is_empty() && self.received.is_empty();
                    if self.phase == Phase::Closed || (self.read_eof && idle) {
                        let _ = Pin::new(&mut self.io).poll_shutdown(cx);
                        return Poll::Ready(());
                    }
                    progress |= queued_behind;
                }
                // A write starts waiting: loop once more so the timer learns its stall deadline.
                Poll::Pending => progress |= !was_waiting,
            }
            if !progress {
                return Poll::Pending;
            }
        }
    }

    /// Reading stops while too many received messages wait for processing and while too much
    /// output is unwritten. It goes on while a call is in flight, so that replies to the
    /// server's own invokes (which a handler may be waiting for) still arrive.
    fn may_read(&mut self) -> bool {
        if self.read_eof || self.phase == Phase::Closed || self.peer_close.is_some() {
            return false;
        }
        let limits = &self.shared.limits;
        if self.out.len() - self.written >= limits.write_buffer_bytes {
            // The client does not read what it asked for: its silence still counts.
            return false;
        }
        if self.queued_bytes >= limits.inbound_queue_bytes {
            // Processing is behind, not the client: do not count the pause as silence.
            self.last_seen = Instant::now();
            return false;
        }
        true
    }

    fn poll_read(&mut self, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        let io = &mut self.io;
        let mut messages = Vec::new();
        let outcome = SCRATCH.with_borrow_mut(|scratch| {
            let mut buf = ReadBuf::new(scratch);
            match Pin::new(io).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) => {
                    let filled = buf.filled();
                    if filled.is_empty() {
                        return Poll::Ready(Ok(None));
                    }
                    Poll::Ready(Ok(Some(self.reader.feed(filled, &mut messages))))
                }
                Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
                Poll::Pending => Poll::Pending,
            }
        });
        match outcome {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Ready(Ok(None)) => {
                self.read_eof = true;
                if self.ending.is_none() {
                    self.ending = Some(Ending {
                        code: 1006,
                        reason: "peer closed the TCP connection".to_owned(),
                    });
                }
                if self.phase != Phase::Open {
                    self.phase = Phase::Closed;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Ok(Some(parsed))) => {
                self.last_seen = Instant::now();
                self.on_messages(messages);
                if let Err(err) = parsed {
                    let kind = match err {
                        frame::FrameError::TooLarge { .. } => ErrorKind::message_too_large,
                        _ => ErrorKind::bad_frame,
                    };
                    self.shared.metrics.error(kind);
                    self.start_close(err.close_code(), &err.to_string());
                }
                Poll::Ready(Ok(()))
            }
        }
    }

    /// Feeds bytes that arrived with the HTTP upgrade.
    fn absorb(&mut self, bytes: &[u8]) {
        let mut messages = Vec::new();
        let parsed = self.reader.feed(bytes, &mut messages);
        self.on_messages(messages);
        if let Err(err) = parsed {
            self.shared.metrics.error(ErrorKind::bad_frame);
            self.start_close(err.close_code(), &err.to_string());
        }
    }

    fn on_messages(&mut self, messages: Vec<Message>) {
        let mut data_messages = 0;
        for message in messages {
            match message {
                Message::Text(payload) => {
                    data_messages += 1;
                    self.on_data(payload, false);
                }
                Message::Binary(payload) => {
                    data_messages += 1;
                    self.on_data(payload, true);
                }
                Message::Ping(payload) => {
                    if self.phase != Phase::Closed {
                        self.write_control(OpCode::Pong, &payload);
                    }
                }
                Message::Pong(_) => {}
                Message::Close(status) => self.on_close_frame(status),
            }
        }
        if data_messages > 0 {
            self.shared.metrics.messages_in.inc_by(data_messages);
        }
    }

    fn on_data(&mut self, payload: Bytes, binary: bool) {
        if self.phase != Phase::Open || self.peer_close.is_some() {
            return;
        }
        if self.session.is_open() && self.received.is_empty() {
            self.decode(&payload, binary);
        } else {
            self.queued_bytes += payload.len();
            let message = if binary {
                Message::Binary(payload)
            } else {
                Message::Text(payload)
            };
            self.received.push_back(message);
        }
    }

    /// Decodes a data message into the inbox. Replies to the server's own invokes are delivered
    /// at once: a handler may be waiting for one, and they need no ordering.
    fn decode(&mut self, payload: &[u8], binary: bool) {
        let mut items = Vec::new();
        self.session
            .decode(&self.endpoint.format.encoding, payload, binary, &mut items);
        let mut weight = payload.len();
        for item in items {
            match item {
                Inbound::Packet(Packet::Reply { id, result }) => self.handle.resolve(id, result),
                Inbound::Pong => {
                    // SocketCluster checks token expiry on every pong too.
                    self.handle.expire_auth();
                }
                other => {
                    self.queued_bytes += weight;
                    self.inbox.push_back((other, weight));
                    weight = 0;
                }
            }
        }
    }

    fn on_close_frame(&mut self, status: Option<(u16, String)>) {
        match self.phase {
            Phase::Open if self.peer_close.is_none() => {
                // The peer started the close handshake. What it sent before the close frame is
                // still processed; the echo of its code goes out once that is done.
                let body = match &status {
                    Some((code, _)) => code.to_be_bytes().to_vec(),
                    None => Vec::new(),
                };
                let (code, reason) = status.unwrap_or((1005, String::new()));
                self.ending = Some(Ending { code, reason });
                self.peer_close = Some(body);
            }
            Phase::Open => {}
            Phase::Closing | Phase::Closed => self.phase = Phase::Closed,
        }
    }

    /// Once the work that came before the peer's close frame is done, answers the close.
    fn finish_peer_close(&mut self) {
        let idle = self.call.is_none() && self.inbox.is_empty() && self.received.is_empty();
        if !idle || self.phase != Phase::Open {
            return;
        }
        if let Some(body) = self.peer_close.take() {
            self.write_control(OpCode::Close, &body);
            self.discard_work();
            self.phase = Phase::Closed;
        }
    }

    fn poll_timers(&mut self, cx: &mut TaskContext<'_>) {
        loop {
            let now = Instant::now();
            if self.handshake_deadline.is_some_and(|t| now >= t) {
                self.handshake_deadline = None;
                self.shared.metrics.error(ErrorKind::handshake_timeout);
                let (code, reason) = self.session.opening_timeout();
                self.start_close(code, reason);
            }
            if self.phase == Phase::Open && self.session.is_open() {
                if now.duration_since(self.last_seen) >= self.endpoint.ping_timeout {
                    self.shared.metrics.error(ErrorKind::pong_timeout);
                    let (code, reason) = self.session.pong_timeout();
                    self.start_close(code, reason);
                } else if self.next_ping.is_some_and(|t| now >= t) {
                    self.frames_out += self
                        .session
                        .write_pings(&self.endpoint.format.encoding, &mut self.out);
                    self.next_ping = Some(now + self.endpoint.ping_interval);
                }
            }
            if self.close_deadline.is_some_and(|t| now >= t) {
                // The closing handshake took too long: drop the socket, written or not.
                self.close_deadline = None;
                self.phase = Phase::Closed;
                self.abandoned = true;
                return;
            }
            let stall = Duration::from_millis(self.shared.limits.write_stall_timeout_ms);
            if self.write_waiting_since.is_some_and(|t| now >= t + stall) {
                self.shared.metrics.error(ErrorKind::write_stall);
                if self.phase != Phase::Open {
                    self.abandoned = true;
                    return;
                }
                // Queued behind what cannot be written; the close deadline then drops the
                // socket.
                self.start_close(CLOSE_SLOW_CONSUMER, "Client stopped reading");
                self.write_waiting_since = Some(now);
            }
            if self.paused_until.is_some_and(|t| now >= t) {
                self.paused_until = None;
            }
            let Some(deadline) = self.next_deadline() else {
                return;
            };
            if self.timer.deadline() != deadline {
                self.timer.as_mut().reset(deadline);
            }
            if self.timer.as_mut().poll(cx).is_pending() {
                return;
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let pong_deadline = (self.phase == Phase::Open && self.session.is_open())
            .then(|| self.last_seen + self.endpoint.ping_timeout);
        [
            self.handshake_deadline,
            self.next_ping.filter(|_| self.phase == Phase::Open),
            pong_deadline,
            self.close_deadline,
            self.paused_until,
            self.write_waiting_since.map(|since| {
                since + Duration::from_millis(self.shared.limits.write_stall_timeout_ms)
            }),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn poll_write(&mut self, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        while self.written < self.out.len() {
            match Pin::new(&mut self.io).poll_write(cx, &self.out[self.written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    self.written += n;
                    self.write_waiting_since = None;
                }
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Pending => {
                    // The stall clock runs from the last progress.
                    self.write_waiting_since.get_or_insert_with(Instant::now);
                    return Poll::Pending;
                }
            }
        }
        // Everything is out: release the buffer so an idle connection holds none.
        self.out = Vec::new();
        self.written = 0;
        self.write_waiting_since = None;
        Poll::Ready(Ok(()))
    }

    /// Starts the close handshake: what is already queued goes first, then our close frame.
    fn start_close(&mut self, code: u16, reason: &str) {
        if self.phase != Phase::Open {
            return;
        }
        self.discard_work();
        self.frames_out += self.handle.drain_into(&mut self.out, usize::MAX).frames as u64;
        self.handle.mark_closed();
        self.write_control(OpCode::Close, &frame::close_body(code, reason));
        self.ending = Some(Ending {
            code,
            reason: reason.to_owned(),
        });
        // If the peer's close frame already arrived, ours answers it and the handshake is over.
        self.phase = if self.peer_close.take().is_some() {
            Phase::Closed
        } else {
            Phase::Closing
        };
        self.close_deadline =
            Some(Instant::now() + Duration::from_millis(self.shared.limits.close_timeout_ms));
    }

    fn discard_work(&mut self) {
        self.received.clear();
        self.inbox.clear();
        self.queued_bytes = 0;
        self.call = None;
        self.handle.mark_closed();
    }

    fn write_data(&mut self, kind: FrameKind, payload: &[u8]) {
        protocol::write_data_frame(&mut self.out, kind, payload);
        self.frames_out += 1;
    }

    fn write_control(&mut self, opcode: OpCode, payload: &[u8]) {
        frame::write_frame(&mut self.out, opcode, payload);
    }

    fn lost(&mut self, err: &io::Error) {
        self.shared.metrics.error(ErrorKind::io);
        if self.ending.is_none() {
            self.ending = Some(Ending {
                code: 1006,
                reason: err.to_string(),
            });
        }
    }
}
