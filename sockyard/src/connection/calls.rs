//! The connection's processing of what it received: decoded items strictly in order, one call
//! in flight at a time, so replies go out in the order the requests came; and the replies and
//! the opening's answer written as the dialect encodes them.

use std::collections::VecDeque;
use std::task::{Context as TaskContext, Poll};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::{Connection, Phase};
use crate::error::ApiError;
use crate::metrics::ErrorKind;
use crate::protocol::{CallId, Inbound, Opened, Outgoing};
use crate::router::{CallFuture, CallResult};
use crate::service::{Dispatched, OpenFuture, Opening};
use crate::ws::Message;

/// The work a received packet started; only one at a time.
pub(super) enum InFlight {
    /// A call, answering `id` (none for a transmit).
    Call {
        id: Option<CallId>,
        future: CallFuture,
    },
    /// The opening exchange: on success the session opens; on failure the socket closes.
    Open { id: CallId, future: OpenFuture },
}

/// What finished.
enum Finished {
    Call(Option<CallId>, CallResult),
    Open(CallId, Result<Opening, ApiError>),
}

impl InFlight {
    fn poll(&mut self, cx: &mut TaskContext<'_>) -> Poll<Finished> {
        match self {
            Self::Call { id, future } => future
                .as_mut()
                .poll(cx)
                .map(|result| Finished::Call(*id, result)),
            Self::Open { id, future } => future
                .as_mut()
                .poll(cx)
                .map(|result| Finished::Open(*id, result)),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    /// Processes queued items in order; one call may be in flight at a time.
    pub(super) fn drive_calls(&mut self, cx: &mut TaskContext<'_>) -> bool {
        let mut progress = false;
        loop {
            if let Some(call) = self.call.as_mut() {
                let Poll::Ready(finished) = call.poll(cx) else {
                    break;
                };
                self.call = None;
                progress = true;
                match finished {
                    Finished::Call(id, result) => self.finish_call(id, result),
                    Finished::Open(id, result) => self.finish_opening(id, result),
                }
            }
            if self.phase != Phase::Open
                || self.paused_until.is_some()
                || self.out.len() - self.written >= self.shared.limits.write_buffer_bytes
            {
                break;
            }
            if self.inbox.is_empty() {
                let Some(message) = self.received.pop_front() else {
                    break;
                };
                let (payload, binary) = match message {
                    Message::Binary(bytes) => (bytes, true),
                    Message::Text(bytes) => (bytes, false),
                    _ => continue,
                };
                self.queued_bytes -= payload.len();
                self.decode(&payload, binary);
                progress = true;
                continue;
            }
            if let Err(until) = self.budget.take(Instant::now()) {
                self.paused_until = Some(until);
                // A new deadline: let the caller loop once more so the timer learns of it.
                progress = true;
                break;
            }
            if let Some((item, weight)) = self.inbox.pop_front() {
                self.queued_bytes -= weight;
                progress = true;
                self.on_inbound(item);
            }
        }
        if self.inbox.is_empty() && self.inbox.capacity() > 16 {
            self.inbox = VecDeque::new();
        }
        if self.received.is_empty() && self.received.capacity() > 16 {
            self.received = VecDeque::new();
        }
        progress
    }

    fn on_inbound(&mut self, item: Inbound) {
        match item {
            Inbound::Pong => {}
            Inbound::Close(code, reason) => {
                self.shared.metrics.error(ErrorKind::protocol_violation);
                self.start_close(code, &reason);
            }
            Inbound::Packet(packet) => {
                if self.session.is_open() {
                    self.handle.expire_auth();
                }
                let services = &self.shared.services;
                match services.dispatch(&self.handle, &self.endpoint, packet, &self.shared.metrics)
                {
                    Dispatched::Done => {}
                    Dispatched::Call { id, future } => {
                        self.call = Some(InFlight::Call { id, future })
                    }
                    Dispatched::Open { id, future } => {
                        // The client has made its opening move: the deadline no longer applies.
                        self.handshake_deadline = None;
                        self.call = Some(InFlight::Open { id, future });
                    }
                    Dispatched::Unanswered(error) => self.write(&Outgoing::Error(&error)),
                    Dispatched::Close { code, reason } => self.start_close(code, &reason),
                }
            }
        }
    }

    fn finish_call(&mut self, id: Option<CallId>, result: CallResult) {
        if let Err(err) = &result {
            self.shared.metrics.error(classify_error(err));
        }
        let Some(id) = id else {
            if let Err(err) = result {
                tracing::debug!(connection = self.handle.id(), error = %err, "transmit failed");
            }
            return;
        };
        self.write(&Outgoing::Reply {
            id,
            result: match &result {
                Ok(data) => Ok(data.as_ref()),
                Err(err) => Err(err),
            },
        });
    }

    /// Finishes the opening exchange (SocketCluster's handshake, CTProto's authorize).
    fn finish_opening(&mut self, id: CallId, result: Result<Opening, ApiError>) {
        match result {
            Ok(opening) => {
                self.session.open();
                self.next_ping
                    .get_or_insert(Instant::now() + self.endpoint.ping_interval);
                let opened = Opened {
                    socket_id: self.handle.id(),
                    ping_timeout_ms: self.endpoint.ping_timeout.as_millis() as u64,
                    claims: opening.claims.as_deref(),
                    auth_error: opening.auth_error.as_ref(),
                };
                let message = Outgoing::Opened { id, opened };
                let mut payload = Vec::new();
                let encoded =
                    self.session
                        .encode(&self.endpoint.format.encoding, &message, &mut payload);
                self.write_encoded(id, encoded, &payload);
            }
            Err(err) => {
                let refusal = self.session.opening_refused(&err);
                if refusal.reply {
                    self.write(&Outgoing::Reply {
                        id,
                        result: Err(&err),
                    });
                }
                self.shared.metrics.error(ErrorKind::handshake_rejected);
                self.start_close(refusal.code, &refusal.reason);
            }
        }
    }

    /// Encodes `message` with the session and queues it for the next write.
    pub(super) fn write(&mut self, message: &Outgoing<'_>) {
        let mut payload = Vec::new();
        let encoded = self
            .session
            .encode(&self.endpoint.format.encoding, message, &mut payload);
        match message {
            Outgoing::Reply { id, .. } => self.write_encoded(*id, encoded, &payload),
            _ => match encoded {
                Ok(Some(kind)) => self.write_data(kind, &payload),
                Ok(None) => {}
                Err(err) => tracing::error!(error = %err, "could not encode a message"),
            },
        }
    }

    /// Queues an encoded answer to call `id`; one that could not be encoded is answered with an
    /// `InternalError` instead, so the caller is not left waiting.
    fn write_encoded(
        &mut self,
        id: CallId,
        encoded: Result<Option<crate::codec::FrameKind>, crate::protocol::EncodeError>,
        payload: &[u8],
    ) {
        match encoded {
            Ok(Some(kind)) => self.write_data(kind, payload),
            Ok(None) => {}
            Err(err) => {
                tracing::error!(error = %err, "could not encode a reply");
                let fallback = ApiError::internal("The reply could not be encoded");
                let mut payload = Vec::new();
                let message = Outgoing::Reply {
                    id,
                    result: Err(&fallback),
                };
                if let Ok(Some(kind)) =
                    self.session
                        .encode(&self.endpoint.format.encoding, &message, &mut payload)
                {
                    self.write_data(kind, &payload);
                }
            }
        }
    }
}

fn classify_error(err: &ApiError) -> ErrorKind {
    if err.name == ApiError::NOT_FOUND {
        ErrorKind::not_found
    } else if crate::router::is_panic_error(err) {
        ErrorKind::handler_panic
    } else {
        ErrorKind::handler_error
    }
}
