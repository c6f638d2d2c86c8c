//! Server metrics, rendered at `GET /metrics` in the Prometheus/OpenMetrics text format.
//!
//! Each server owns its own registry (several servers in one process, as in tests, do not mix
//! their counts). Counters are plain atomics; hot paths add whole batches at once.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::exchange::ExchangeCounters;

/// What went wrong, as counted in `sockyard_errors_total{kind=...}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum ErrorKind {
    /// A frame broke RFC 6455 (bad mask, opcode, fragment, UTF-8).
    bad_frame,
    /// A message exceeded `limits.max_message_bytes`.
    message_too_large,
    /// A message broke the dialect's rules (e.g. before the handshake); the socket was closed.
    protocol_violation,
    /// A message was not a packet (non-JSON text); ignored.
    raw_message,
    /// No handshake within `limits.handshake_timeout_ms`.
    handshake_timeout,
    /// No message within the endpoint's `ping_timeout_ms`.
    pong_timeout,
    /// The outbound queue overflowed; the socket was closed as a slow consumer.
    slow_consumer,
    /// A write made no progress for `limits.write_stall_timeout_ms` (the client stopped
    /// reading); the socket was closed, then dropped.
    write_stall,
    /// A reserved event carried malformed data (e.g. a subscribe without a channel name).
    invalid_request,
    /// The handshake stage refused a handshake; the socket was closed.
    handshake_rejected,
    /// A call named a route that does not exist.
    not_found,
    /// A handler returned an error.
    handler_error,
    /// A handler panicked.
    handler_panic,
    /// An upgrade was refused (bad request, limit reached).
    upgrade_rejected,
    /// Reading from or writing to a socket failed.
    io,
}

impl ErrorKind {
    const ALL: [Self; 15] = [
        Self::bad_frame,
        Self::message_too_large,
        Self::protocol_violation,
        Self::raw_message,
        Self::handshake_timeout,
        Self::pong_timeout,
        Self::slow_consumer,
        Self::write_stall,
        Self::invalid_request,
        Self::handshake_rejected,
        Self::not_found,
        Self::handler_error,
        Self::handler_panic,
        Self::upgrade_rejected,
        Self::io,
    ];
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ErrorLabels {
    kind: ErrorKind,
}

/// The counters a server keeps.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// WebSocket connections currently open.
    pub(crate) connections_open: Gauge,
    /// WebSocket connections accepted since start.
    pub(crate) connections: Counter,
    /// WebSocket data messages received.
    pub(crate) messages_in: Counter,
    /// WebSocket data messages sent (replies, pushes and pings).
    pub(crate) messages_out: Counter,
    errors: Family<ErrorLabels, Counter>,
    exchange: ExchangeCounters,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric at zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sockyard");
        let connections_open = Gauge::default();
        let connections = Counter::default();
        let messages_in = Counter::default();
        let messages_out = Counter::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "connections_open",
            "WebSocket connections currently open",
            connections_open.clone(),
        );
        registry.register(
            "connections",
            "WebSocket connections accepted",
            connections.clone(),
        );
        registry.register(
            "messages_in",
            "WebSocket data messages received",
            messages_in.clone(),
        );
        registry.register(
            "messages_out",
            "WebSocket data messages sent",
            messages_out.clone(),
        );
        registry.register("errors", "Errors by kind", errors.clone());
        let exchange = ExchangeCounters::default();
        registry.register(
            "publications",
            "Publications made (by clients and by the server)",
            exchange.publications.clone(),
        );
        registry.register(
            "deliveries",
            "Publications queued for local subscribers",
            exchange.deliveries.clone(),
        );
        registry.register(
            "subscribes",
            "Successful channel subscriptions",
            exchange.subscribes.clone(),
        );
        registry.register(
            "unsubscribes",
            "Channel unsubscriptions (requested, kicked out or disconnected)",
            exchange.unsubscribes.clone(),
        );
        registry.register(
            "subscriptions",
            "Channel subscriptions held now",
            exchange.subscriptions.clone(),
        );
        for kind in ErrorKind::ALL {
            let _ = errors.get_or_create(&ErrorLabels { kind });
        }
        Self {
            registry,
            connections_open,
            connections,
            messages_in,
            messages_out,
            errors,
            exchange,
        }
    }

    /// Handles to the exchange's counters.
    pub(crate) fn exchange_counters(&self) -> ExchangeCounters {
        self.exchange.clone()
    }

    /// Counts one error of `kind`.
    pub fn error(&self, kind: ErrorKind) {
        self.errors.get_or_create(&ErrorLabels { kind }).inc();
    }

    /// The current count of errors of `kind`.
    pub fn error_count(&self, kind: ErrorKind) -> u64 {
        self.errors.get_or_create(&ErrorLabels { kind }).get()
    }

    /// Renders every metric in the OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_metric() {
        let metrics = Metrics::new();
        metrics.connections.inc();
        metrics.messages_in.inc_by(3);
        metrics.error(ErrorKind::not_found);
        let text = metrics.render();
        for needle in [
            "sockyard_connections_open 0",
            "sockyard_connections_total 1",
            "sockyard_messages_in_total 3",
            "sockyard_messages_out_total 0",
            "sockyard_errors_total{kind=\"not_found\"} 1",
            "sockyard_errors_total{kind=\"slow_consumer\"} 0",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
        assert_eq!(metrics.error_count(ErrorKind::not_found), 1);
    }
}
