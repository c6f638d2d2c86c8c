//! Channels: which local connections hold which channel, and fan-out of publications to them.
//!
//! A publication is encoded once per wire format and the same bytes are queued for every local
//! subscriber of that format. Publishing never waits for subscribers: each has its own bounded
//! queue, and one that overflows is disconnected (close 4400) without slowing anyone else.
//! Traffic between nodes goes through a [`Broker`].

mod broker;

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use serde_json::Value;
use thiserror::Error;

pub use broker::{Broker, BrokerError, BrokerFuture, MemoryBroker};

use crate::connection::{ConnectionHandle, Format, SendError};

/// Number of independently locked parts of the channel table.
const SHARDS: usize = 32;

/// What the publish-out stage decides for one subscriber.
#[derive(Debug, Clone, PartialEq)]
pub enum Outbound {
    /// Deliver the publication as it is.
    Deliver,
    /// Do not deliver it to this subscriber.
    Block,
    /// Deliver this data instead.
    Replace(Value),
}

/// A publish-out filter: called for every subscriber of every publication, so it must be quick.
pub type PublishOut = Arc<dyn Fn(&ConnectionHandle, &str, &Value) -> Outbound + Send + Sync>;

/// Why a subscription was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SubscribeError {
    /// The connection already holds the maximum number of subscriptions.
    #[error("the socket has reached its limit of {0} subscriptions")]
    Limit(usize),
    /// The broker could not subscribe.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// The connection is closed.
    #[error("the socket is closed")]
    Closed,
}

/// Counters the exchange keeps (registered in the server's metrics).
#[derive(Debug, Clone, Default)]
pub struct ExchangeCounters {
    /// Publications handed to the broker.
    pub publications: Counter,
    /// Publications delivered to local connections (one per subscriber).
    pub deliveries: Counter,
    /// Successful subscribes.
    pub subscribes: Counter,
    /// Unsubscribes (by request, kick-out or disconnect).
    pub unsubscribes: Counter,
    /// Subscriptions held now.
    pub subscriptions: Gauge,
}

#[derive(Clone)]
struct Subscriber {
    key: u64,
    handle: ConnectionHandle,
}

/// One channel's local subscribers. Delivery takes a reference to the list and works outside
/// the lock; a change while a delivery is under way copies the list first.
#[derive(Default)]
struct Channel {
    subscribers: Arc<Vec<Subscriber>>,
}

struct Shared {
    shards: Vec<Mutex<HashMap<Arc<str>, Channel>>>,
    hasher: std::collections::hash_map::RandomState,
    broker: Arc<dyn Broker>,
    publish_out: Option<PublishOut>,
    counters: ExchangeCounters,
}

/// The channel table and fan-out of one server; cheap to clone.
#[derive(Clone)]
pub struct Exchange {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Exchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exchange").finish_non_exhaustive()
    }
}

/// Where a broker hands publications for this node.
#[derive(Clone)]
pub struct Inbox {
    exchange: Weak<Shared>,
}

impl std::fmt::Debug for Inbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbox").finish_non_exhaustive()
    }
}

impl Inbox {
    /// Delivers a publication to this node's subscribers of `channel`.
    pub fn deliver(&self, channel: &str, data: Option<&Value>) {
        if let Some(shared) = self.exchange.upgrade() {
            Exchange { shared }.deliver(channel, data);
        }
    }
}

impl Exchange {
    /// An exchange using `broker`, with an optional publish-out filter.
    pub fn new(
        broker: Arc<dyn Broker>,
        publish_out: Option<PublishOut>,
        counters: ExchangeCounters,
    ) -> Self {
        let shared = Arc::new(Shared {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
            broker,
            publish_out,
            counters,
        });
        shared.broker.attach(Inbox {
            exchange: Arc::downgrade(&shared),
        });
        Self { shared }
    }

    /// An exchange with the in-memory broker and no filter (for tests and single nodes).
    pub fn in_memory() -> Self {
        Self::new(MemoryBroker::new(), None, ExchangeCounters::default())
    }

    fn shard(&self, channel: &str) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Channel>> {
        let index = (self.shared.hasher.hash_one(channel) as usize) % SHARDS;
        // Each update is a single insert or remove: a poisoned lock is still consistent.
        self.shared.shards[index]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Subscribes `connection` to `channel` (subscribing twice is not an error), keeping it under
    /// `limit` subscriptions.
    pub async fn subscribe(
        &self,
        connection: &ConnectionHandle,
        channel: &str,
        limit: usize,
    ) -> Result<(), SubscribeError> {
        let channel: Arc<str> = Arc::from(channel);
        match connection.add_subscription(&channel, limit) {
            Ok(false) => return Ok(()),
            Ok(true) => {}
            Err(err) => return Err(err),
        }
        let first = {
            let mut shard = self.shard(&channel);
            let entry = shard.entry(channel.clone()).or_default();
            let first = entry.subscribers.is_empty();
            Arc::make_mut(&mut entry.subscribers).push(Subscriber {
                key: connection.key(),
                handle: connection.clone(),
            });
            first
        };
        if first {
            if let Err(err) = self.shared.broker.subscribe(&channel).await {
                self.detach(connection, &channel).await;
                connection.remove_subscription(&channel);
                return Err(err.into());
            }
        }
        self.shared.counters.subscribes.inc();
        self.shared.counters.subscriptions.inc();
        Ok(())
    }

    /// Unsubscribes `connection` from `channel`; `false` if it was not subscribed.
    pub async fn unsubscribe(&self, connection: &ConnectionHandle, channel: &str) -> bool {
        if !connection.remove_subscription(channel) {
            return false;
        }
        self.detach(connection, channel).await;
        self.shared.counters.unsubscribes.inc();
        self.shared.counters.subscriptions.dec();
        true
    }

    /// Unsubscribes `connection` from everything (when it closes).
    pub async fn unsubscribe_all(&self, connection: &ConnectionHandle) {
        for channel in connection.take_subscriptions() {
            self.detach(connection, &channel).await;
            self.shared.counters.unsubscribes.inc();
            self.shared.counters.subscriptions.dec();
        }
    }

    /// Removes the connection from the channel's list; the last one out unsubscribes the node.
    async fn detach(&self, connection: &ConnectionHandle, channel: &str) {
        let now_empty = {
            let mut shard = self.shard(channel);
            let Some(entry) = shard.get_mut(channel) else {
                return;
            };
            let key = connection.key();
            let list = Arc::make_mut(&mut entry.subscribers);
            if let Some(at) = list.iter().position(|s| s.key == key) {
                list.swap_remove(at);
            }
            let empty = list.is_empty();
            if empty {
                shard.remove(channel);
            }
            empty
        };
        if now_empty {
            if let Err(err) = self.shared.broker.unsubscribe(channel).await {
                tracing::warn!(channel, error = %err, "broker unsubscribe failed");
            }
        }
    }

    /// Publishes `data` on `channel` to every subscriber on every node.
    pub async fn publish(&self, channel: &str, data: Option<&Value>) -> Result<(), BrokerError> {
        self.shared.counters.publications.inc();
        self.shared.broker.publish(channel, data).await
    }

    /// Local subscribers of `channel`.
    pub fn subscriber_count(&self, channel: &str) -> usize {
        self.shard(channel)
            .get(channel)
            .map_or(0, |c| c.subscribers.len())
    }

    /// Delivers a publication to the local subscribers of `channel`: encoded once per format,
    /// the same bytes queued for each.
    fn deliver(&self, channel: &str, data: Option<&Value>) {
        let subscribers = match self.shard(channel).get(channel) {
            Some(entry) => entry.subscribers.clone(),
            None => return,
        };
        let mut encoded: Vec<(Format, Bytes)> = Vec::with_capacity(1);
        let mut delivered = 0u64;
        let mut closed = Vec::new();
        for subscriber in subscribers.iter() {
            let handle = &subscriber.handle;
            let frame = match self.filter(handle, channel, data) {
                Outbound::Block => continue,
                Outbound::Replace(replacement) => {
                    match handle.encode_publication(channel, Some(&replacement)) {
                        Ok(frame) => frame,
                        Err(err) => {
                            tracing::warn!(channel, error = %err, "could not encode a publication");
                            continue;
                        }
                    }
                }
                Outbound::Deliver => {
                    let format = handle.format();
                    match encoded.iter().find(|(f, _)| *f == format) {
                        Some((_, frame)) => frame.clone(),
                        None => match handle.encode_publication(channel, data) {
                            Ok(frame) => {
                                encoded.push((format, frame.clone()));
                                frame
                            }
                            Err(err) => {
                                tracing::warn!(channel, error = %err, "could not encode a publication");
                                continue;
                            }
                        },
                    }
                }
            };
            // A full queue closes that subscriber (4400); everyone else still gets the message.
            match handle.push(frame) {
                Ok(()) => delivered += 1,
                Err(SendError::Closed) => closed.push(subscriber.key),
                Err(_) => {}
            }
        }
        self.shared.counters.deliveries.inc_by(delivered);
        if !closed.is_empty() {
            self.prune(channel, &closed);
        }
    }

    /// Drops subscribers found closed during a delivery. They are normally removed when their
    /// connection ends; this keeps a list clean even if that raced with a subscribe.
    fn prune(&self, channel: &str, keys: &[u64]) {
        let now_empty = {
            let mut shard = self.shard(channel);
            let Some(entry) = shard.get_mut(channel) else {
                return;
            };
            Arc::make_mut(&mut entry.subscribers).retain(|s| !keys.contains(&s.key));
            let empty = entry.subscribers.is_empty();
            if empty {
                shard.remove(channel);
            }
            empty
        };
        if let (true, Ok(runtime)) = (now_empty, tokio::runtime::Handle::try_current()) {
            let exchange = self.clone();
            let channel = channel.to_owned();
            runtime.spawn(async move {
                if let Err(err) = exchange.shared.broker.unsubscribe(&channel).await {
                    tracing::warn!(channel, error = %err, "broker unsubscribe failed");
                }
            });
        }
    }

    fn filter(&self, handle: &ConnectionHandle, channel: &str, data: Option<&Value>) -> Outbound {
        match &self.shared.publish_out {
            Some(filter) => filter(handle, channel, data.unwrap_or(&Value::Null)),
            None => Outbound::Deliver,
        }
    }
}
