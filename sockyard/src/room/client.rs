//! One client of a room: the task that owns its WebSocket. It reads the client's messages and
//! queues them for the program (waiting, and so reading no further, while the program's queue
//! is full), writes the room's messages in batches, answers pings itself (control frames never
//! reach the program) and closes with a code and reason.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

use super::framing::encode_input;
use super::live::{Outbound, Room, CLOSE_GOING_AWAY};
use super::Ticket;
use crate::ws::frame::{close_body, write_frame, OpCode, Role};
use crate::ws::reader::{Message, MessageReader};

/// Bytes of queued frames written with one call.
const WRITE_BATCH: usize = 64 * 1024;

/// How long a closing connection waits for the client's close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// How the connection ended, for the log.
#[derive(Debug)]
struct Ending {
    code: u16,
    reason: String,
    /// Whether we sent a close frame and should wait for the client's.
    sent_close: bool,
}

/// Runs the client holding `ticket` on `io` until either side closes.
pub(crate) async fn run<S>(io: S, mut ticket: Ticket)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let room = ticket.room.clone();
    let Some(seat) = ticket.seat.take() else {
        return;
    };
    let id = seat.id;
    let options = &room.service.options;
    // The join message was queued when the client was admitted.
    tracing::debug!(room = %room.name, client = id, "client joined");
    let mut connection = ClientIo {
        io,
        reader: MessageReader::new(Role::Server, options.max_message_bytes),
        room: room.clone(),
        id,
        pending: VecDeque::new(),
        out: Vec::new(),
    };
    let ending = connection.serve(seat.outbound, seat.kicked).await;
    tracing::debug!(room = %room.name, client = id, code = ending.code, reason = %ending.reason, "client left");
    // The client has left the room once the close is sent: its leave message is queued now,
    // not after the close handshake, which a client may take its time to answer while the
    // room (at shutdown, say) closes its program's input.
    if let Some(template) = &options.leave_message {
        if let Some(line) = room.announcement(template, id) {
            // A program that reads nothing more must not keep the client forever.
            let patience = Duration::from_millis(options.slow_client_timeout_ms);
            let _ = tokio::time::timeout(patience, room.send_input(line)).await;
        }
    }
    room.remove(id);
    if ending.sent_close {
        connection.await_close().await;
    }
}

/// The socket and what is in flight on it.
struct ClientIo<S> {
    io: S,
    reader: MessageReader,
    room: Arc<Room>,
    id: u32,
    /// Client messages, already framed for the program, waiting for room in its queue.
    pending: VecDeque<Bytes>,
    /// Frames to write.
    out: Vec<u8>,
}

impl<S> ClientIo<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    async fn serve(
        &mut self,
        mut outbound: tokio::sync::mpsc::Receiver<Outbound>,
        mut kicked: tokio::sync::oneshot::Receiver<(u16, String)>,
    ) -> Ending {
        let input = self.room.input().clone();
        let stopping = self.room.service.stopping.clone();
        let mut buffer = vec![0u8; 8 * 1024];
        let mut messages = Vec::new();
        loop {
            tokio::select! {
                biased;
                kick = &mut kicked => {
                    let (code, reason) = kick.unwrap_or((1011, "The room has ended".to_owned()));
                    return self.close(code, &reason).await;
                }
                () = stopping.cancelled() => {
                    return self.drain_then_close(&mut outbound).await;
                }
                item = outbound.recv() => {
                    let Some(item) = item else {
                        return self.close(1011, "The room has ended").await;
                    };
                    if let Some(ending) = self.write_queued(item, &mut outbound, &mut kicked).await {
                        return ending;
                    }
                }
                permit = input.reserve(), if !self.pending.is_empty() => {
                    let Ok(permit) = permit else {
                        return self.close(1011, "The room has ended").await;
                    };
                    if let Some(bytes) = self.pending.pop_front() {
                        permit.send(bytes);
                        self.room.counters.messages_in.inc();
                    }
                }
                read = self.io.read(&mut buffer), if self.pending.is_empty() => {
                    let n = match read {
                        Ok(0) | Err(_) => {
                            return Ending { code: 1006, reason: "connection lost".to_owned(), sent_close: false };
                        }
                        Ok(n) => n,
                    };
                    if let Err(err) = self.reader.feed(&buffer[..n], &mut messages) {
                        self.take(&mut messages);
                        return self.close(err.close_code(), &err.to_string()).await;
                    }
                    if let Some(ending) = self.take(&mut messages) {
                        let _ = self.flush().await;
                        return ending;
                    }
                    if !self.out.is_empty() && self.flush().await.is_err() {
                        return Ending { code: 1006, reason: "connection lost".to_owned(), sent_close: false };
                    }
                }
            }
        }
    }

    /// Handles parsed messages; a close ends the connection.
    fn take(&mut self, messages: &mut Vec<Message>) -> Option<Ending> {
        let service = &self.room.service;
        for message in messages.drain(..) {
            let (payload, binary) = match message {
                Message::Text(payload) => (payload, false),
                Message::Binary(payload) => (payload, true),
                Message::Ping(data) => {
                    write_frame(&mut self.out, OpCode::Pong, &data);
                    continue;
                }
                Message::Pong(_) => continue,
                Message::Close(status) => {
                    let code = status.as_ref().map_or(1000, |(code, _)| *code);
                    let body = status
                        .map(|(code, _)| close_body(code, ""))
                        .unwrap_or_default();
                    write_frame(&mut self.out, OpCode::Close, &body);
                    return Some(Ending {
                        code,
                        reason: "closed by the client".to_owned(),
                        sent_close: false,
                    });
                }
            };
            let mut framed = Vec::with_capacity(payload.len() + 16);
            match encode_input(
                service.options.client_framing(),
                self.id,
                &payload,
                binary,
                &mut framed,
            ) {
                Ok(()) => self.pending.push_back(Bytes::from(framed)),
                Err(err) => {
                    tracing::debug!(room = %self.room.name, client = self.id, error = %err, "client message dropped");
                    service.metrics.dropped(&self.room.name, "invalid_input", 1);
                }
            }
        }
        None
    }

    /// Writes `first` and whatever else is queued, up to a batch. A kick while the write is
    /// blocked (the client reads nothing) gives the write [`CLOSE_WAIT`] more, then the close
    /// frame follows; if the write is still blocked, the connection is dropped.
    async fn write_queued(
        &mut self,
        first: Outbound,
        outbound: &mut tokio::sync::mpsc::Receiver<Outbound>,
        kicked: &mut tokio::sync::oneshot::Receiver<(u16, String)>,
    ) -> Option<Ending> {
        let mut next = Some(first);
        let mut yielded = false;
        while let Some(item) = next.take() {
            match item {
                Outbound::Frame(frame) => self.out.extend_from_slice(&frame),
                Outbound::Close(code, reason) => return Some(self.close(code, &reason).await),
            }
            if self.out.len() < WRITE_BATCH {
                next = outbound.try_recv().ok();
                if next.is_none() && !yielded {
                    // Let the room's other ready tasks (its program's output) run first: what
                    // they queue goes out in the same write.
                    yielded = true;
                    tokio::task::yield_now().await;
                    next = outbound.try_recv().ok();
                }
            }
        }
        let lost = |code: u16, reason: String| Ending {
            code,
            reason,
            sent_close: false,
        };
        let (flushed, kick) = {
            let flush = self.flush();
            tokio::pin!(flush);
            tokio::select! {
                biased;
                flushed = &mut flush => (flushed.is_ok(), None),
                kick = &mut *kicked => {
                    let kick = kick.unwrap_or((1011, "The room has ended".to_owned()));
                    let flushed = tokio::time::timeout(CLOSE_WAIT, &mut flush).await;
                    (matches!(flushed, Ok(Ok(()))), Some(kick))
                }
            }
        };
        match (flushed, kick) {
            (true, None) => None,
            (false, None) => Some(lost(1006, "connection lost".to_owned())),
            (true, Some((code, reason))) => Some(self.close(code, &reason).await),
            (false, Some((code, reason))) => Some(lost(code, reason)),
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        let result = self.io.write_all(&self.out).await;
        self.out.clear();
        // Keep no large buffer while idle.
        if self.out.capacity() > WRITE_BATCH {
            self.out = Vec::new();
        }
        result?;
        self.io.flush().await
    }

    /// At shutdown: sends what the room had already queued (its own close, if it queued one,
    /// wins: a program that exited just before still says so), then closes with 1001. A
    /// client that takes none of it within [`CLOSE_WAIT`] is dropped.
    async fn drain_then_close(
        &mut self,
        outbound: &mut tokio::sync::mpsc::Receiver<Outbound>,
    ) -> Ending {
        let deadline = tokio::time::Instant::now() + CLOSE_WAIT;
        while let Ok(item) = outbound.try_recv() {
            match item {
                Outbound::Frame(frame) => {
                    self.out.extend_from_slice(&frame);
                    if self.out.len() >= WRITE_BATCH
                        && !matches!(
                            tokio::time::timeout_at(deadline, self.flush()).await,
                            Ok(Ok(()))
                        )
                    {
                        return Ending {
                            code: CLOSE_GOING_AWAY,
                            reason: "Server is shutting down".to_owned(),
                            sent_close: false,
                        };
                    }
                }
                Outbound::Close(code, reason) => return self.close(code, &reason).await,
            }
        }
        self.close(CLOSE_GOING_AWAY, "Server is shutting down")
            .await
    }

    /// Sends a close frame after what is already buffered; a client that takes none of it
    /// within [`CLOSE_WAIT`] is dropped.
    async fn close(&mut self, code: u16, reason: &str) -> Ending {
        write_frame(&mut self.out, OpCode::Close, &close_body(code, reason));
        let sent = matches!(
            tokio::time::timeout(CLOSE_WAIT, self.flush()).await,
            Ok(Ok(()))
        );
        Ending {
            code,
            reason: reason.to_owned(),
            sent_close: sent,
        }
    }

    /// Reads until the client's close frame (or a short timeout), discarding the rest.
    async fn await_close(&mut self) {
        let mut buffer = [0u8; 1024];
        let mut messages = Vec::new();
        let wait = async {
            loop {
                match self.io.read(&mut buffer).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if self.reader.feed(&buffer[..n], &mut messages).is_err() {
                            return;
                        }
                        if messages.iter().any(|m| matches!(m, Message::Close(_))) {
                            return;
                        }
                        messages.clear();
                    }
                }
            }
        };
        let _ = tokio::time::timeout(CLOSE_WAIT, wait).await;
        let _ = self.io.shutdown().await;
    }
}
