//! Room metrics in the OpenMetrics format: connections, messages each way, drops, slow
//! clients and program starts, by room. A room's series go away when the room ends, and
//! reading the API never creates one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The label of every room series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct RoomLabel {
    /// The room's name.
    pub room: String,
}

/// Why a message did not reach its destination.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct DropLabels {
    /// The room's name.
    pub room: String,
    /// `client_full` (a client's queue was full under `drop_when_full`), `invalid_input`
    /// (a client message the framing refused) or `unknown_client` (`_to` named nobody).
    pub reason: String,
}

/// Handles on one room's per-message counters, so counting costs an atomic add.
#[derive(Debug, Clone)]
pub struct RoomCounters {
    /// Client messages written to the program.
    pub messages_in: Counter,
    /// Program messages delivered (one per recipient).
    pub messages_out: Counter,
}

/// Every room metric, in one registry. Clones share the series; [`RoomMetrics::mounted`]
/// gives rooms mounted under a path their own `room` labels in the same families.
#[derive(Debug, Clone)]
pub struct RoomMetrics {
    registry: Arc<Registry>,
    /// Put before every room name in labels (a mount's path, or nothing).
    label_prefix: String,
    connections: Family<RoomLabel, Counter>,
    connections_open: Family<RoomLabel, Gauge>,
    messages_in: Family<RoomLabel, Counter>,
    messages_out: Family<RoomLabel, Counter>,
    dropped: Family<DropLabels, Counter>,
    slow_clients: Family<RoomLabel, Counter>,
    program_starts: Family<RoomLabel, Counter>,
    rooms_open: Gauge,
    /// Rooms running under each label: a room can still be stopping when the next room of its
    /// name starts, and the name's gauge must stay until the last of them ends.
    running: Arc<Mutex<HashMap<String, usize>>>,
}

impl Default for RoomMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("sockyard_room");
        let connections = Family::<RoomLabel, Counter>::default();
        let connections_open = Family::<RoomLabel, Gauge>::default();
        let messages_in = Family::<RoomLabel, Counter>::default();
        let messages_out = Family::<RoomLabel, Counter>::default();
        let dropped = Family::<DropLabels, Counter>::default();
        let slow_clients = Family::<RoomLabel, Counter>::default();
        let program_starts = Family::<RoomLabel, Counter>::default();
        let rooms_open = Gauge::default();
        registry.register(
            "connections",
            "WebSocket connections accepted into the room",
            connections.clone(),
        );
        registry.register(
            "connections_open",
            "WebSocket connections in the room now",
            connections_open.clone(),
        );
        registry.register(
            "messages_in",
            "Client messages written to the room's program",
            messages_in.clone(),
        );
        registry.register(
            "messages_out",
            "Program messages delivered to clients (one per recipient)",
            messages_out.clone(),
        );
        registry.register(
            "messages_dropped",
            "Messages that were not delivered, by reason",
            dropped.clone(),
        );
        registry.register(
            "slow_clients",
            "Clients disconnected for not reading their messages in time",
            slow_clients.clone(),
        );
        registry.register(
            "program_starts",
            "Times the room's program was started",
            program_starts.clone(),
        );
        registry.register("open", "Rooms running now", rooms_open.clone());
        Self {
            registry: Arc::new(registry),
            label_prefix: String::new(),
            connections,
            connections_open,
            messages_in,
            messages_out,
            dropped,
            slow_clients,
            program_starts,
            rooms_open,
            running: Arc::default(),
        }
    }
}

impl RoomMetrics {
    /// The same metrics, for rooms mounted under `path`: their labels read `<path><room>`.
    pub fn mounted(&self, path: &str) -> Self {
        Self {
            label_prefix: path.to_owned(),
            ..self.clone()
        }
    }

    fn label(&self, room: &str) -> RoomLabel {
        RoomLabel {
            room: format!("{}{room}", self.label_prefix),
        }
    }

    /// The metrics as OpenMetrics text without the closing `# EOF`, to follow other families.
    pub fn render_families(&self) -> String {
        let text = self.render();
        text.strip_suffix("# EOF\n").unwrap_or(&text).to_owned()
    }

    /// The metrics as OpenMetrics text.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    /// The per-message counters of `room`.
    pub fn counters(&self, room: &str) -> RoomCounters {
        let label = self.label(room);
        RoomCounters {
            messages_in: self.messages_in.get_or_create(&label).clone(),
            messages_out: self.messages_out.get_or_create(&label).clone(),
        }
    }

    pub(crate) fn room_opened(&self, room: &str) {
        self.rooms_open.inc();
        *self.running().entry(self.label(room).room).or_default() += 1;
    }

    pub(crate) fn room_closed(&self, room: &str) {
        self.rooms_open.dec();
        let label = self.label(room);
        let mut running = self.running();
        let last = match running.get_mut(&label.room) {
            Some(count) if *count > 1 => {
                *count -= 1;
                false
            }
            _ => {
                running.remove(&label.room);
                true
            }
        };
        drop(running);
        if last {
            self.connections_open.remove(&label);
        }
    }

    fn running(&self) -> MutexGuard<'_, HashMap<String, usize>> {
        // A few map operations per critical section: a poisoned lock is still consistent.
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn joined(&self, room: &str) {
        self.connections.get_or_create(&self.label(room)).inc();
        self.connections_open.get_or_create(&self.label(room)).inc();
    }

    pub(crate) fn left(&self, room: &str) {
        self.connections_open.get_or_create(&self.label(room)).dec();
    }

    pub(crate) fn dropped(&self, room: &str, reason: &str, count: u64) {
        if count > 0 {
            self.dropped
                .get_or_create(&DropLabels {
                    room: self.label(room).room,
                    reason: reason.to_owned(),
                })
                .inc_by(count);
        }
    }

    pub(crate) fn slow_client(&self, room: &str) {
        self.slow_clients.get_or_create(&self.label(room)).inc();
    }

    pub(crate) fn program_started(&self, room: &str) {
        self.program_starts.get_or_create(&self.label(room)).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rooms_gauge_stays_while_another_room_of_its_name_runs() {
        let metrics = RoomMetrics::default();
        let open = "sockyard_room_connections_open{room=\"r\"}";
        metrics.room_opened("r");
        metrics.joined("r");
        metrics.left("r");
        // The next room of the name starts while the first is still stopping.
        metrics.room_opened("r");
        metrics.joined("r");
        metrics.room_closed("r");
        let text = metrics.render();
        assert!(text.contains(&format!("{open} 1\n")), "{text}");
        assert!(text.contains("sockyard_room_open 1\n"), "{text}");
        metrics.left("r");
        metrics.room_closed("r");
        let text = metrics.render();
        assert!(!text.contains(open), "{text}");
        assert!(text.contains("sockyard_room_open 0\n"), "{text}");
    }
}
