//! The calls a client has sent and not yet had answered, shared by its handles (which wait) and
//! the task that owns its socket (which hands each reply to its caller).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::oneshot;

use super::{lock, ClientError};
use crate::error::ApiError;

/// The answer to a call: its data, or the error the server answered with.
pub(super) type Reply = Result<Option<Value>, ApiError>;

/// Calls waiting for their reply, by call id; cheap to clone (clones share the table).
#[derive(Debug)]
pub(super) struct PendingReplies<K> {
    table: Arc<Mutex<HashMap<K, oneshot::Sender<Reply>>>>,
}

impl<K> Clone for PendingReplies<K> {
    fn clone(&self) -> Self {
        Self {
            table: Arc::clone(&self.table),
        }
    }
}

impl<K> Default for PendingReplies<K> {
    fn default() -> Self {
        Self {
            table: Arc::default(),
        }
    }
}

impl<K: Eq + Hash + Clone> PendingReplies<K> {
    /// Makes call `key` wait for its reply.
    pub(super) fn register(&self, key: K) -> oneshot::Receiver<Reply> {
        let (sender, receiver) = oneshot::channel();
        lock(&self.table).insert(key, sender);
        receiver
    }

    /// Registers call `key`, has `send` write it (false: the connection is gone) and waits up to
    /// `timeout` for the reply. `name` names the call in a [`ClientError::Timeout`].
    pub(super) async fn call(
        &self,
        key: K,
        name: &str,
        timeout: Duration,
        send: impl FnOnce() -> bool,
    ) -> Result<Option<Value>, ClientError> {
        let receiver = self.register(key.clone());
        if !send() {
            lock(&self.table).remove(&key);
            return Err(ClientError::Closed);
        }
        match tokio::time::timeout(timeout, receiver).await {
            Ok(Ok(Ok(data))) => Ok(data),
            Ok(Ok(Err(err))) => Err(ClientError::Remote(err)),
            Ok(Err(_)) => Err(ClientError::BadConnection),
            Err(_) => {
                lock(&self.table).remove(&key);
                Err(ClientError::Timeout(name.to_owned()))
            }
        }
    }

    /// Takes the waiter of call `key` out of the table, if the call still waits.
    pub(super) fn take(&self, key: &K) -> Option<oneshot::Sender<Reply>> {
        lock(&self.table).remove(key)
    }

    /// Answers call `key`, if it still waits.
    pub(super) fn resolve(&self, key: &K, reply: Reply) {
        if let Some(waiter) = self.take(key) {
            let _ = waiter.send(reply);
        }
    }

    /// Fails call `key` with [`ClientError::BadConnection`].
    pub(super) fn fail(&self, key: &K) {
        drop(self.take(key));
    }

    /// Fails every waiting call with [`ClientError::BadConnection`].
    pub(super) fn fail_all(&self) {
        lock(&self.table).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[tokio::test]
    async fn a_reply_reaches_its_caller() {
        let pending = PendingReplies::default();
        let answering = pending.clone();
        let sent = move || {
            answering.resolve(&7, Ok(Some(Value::from(42))));
            true
        };
        let reply = pending.call(7_u64, "answer", SECOND, sent).await;
        assert_eq!(reply, Ok(Some(Value::from(42))));
    }

    #[tokio::test]
    async fn an_error_reply_comes_back_as_remote() {
        let pending = PendingReplies::default();
        let answering = pending.clone();
        let sent = move || {
            answering.resolve(&"a".to_owned(), Err(ApiError::new("Nope", "refused")));
            true
        };
        let reply = pending.call("a".to_owned(), "ask", SECOND, sent).await;
        assert_eq!(
            reply,
            Err(ClientError::Remote(ApiError::new("Nope", "refused")))
        );
    }

    #[tokio::test]
    async fn an_unsent_call_is_closed_and_forgotten() {
        let pending = PendingReplies::<u64>::default();
        let reply = pending.call(1, "lost", SECOND, || false).await;
        assert_eq!(reply, Err(ClientError::Closed));
        assert!(pending.take(&1).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn an_unanswered_call_times_out_and_is_forgotten() {
        let pending = PendingReplies::<u64>::default();
        let reply = pending.call(1, "slow", SECOND, || true).await;
        assert_eq!(reply, Err(ClientError::Timeout("slow".to_owned())));
        assert!(pending.take(&1).is_none());
    }

    #[tokio::test]
    async fn failed_calls_report_a_bad_connection() {
        let pending = PendingReplies::<u64>::default();
        let (one, two) = (pending.register(1), pending.register(2));
        pending.fail(&1);
        assert!(one.await.is_err());
        let failing = pending.clone();
        let sent = move || {
            failing.fail_all();
            true
        };
        let reply = pending.call(3, "dropped", SECOND, sent).await;
        assert_eq!(reply, Err(ClientError::BadConnection));
        assert!(two.await.is_err());
    }
}
