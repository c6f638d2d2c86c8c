//! [`Client`]: the cheap handle to a SocketCluster connection, which turns calls into commands
//! for the connection's driver.

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use super::driver::{self, Command, Link, State};
use super::{lock, socket, ClientError, ClientOptions, Events};

/// A handle to a SocketCluster connection; cheap to clone.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use sockyard::client::{ClientEvent, ClientOptions};
/// use sockyard::Client;
///
/// let (client, mut events) =
///     Client::connect("ws://127.0.0.1:8000/socketcluster/", ClientOptions::default()).await?;
/// let reply = client.invoke("echo", serde_json::json!({"hello": "world"})).await?;
/// client.subscribe("news").await?;
/// while let Some(event) = events.next().await {
///     if let ClientEvent::Publication { channel, data } = event {
///         println!("{channel}: {data:?} (echo said {reply:?})");
///     }
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Client {
    link: Link,
    ack_timeout: Duration,
}

impl Client {
    /// Connects to `url` (e.g. `ws://127.0.0.1:8000/socketcluster/`) and completes the handshake.
    pub async fn connect(url: &str, options: ClientOptions) -> Result<(Self, Events), ClientError> {
        socket::check_url(url)?;
        let ack_timeout = options.ack_timeout;
        let (link, events) = driver::start(url, options).await?;
        Ok((Self { link, ack_timeout }, events))
    }

    /// The socket id of the current connection, if connected.
    pub fn id(&self) -> Option<String> {
        match &*self.link.state.borrow() {
            State::Open { id } => Some(id.clone()),
            _ => None,
        }
    }

    /// Calls a procedure and waits up to the configured `ack_timeout` for the reply.
    pub async fn invoke(
        &self,
        event: &str,
        data: impl Serialize,
    ) -> Result<Option<Value>, ClientError> {
        self.invoke_with_timeout(event, data, self.ack_timeout)
            .await
    }

    /// Calls a procedure with an explicit timeout. While reconnecting, the call waits for the
    /// connection (within the same timeout).
    pub async fn invoke_with_timeout(
        &self,
        event: &str,
        data: impl Serialize,
        timeout: Duration,
    ) -> Result<Option<Value>, ClientError> {
        let data = to_data(data)?;
        let cid = self.link.next_cid.fetch_add(1, Ordering::Relaxed);
        let send = || {
            let command = Command::Send {
                event: event.to_owned(),
                data,
                cid: Some(cid),
            };
            self.link.commands.send(command).is_ok()
        };
        self.link.pending.call(cid, event, timeout, send).await
    }

    /// Subscribes to `channel`; publications arrive as [`ClientEvent::Publication`]. The
    /// subscription is renewed after each reconnection.
    ///
    /// [`ClientEvent::Publication`]: super::ClientEvent::Publication
    pub async fn subscribe(&self, channel: &str) -> Result<(), ClientError> {
        self.subscribe_with(channel, Value::Null).await
    }

    /// Subscribes to `channel`, sending `data` along (the server's subscribe stage sees it).
    pub async fn subscribe_with(
        &self,
        channel: &str,
        data: impl Serialize,
    ) -> Result<(), ClientError> {
        let mut request = serde_json::json!({ "channel": channel });
        if let Some(data) = to_data(data)? {
            request["data"] = data;
        }
        self.invoke("#subscribe", request).await?;
        lock(&self.link.memory).channels.insert(channel.to_owned());
        Ok(())
    }

    /// Leaves `channel` (a transmit, as the official client sends it).
    pub fn unsubscribe(&self, channel: &str) -> Result<(), ClientError> {
        lock(&self.link.memory).channels.remove(channel);
        self.transmit("#unsubscribe", channel)
    }

    /// Channels the client is subscribed to (and will subscribe to again after reconnecting).
    pub fn subscriptions(&self) -> Vec<String> {
        lock(&self.link.memory).channels.iter().cloned().collect()
    }

    /// Publishes `data` on `channel` and waits for the server's acknowledgement.
    pub async fn publish(&self, channel: &str, data: impl Serialize) -> Result<(), ClientError> {
        let data = to_data(data)?;
        self.invoke(
            "#publish",
            serde_json::json!({ "channel": channel, "data": data }),
        )
        .await
        .map(|_| ())
    }

    /// Publishes without waiting for an acknowledgement.
    pub fn transmit_publish(&self, channel: &str, data: impl Serialize) -> Result<(), ClientError> {
        let data = to_data(data)?;
        self.transmit(
            "#publish",
            serde_json::json!({ "channel": channel, "data": data }),
        )
    }

    /// Authenticates with a signed token; on success it is kept for reconnections. A refused
    /// token comes back as `ClientError::Remote` (`AuthTokenInvalidError`, …); a token the
    /// server's authenticate stage turned down as `Ok(false)`.
    pub async fn authenticate(&self, token: &str) -> Result<bool, ClientError> {
        let reply = self.invoke("#authenticate", token).await?;
        let accepted = reply
            .as_ref()
            .and_then(|r| r.get("isAuthenticated"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if accepted {
            lock(&self.link.memory).token = Some(token.to_owned());
        }
        Ok(accepted)
    }

    /// Drops the auth token, here and on the server.
    pub fn deauthenticate(&self) -> Result<(), ClientError> {
        lock(&self.link.memory).token = None;
        self.transmit("#removeAuthToken", ())
    }

    /// The auth token the client holds (given by the server or passed to `authenticate`).
    pub fn auth_token(&self) -> Option<String> {
        lock(&self.link.memory).token.clone()
    }

    /// Sends an event without waiting for anything.
    pub fn transmit(&self, event: &str, data: impl Serialize) -> Result<(), ClientError> {
        let data = to_data(data)?;
        self.link
            .commands
            .send(Command::Send {
                event: event.to_owned(),
                data,
                cid: None,
            })
            .map_err(|_| ClientError::Closed)
    }

    /// Closes the connection for good with `code` and `reason` and waits until it is closed.
    pub async fn close(&self, code: u16, reason: &str) {
        let _ = self.link.commands.send(Command::Close {
            code,
            reason: reason.to_owned(),
        });
        let mut state = self.link.state.clone();
        let _ = state.wait_for(|s| *s == State::Stopped).await;
    }
}

/// Event data as sent: `None` for a JSON `null`.
fn to_data(data: impl Serialize) -> Result<Option<Value>, ClientError> {
    match serde_json::to_value(data) {
        Ok(Value::Null) => Ok(None),
        Ok(value) => Ok(Some(value)),
        Err(err) => Err(ClientError::Encode(err.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_data_is_left_out() {
        assert_eq!(to_data(()), Ok(None));
        assert_eq!(to_data(Value::Null), Ok(None));
        assert_eq!(to_data("x"), Ok(Some(Value::from("x"))));
    }
}
