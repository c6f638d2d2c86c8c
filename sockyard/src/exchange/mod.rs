//! Channels: which local subscribers hold which channel, and fan-out of publications to them.
//!
//! A publication is encoded once per wire format and the same bytes are queued for every local
//! subscriber of that format. Publishing never waits for subscribers: each has its own bounded
//! queue, and one that overflows is disconnected (close 4400) without slowing anyone else.
//! Traffic between nodes goes through a [`Broker`]. The exchange knows its subscribers only
//! through the narrow [`Subscriber`] trait, so it imports nothing of the connections above it.

mod broker;
mod subscriber;

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use serde_json::Value;
use thiserror::Error;

pub use broker::{Broker, BrokerError, BrokerFuture, MemoryBroker};
pub use subscriber::{Delivery, Subscriber};

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
pub type PublishOut<S> = Arc<dyn Fn(&S, &str, &Value) -> Outbound + Send + Sync>;

/// How many channels one subscriber may hold: a count, and the bytes of their names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriptionLimits {
    /// Channels at once.
    pub count: usize,
    /// Bytes of their names together.
    pub bytes: usize,
}

/// Why a subscription was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SubscribeError {
    /// The connection already holds the maximum number of subscriptions.
    #[error("the socket has reached its limit of {0} subscriptions")]
    Limit(usize),
    /// The names of the connection's channels would take more than this many bytes.
    #[error("the socket has reached its limit of {0} bytes of channel names")]
    NameBytes(usize),
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

/// One channel's local subscribers. Delivery takes a reference to the list and works outside
/// the lock; a change while a delivery is under way copies the list first.
struct Channel<S> {
    subscribers: Arc<Vec<S>>,
}

impl<S> Default for Channel<S> {
    fn default() -> Self {
        Self {
            subscribers: Arc::new(Vec::new()),
        }
    }
}

struct Shared<S: Subscriber> {
    shards: Vec<Mutex<HashMap<Arc<str>, Channel<S>>>>,
    hasher: std::collections::hash_map::RandomState,
    broker: Arc<dyn Broker>,
    publish_out: Option<PublishOut<S>>,
    counters: ExchangeCounters,
}

/// The channel table and fan-out of one server; cheap to clone.
pub struct Exchange<S: Subscriber> {
    shared: Arc<Shared<S>>,
}

impl<S: Subscriber> Clone for Exchange<S> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<S: Subscriber> std::fmt::Debug for Exchange<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exchange").finish_non_exhaustive()
    }
}

/// What a broker hands publications to: the local fan-out of one exchange.
trait LocalDelivery: Send + Sync {
    fn deliver(&self, channel: &str, data: Option<&Value>);
}

impl<S: Subscriber> LocalDelivery for Shared<S> {
    fn deliver(&self, channel: &str, data: Option<&Value>) {
        self.fan_out(channel, data);
    }
}

/// Where a broker hands publications for this node.
#[derive(Clone)]
pub struct Inbox {
    exchange: Weak<dyn LocalDelivery>,
}

impl std::fmt::Debug for Inbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbox").finish_non_exhaustive()
    }
}

impl Inbox {
    /// Delivers a publication to this node's subscribers of `channel`.
    pub fn deliver(&self, channel: &str, data: Option<&Value>) {
        if let Some(exchange) = self.exchange.upgrade() {
            exchange.deliver(channel, data);
        }
    }
}

impl<S: Subscriber> Exchange<S> {
    /// An exchange using `broker`, with an optional publish-out filter.
    pub fn new(
        broker: Arc<dyn Broker>,
        publish_out: Option<PublishOut<S>>,
        counters: ExchangeCounters,
    ) -> Self {
        let shared = Arc::new(Shared {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
            broker,
            publish_out,
            counters,
        });
        let weak: Weak<Shared<S>> = Arc::downgrade(&shared);
        shared.broker.attach(Inbox { exchange: weak });
        Self { shared }
    }

    /// An exchange with the in-memory broker and no filter (for tests and single nodes).
    pub fn in_memory() -> Self {
        Self::new(MemoryBroker::new(), None, ExchangeCounters::default())
    }

    /// Subscribes `subscriber` to `channel` (subscribing twice is not an error), keeping it
    /// within `limits`.
    pub async fn subscribe(
        &self,
        subscriber: &S,
        channel: &str,
        limits: SubscriptionLimits,
    ) -> Result<(), SubscribeError> {
        let channel: Arc<str> = Arc::from(channel);
        if !subscriber.add_subscription(&channel, limits)? {
            return Ok(());
        }
        let first = {
            let mut shard = self.shared.shard(&channel);
            let entry = shard.entry(channel.clone()).or_default();
            let first = entry.subscribers.is_empty();
            Arc::make_mut(&mut entry.subscribers).push(subscriber.clone());
            first
        };
        if first {
            if let Err(err) = self.shared.broker.subscribe(&channel).await {
                self.detach(subscriber, &channel).await;
                subscriber.remove_subscription(&channel);
                return Err(err.into());
            }
        }
        self.shared.counters.subscribes.inc();
        self.shared.counters.subscriptions.inc();
        Ok(())
    }

    /// Unsubscribes `subscriber` from `channel`; `false` if it was not subscribed.
    pub async fn unsubscribe(&self, subscriber: &S, channel: &str) -> bool {
        if !subscriber.remove_subscription(channel) {
            return false;
        }
        self.detach(subscriber, channel).await;
        self.shared.counters.unsubscribes.inc();
        self.shared.counters.subscriptions.dec();
        true
    }

    /// Unsubscribes `subscriber` from everything (when it closes).
    pub async fn unsubscribe_all(&self, subscriber: &S) {
        for channel in subscriber.take_subscriptions() {
            self.detach(subscriber, &channel).await;
            self.shared.counters.unsubscribes.inc();
            self.shared.counters.subscriptions.dec();
        }
    }

    /// Removes the subscriber from the channel's list; the last one out unsubscribes the node.
    async fn detach(&self, subscriber: &S, channel: &str) {
        let key = subscriber.key();
        if self.shared.remove(channel, |s| s.key() == key) {
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
        self.shared
            .shard(channel)
            .get(channel)
            .map_or(0, |c| c.subscribers.len())
    }
}

impl<S: Subscriber> Shared<S> {
    fn shard(&self, channel: &str) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Channel<S>>> {
        let index = (self.hasher.hash_one(channel) as usize) % SHARDS;
        // Each update is a single insert or remove: a poisoned lock is still consistent.
        self.shards[index]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Removes the subscribers of `channel` for which `remove` holds; true when that left the
    /// channel empty (the node then leaves it at the broker).
    fn remove(&self, channel: &str, remove: impl Fn(&S) -> bool) -> bool {
        let mut shard = self.shard(channel);
        let Some(entry) = shard.get_mut(channel) else {
            return false;
        };
        Arc::make_mut(&mut entry.subscribers).retain(|s| !remove(s));
        let empty = entry.subscribers.is_empty();
        if empty {
            shard.remove(channel);
        }
        empty
    }

    /// Delivers a publication to the local subscribers of `channel`: encoded once per format,
    /// the same bytes queued for each.
    fn fan_out(&self, channel: &str, data: Option<&Value>) {
        let subscribers = match self.shard(channel).get(channel) {
            Some(entry) => entry.subscribers.clone(),
            None => return,
        };
        let mut encoded: Vec<(S::Format, Bytes)> = Vec::with_capacity(1);
        let mut delivered = 0u64;
        let mut gone = Vec::new();
        for subscriber in subscribers.iter() {
            let frame = match self.filter(subscriber, channel, data) {
                Outbound::Block => continue,
                Outbound::Replace(replacement) => {
                    match subscriber.encode_publication(channel, Some(&replacement)) {
                        Ok(frame) => frame,
                        Err(err) => {
                            tracing::warn!(channel, error = %err, "could not encode a publication");
                            continue;
                        }
                    }
                }
                Outbound::Deliver => {
                    let format = subscriber.format();
                    match encoded.iter().find(|(f, _)| *f == format) {
                        Some((_, frame)) => frame.clone(),
                        None => match subscriber.encode_publication(channel, data) {
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
            match subscriber.push(frame) {
                Delivery::Queued => delivered += 1,
                Delivery::Gone => gone.push(subscriber.key()),
                Delivery::Refused => {}
            }
        }
        self.counters.deliveries.inc_by(delivered);
        if !gone.is_empty() {
            self.prune(channel, &gone);
        }
    }

    /// Drops subscribers found gone during a delivery. They are normally removed when their
    /// connection ends; this keeps a list clean even if that raced with a subscribe.
    fn prune(&self, channel: &str, keys: &[u64]) {
        let now_empty = self.remove(channel, |s| keys.contains(&s.key()));
        if let (true, Ok(runtime)) = (now_empty, tokio::runtime::Handle::try_current()) {
            let broker = self.broker.clone();
            let channel = channel.to_owned();
            runtime.spawn(async move {
                if let Err(err) = broker.unsubscribe(&channel).await {
                    tracing::warn!(channel, error = %err, "broker unsubscribe failed");
                }
            });
        }
    }

    fn filter(&self, subscriber: &S, channel: &str, data: Option<&Value>) -> Outbound {
        match &self.publish_out {
            Some(filter) => filter(subscriber, channel, data.unwrap_or(&Value::Null)),
            None => Outbound::Deliver,
        }
    }
}
