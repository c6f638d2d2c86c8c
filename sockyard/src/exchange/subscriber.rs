//! What the exchange needs of a subscriber: an identity, a wire format to encode for, and a
//! bounded queue to push frames into. Connections implement it; the exchange knows nothing else
//! of them.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;

use super::{SubscribeError, SubscriptionLimits};

/// The outcome of queueing a frame for a subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The frame is queued.
    Queued,
    /// The subscriber's queue is full: it is being closed as a slow consumer and the frame is
    /// dropped for it alone.
    Refused,
    /// The subscriber is closed; the exchange forgets it.
    Gone,
}

/// A local subscriber of channels, cheap to clone.
pub trait Subscriber: Clone + Send + Sync + 'static {
    /// Identifies a wire format: subscribers with equal formats receive the same bytes, so a
    /// publication is encoded once per format.
    type Format: Copy + Eq + Send;
    /// Why a publication could not be encoded (logged, the subscriber skipped).
    type EncodeError: std::fmt::Display;

    /// A number identifying the subscriber within the process.
    fn key(&self) -> u64;

    /// The subscriber's wire format.
    fn format(&self) -> Self::Format;

    /// Encodes a publication as this subscriber's format delivers it: one complete frame.
    fn encode_publication(
        &self,
        channel: &str,
        data: Option<&Value>,
    ) -> Result<Bytes, Self::EncodeError>;

    /// Queues one complete, already-encoded frame (shared across subscribers of a format).
    fn push(&self, frame: Bytes) -> Delivery;

    /// Records a subscription on the subscriber's side, within `limits`; `Ok(false)` if it
    /// already existed.
    fn add_subscription(
        &self,
        channel: &Arc<str>,
        limits: SubscriptionLimits,
    ) -> Result<bool, SubscribeError>;

    /// Forgets a subscription; false if there was none.
    fn remove_subscription(&self, channel: &str) -> bool;

    /// Forgets every subscription and returns them.
    fn take_subscriptions(&self) -> Vec<Arc<str>>;
}
