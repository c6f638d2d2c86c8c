//! What a SocketCluster client hears: [`ClientEvent`]s on the [`Events`] stream, and the
//! server's calls ([`IncomingCall`]) waiting for an answer.

use serde_json::Value;
use tokio::sync::mpsc;

use super::driver::Command;
use super::wire::CallId;
use crate::error::ApiError;

/// Something the server sent or something that happened to the connection.
#[derive(Debug)]
pub enum ClientEvent {
    /// The handshake succeeded (also after each reconnection).
    Connected {
        /// The socket id the server assigned.
        id: String,
        /// Whether the server accepted the auth token.
        is_authenticated: bool,
    },
    /// The connection closed; a reconnection may follow.
    Disconnected {
        /// Close code (1006 when the connection was lost without a close frame).
        code: u16,
        /// Close reason.
        reason: String,
    },
    /// The server transmitted an event.
    Transmit {
        /// Event name.
        event: String,
        /// Event data.
        data: Option<Value>,
    },
    /// The server invoked a procedure; answer through [`IncomingCall::respond`].
    Invoke(IncomingCall),
    /// A publication on a subscribed channel.
    Publication {
        /// The channel.
        channel: String,
        /// The published data.
        data: Option<Value>,
    },
    /// The server removed the client from a channel.
    KickedOut {
        /// The channel.
        channel: String,
        /// The server's reason.
        message: Option<String>,
    },
    /// The server gave the client an auth token (kept and sent on reconnection).
    AuthTokenSet {
        /// The signed token.
        token: String,
    },
    /// The server told the client to drop its auth token.
    AuthTokenRemoved,
}

/// A call from the server waiting for the client's answer. Dropping it unanswered replies with
/// an error named `NoResponse`.
#[derive(Debug)]
pub struct IncomingCall {
    /// Procedure name.
    pub event: String,
    /// Call data.
    pub data: Option<Value>,
    reply: Option<(CallId, mpsc::UnboundedSender<Command>)>,
}

impl IncomingCall {
    /// The server's call `rid`, to be answered through `commands`.
    pub(super) fn new(
        event: String,
        data: Option<Value>,
        rid: CallId,
        commands: mpsc::UnboundedSender<Command>,
    ) -> Self {
        Self {
            event,
            data,
            reply: Some((rid, commands)),
        }
    }

    /// Sends the answer.
    pub fn respond(mut self, result: Result<Option<Value>, ApiError>) {
        if let Some((rid, commands)) = self.reply.take() {
            let _ = commands.send(Command::Reply { rid, result });
        }
    }
}

impl Drop for IncomingCall {
    fn drop(&mut self) {
        if let Some((rid, commands)) = self.reply.take() {
            let err = ApiError::new("NoResponse", format!("No answer to '{}'", self.event));
            let _ = commands.send(Command::Reply {
                rid,
                result: Err(err),
            });
        }
    }
}

/// The stream of [`ClientEvent`]s. Events accumulate until read, so read it or drop it.
#[derive(Debug)]
pub struct Events {
    receiver: mpsc::UnboundedReceiver<ClientEvent>,
}

impl Events {
    /// The stream of what the driver sends through `receiver`.
    pub(super) fn new(receiver: mpsc::UnboundedReceiver<ClientEvent>) -> Self {
        Self { receiver }
    }

    /// The next event, or `None` once the client has stopped for good.
    pub async fn next(&mut self) -> Option<ClientEvent> {
        self.receiver.recv().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(commands: &mpsc::UnboundedSender<Command>) -> IncomingCall {
        IncomingCall::new("ask".to_owned(), None, 4, commands.clone())
    }

    fn reply_of(command: Option<Command>) -> Option<(CallId, Result<Option<Value>, ApiError>)> {
        match command? {
            Command::Reply { rid, result } => Some((rid, result)),
            Command::Send { .. } | Command::Close { .. } => None,
        }
    }

    #[test]
    fn an_answer_is_sent_once_as_the_reply() {
        let (commands, mut sent) = mpsc::unbounded_channel();
        call(&commands).respond(Ok(Some(Value::from(1))));
        assert_eq!(
            reply_of(sent.try_recv().ok()),
            Some((4, Ok(Some(Value::from(1)))))
        );
        assert!(sent.try_recv().is_err());
    }

    #[test]
    fn a_dropped_call_is_answered_no_response() {
        let (commands, mut sent) = mpsc::unbounded_channel();
        drop(call(&commands));
        let expected = ApiError::new("NoResponse", "No answer to 'ask'");
        assert_eq!(reply_of(sent.try_recv().ok()), Some((4, Err(expected))));
    }
}
