//! The WebSocket under both clients: opening and closing it, sorting what a read gave, and the
//! code and reason a connection ended with.

use bytes::Bytes;
use futures_util::SinkExt as _;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message as WsMessage, Utf8Bytes};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::ClientError;

/// A client's WebSocket connection.
pub(super) type Stream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Close code of a connection the client ended without naming a code.
const CLOSE_NORMAL: u16 = 1000;
/// Close code reported for a close frame that names none.
const CLOSE_NO_STATUS: u16 = 1005;
/// Close code of a connection that ended without a close frame.
const CLOSE_ABNORMAL: u16 = 1006;

/// Refuses a URL that is not `ws://` or `wss://`.
pub(super) fn check_url(url: &str) -> Result<(), ClientError> {
    if url.starts_with("ws://") || url.starts_with("wss://") {
        Ok(())
    } else {
        Err(ClientError::Url(format!(
            "{url} (expected ws:// or wss://)"
        )))
    }
}

/// Opens the WebSocket to `url`.
pub(super) async fn open(url: &str) -> Result<Stream, ClientError> {
    let (stream, _) = tokio_tungstenite::connect_async(url)
        .await
        .map_err(|e| ClientError::Connect(e.to_string()))?;
    Ok(stream)
}

/// Sends a connection's opening frame; failing to counts as failing to connect.
pub(super) async fn send_opening(stream: &mut Stream, frame: WsMessage) -> Result<(), ClientError> {
    stream
        .send(frame)
        .await
        .map_err(|e| ClientError::Connect(e.to_string()))
}

/// Closes the socket without naming a code; returns the code and reason the client reports
/// for it.
pub(super) async fn close(stream: &mut Stream) -> (u16, String) {
    let _ = stream.close(None).await;
    (CLOSE_NORMAL, String::new())
}

/// A close frame with `code` and `reason`.
pub(super) fn close_frame(code: u16, reason: &str) -> CloseFrame {
    CloseFrame {
        code: CloseCode::from(code),
        reason: reason.to_owned().into(),
    }
}

/// The code and reason of a connection whose socket refused a frame.
pub(super) fn send_failed() -> (u16, String) {
    (CLOSE_ABNORMAL, "send failed".to_owned())
}

/// What one read from the socket gave.
#[derive(Debug)]
pub(super) enum Received {
    /// A text frame.
    Text(Utf8Bytes),
    /// A binary frame.
    Binary(Bytes),
    /// A ping, pong or raw frame, which the clients leave to the WebSocket layer.
    Control,
    /// The connection ended.
    End(Ending),
}

/// How a connection ended.
#[derive(Debug)]
pub(super) enum Ending {
    /// The server sent a close frame (`None` when it named no code).
    Closed(Option<CloseFrame>),
    /// The socket failed, for this reason.
    Failed(String),
    /// The connection ended without a close frame.
    Lost,
}

/// Sorts the result of reading the next message.
pub(super) fn received(next: Option<Result<WsMessage, WsError>>) -> Received {
    match next {
        Some(Ok(WsMessage::Text(text))) => Received::Text(text),
        Some(Ok(WsMessage::Binary(bytes))) => Received::Binary(bytes),
        Some(Ok(WsMessage::Close(frame))) => Received::End(Ending::Closed(frame)),
        Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_))) => {
            Received::Control
        }
        Some(Err(err)) => Received::End(Ending::Failed(err.to_string())),
        None => Received::End(Ending::Lost),
    }
}

impl Ending {
    /// The close code and reason the connection ended with: 1005 for a close frame without a
    /// code, 1006 when there was no close frame.
    pub(super) fn code_and_reason(self) -> (u16, String) {
        match self {
            Self::Closed(Some(frame)) => (u16::from(frame.code), frame.reason.to_string()),
            Self::Closed(None) => (CLOSE_NO_STATUS, String::new()),
            Self::Failed(reason) => (CLOSE_ABNORMAL, reason),
            Self::Lost => (CLOSE_ABNORMAL, "connection lost".to_owned()),
        }
    }

    /// The error for a connection that ended before its opening exchange completed;
    /// `describe` words a close frame's code and reason.
    pub(super) fn opening_error(self, describe: impl FnOnce(u16, &str) -> String) -> ClientError {
        ClientError::Handshake(match self {
            Self::Closed(Some(frame)) => describe(u16::from(frame.code), frame.reason.as_str()),
            Self::Closed(None) => "closed".to_owned(),
            Self::Failed(reason) => reason,
            Self::Lost => "connection closed".to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn closed_with(code: u16, reason: &str) -> Ending {
        Ending::Closed(Some(close_frame(code, reason)))
    }

    #[test]
    fn only_websocket_urls_are_accepted() {
        assert_eq!(check_url("ws://host/"), Ok(()));
        assert_eq!(check_url("wss://host/"), Ok(()));
        assert_eq!(
            check_url("http://host/"),
            Err(ClientError::Url(
                "http://host/ (expected ws:// or wss://)".to_owned()
            ))
        );
    }

    #[test]
    fn reads_are_sorted_into_data_control_and_endings() {
        let text = received(Some(Ok(WsMessage::text("hi"))));
        assert!(matches!(text, Received::Text(t) if t.as_str() == "hi"));
        let binary = received(Some(Ok(WsMessage::binary(vec![1, 2]))));
        assert!(matches!(binary, Received::Binary(b) if b.as_ref() == [1, 2]));
        let ping = received(Some(Ok(WsMessage::Ping(Bytes::new()))));
        assert!(matches!(ping, Received::Control));
        let close = received(Some(Ok(WsMessage::Close(None))));
        assert!(matches!(close, Received::End(Ending::Closed(None))));
        let failed = received(Some(Err(WsError::ConnectionClosed)));
        assert!(matches!(failed, Received::End(Ending::Failed(_))));
        assert!(matches!(received(None), Received::End(Ending::Lost)));
    }

    #[test]
    fn endings_give_the_close_code_and_reason() {
        assert_eq!(
            closed_with(4500, "bye").code_and_reason(),
            (4500, "bye".to_owned())
        );
        assert_eq!(
            Ending::Closed(None).code_and_reason(),
            (1005, String::new())
        );
        assert_eq!(
            Ending::Failed("reset".to_owned()).code_and_reason(),
            (1006, "reset".to_owned())
        );
        assert_eq!(
            Ending::Lost.code_and_reason(),
            (1006, "connection lost".to_owned())
        );
    }

    #[test]
    fn endings_during_the_opening_exchange_are_handshake_errors() {
        let describe = |code: u16, reason: &str| format!("{code}: {reason}");
        let handshake = |text: &str| ClientError::Handshake(text.to_owned());
        assert_eq!(
            closed_with(1008, "no").opening_error(describe),
            handshake("1008: no")
        );
        assert_eq!(
            Ending::Closed(None).opening_error(describe),
            handshake("closed")
        );
        assert_eq!(
            Ending::Failed("reset".to_owned()).opening_error(describe),
            handshake("reset")
        );
        assert_eq!(
            Ending::Lost.opening_error(describe),
            handshake("connection closed")
        );
    }
}
