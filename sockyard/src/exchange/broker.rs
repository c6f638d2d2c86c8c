//! The boundary between a node's exchange and the outside world: a [`Broker`] carries
//! publications between Sockyard nodes. The in-memory broker serves a single node; brokers over
//! Redis or NATS implement the same trait.

use std::sync::{Arc, OnceLock};

use futures_util::future::BoxFuture;
use serde_json::Value;
use thiserror::Error;

use super::Inbox;

/// A broker operation failed (connection lost, server refused).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("broker: {0}")]
pub struct BrokerError(pub String);

/// The future a broker operation returns.
pub type BrokerFuture<'a> = BoxFuture<'a, Result<(), BrokerError>>;

/// Carries publications between nodes.
///
/// The exchange calls [`Broker::subscribe`] when the first local connection subscribes to a
/// channel and [`Broker::unsubscribe`] when the last one leaves, so a node only hears about
/// channels its own clients hold. [`Broker::publish`] must deliver the publication to every
/// node that subscribed to the channel, this one included, by calling [`Inbox::deliver`] on
/// each.
///
/// A broker that logs every publication and delivers it locally, as the in-memory one does:
///
/// ```
/// use std::sync::{Arc, OnceLock};
/// use serde_json::Value;
/// use sockyard::exchange::{Broker, BrokerFuture, Inbox};
///
/// #[derive(Default)]
/// struct Logged {
///     inbox: OnceLock<Inbox>,
/// }
///
/// impl Broker for Logged {
///     fn attach(&self, inbox: Inbox) {
///         let _ = self.inbox.set(inbox);
///     }
///     fn subscribe(&self, _channel: &str) -> BrokerFuture<'_> {
///         Box::pin(async { Ok(()) })
///     }
///     fn unsubscribe(&self, _channel: &str) -> BrokerFuture<'_> {
///         Box::pin(async { Ok(()) })
///     }
///     fn publish(&self, channel: &str, data: Option<&Value>) -> BrokerFuture<'_> {
///         println!("{channel}: {data:?}");
///         if let Some(inbox) = self.inbox.get() {
///             inbox.deliver(channel, data);
///         }
///         Box::pin(async { Ok(()) })
///     }
/// }
///
/// let builder = sockyard::Server::builder(&sockyard::Config::default())
///     .broker(Arc::new(Logged::default()));
/// assert!(builder.build().is_ok());
/// ```
pub trait Broker: Send + Sync + 'static {
    /// Called once, before anything else: where publications for this node go.
    fn attach(&self, inbox: Inbox);
    /// Starts receiving publications for `channel`.
    fn subscribe(&self, channel: &str) -> BrokerFuture<'_>;
    /// Stops receiving publications for `channel`.
    fn unsubscribe(&self, channel: &str) -> BrokerFuture<'_>;
    /// Publishes `data` on `channel` to every subscribed node (`None`: a publication without
    /// data, which subscribers see without a `data` field).
    fn publish(&self, channel: &str, data: Option<&Value>) -> BrokerFuture<'_>;
}

/// A broker for a single node: a publication goes straight to this node's subscribers.
#[derive(Debug, Default)]
pub struct MemoryBroker {
    inbox: OnceLock<Inbox>,
}

impl MemoryBroker {
    /// A new in-memory broker.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
}

impl Broker for MemoryBroker {
    fn attach(&self, inbox: Inbox) {
        let _ = self.inbox.set(inbox);
    }

    fn subscribe(&self, _channel: &str) -> BrokerFuture<'_> {
        Box::pin(std::future::ready(Ok(())))
    }

    fn unsubscribe(&self, _channel: &str) -> BrokerFuture<'_> {
        Box::pin(std::future::ready(Ok(())))
    }

    fn publish(&self, channel: &str, data: Option<&Value>) -> BrokerFuture<'_> {
        if let Some(inbox) = self.inbox.get() {
            inbox.deliver(channel, data);
        }
        Box::pin(std::future::ready(Ok(())))
    }
}
