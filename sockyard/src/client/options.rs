//! The SocketCluster client's settings: [`ClientOptions`] and the reconnection [`Backoff`].

use std::time::Duration;

use super::wire::{Encoding, ProtocolVersion};

/// Reconnection delays: `initial · multiplier^attempt`, plus up to `randomness` of jitter, at most
/// `max`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Backoff {
    /// First delay. Default 500 ms.
    pub initial: Duration,
    /// Growth per failed attempt. Default 1.5.
    pub multiplier: f64,
    /// Upper bound of the random extra delay. Default 500 ms.
    pub randomness: Duration,
    /// Largest delay. Default 30 s.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(500),
            multiplier: 1.5,
            randomness: Duration::from_millis(500),
            max: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The delay before reconnection attempt `attempt` (0-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let base = self.initial.as_secs_f64() * self.multiplier.powi(attempt.min(64) as i32);
        let jitter = self.randomness.as_secs_f64() * rand::random::<f64>();
        Duration::from_secs_f64((base + jitter).min(self.max.as_secs_f64()))
    }
}

/// Client settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientOptions {
    /// How long `invoke` waits for a reply. Default 10 s (as the official client).
    pub ack_timeout: Duration,
    /// Reconnect after the connection drops (not after close code 1000 or ≥ 4500, as the
    /// official client). Default true.
    pub auto_reconnect: bool,
    /// Delays between reconnection attempts.
    pub backoff: Backoff,
    /// Protocol version: decides which ping the client answers. Default v2.
    pub protocol_version: ProtocolVersion,
    /// Signed token sent in the handshake.
    pub auth_token: Option<String>,
    /// The codec the endpoint uses. Default JSON.
    pub encoding: Encoding,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            ack_timeout: Duration::from_secs(10),
            auto_reconnect: true,
            backoff: Backoff::default(),
            protocol_version: ProtocolVersion::V2,
            auth_token: None,
            encoding: Encoding::Json,
        }
    }
}

impl ClientOptions {
    /// Sets `ack_timeout`.
    #[must_use]
    pub fn ack_timeout(mut self, timeout: Duration) -> Self {
        self.ack_timeout = timeout;
        self
    }

    /// Sets `auto_reconnect`.
    #[must_use]
    pub fn auto_reconnect(mut self, enabled: bool) -> Self {
        self.auto_reconnect = enabled;
        self
    }

    /// Sets `backoff`.
    #[must_use]
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Sets the codec (it must match the endpoint's).
    #[must_use]
    pub fn encoding(mut self, encoding: Encoding) -> Self {
        self.encoding = encoding;
        self
    }

    /// Sets `protocol_version` (`V1` answers `#1` pings with `#2`).
    #[must_use]
    pub fn protocol_version(mut self, version: ProtocolVersion) -> Self {
        self.protocol_version = version;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steady(initial_ms: u64, multiplier: f64, max_ms: u64) -> Backoff {
        Backoff {
            initial: Duration::from_millis(initial_ms),
            multiplier,
            randomness: Duration::ZERO,
            max: Duration::from_millis(max_ms),
        }
    }

    #[test]
    fn delays_grow_by_the_multiplier_from_the_initial_delay() {
        let backoff = steady(100, 2.0, 10_000);
        let delays: Vec<u128> = (0..4).map(|n| backoff.delay(n).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800]);
    }

    #[test]
    fn delays_stop_at_the_maximum_even_for_huge_attempt_numbers() {
        let backoff = steady(100, 2.0, 1_000);
        assert_eq!(backoff.delay(4), Duration::from_millis(1_000));
        assert_eq!(backoff.delay(u32::MAX), Duration::from_millis(1_000));
    }

    #[test]
    fn jitter_adds_at_most_the_randomness() {
        let backoff = Backoff::default();
        for _ in 0..50 {
            let delay = backoff.delay(0);
            assert!(delay >= Duration::from_millis(500), "{delay:?}");
            assert!(delay <= Duration::from_millis(1_000), "{delay:?}");
        }
        let capped = Backoff {
            max: Duration::from_millis(600),
            ..Backoff::default()
        };
        assert!((0..50).all(|_| capped.delay(3) == Duration::from_millis(600)));
    }

    #[test]
    fn builders_set_their_field() {
        let options = ClientOptions::default()
            .ack_timeout(Duration::from_secs(1))
            .auto_reconnect(false)
            .backoff(steady(1, 1.0, 1))
            .encoding(Encoding::Msgpack)
            .protocol_version(ProtocolVersion::V1);
        assert_eq!(options.ack_timeout, Duration::from_secs(1));
        assert!(!options.auto_reconnect);
        assert_eq!(options.backoff, steady(1, 1.0, 1));
        assert!(matches!(options.encoding, Encoding::Msgpack));
        assert_eq!(options.protocol_version, ProtocolVersion::V1);
    }
}
