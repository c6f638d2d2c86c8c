//! Rooms: a program wrapped as a WebSocket server. A room is named by a path segment; its first
//! client starts the program, later clients share it, and the last one leaving stops it
//! gracefully. The program's output reaches the room's clients without loss.
//!
//! [`Rooms`] is the registry a server consults to admit clients; [`server::RoomServer`] serves
//! rooms on their own (what `sockyard wrap` runs), and a `serve` configuration can mount them
//! beside RPC endpoints. Both answer HTTP through the server's shared front (`http/`).
//!
//! Room clients keep their own relay (`client.rs`) instead of the RPC connection's: a room
//! client's reading waits on its program's input queue and its writes carry the program's
//! frames as they are, with no dialect, handler or outbox in between.

pub mod cache;
mod client;
pub mod framing;
pub(crate) mod http;
mod live;
mod metrics;
mod options;
mod ports;
mod program;
mod runner;
mod server;
pub mod template;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use live::{CLOSE_GOING_AWAY, CLOSE_TOO_SLOW};
pub use metrics::RoomMetrics;
pub use options::{Frame, OptionsError, Restart, RoomOptions};
pub use server::{RoomServer, RoomServerSettings};

use cache::SharedHistory;
use live::{JoinError, Room, Seat};
use ports::PortPool;
use program::{Creator, Program};

use crate::auth::Authenticator;

/// Longest room name, in bytes after percent-decoding.
pub const MAX_ROOM_NAME: usize = 128;

/// Names that are never rooms: the HTTP surface's own paths.
pub const RESERVED_NAMES: [&str; 5] = ["api", "metrics", "health", "favicon.ico", "robots.txt"];

/// Why a client cannot join: answered with an HTTP status before the upgrade.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {message}")]
pub struct Refusal {
    /// The HTTP status.
    pub status: u16,
    /// The body.
    pub message: String,
}

fn refuse(status: u16, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        message: message.into(),
    }
}

/// The rooms of one server; cheap to clone.
///
/// ```
/// use sockyard::room::{RoomOptions, Rooms};
///
/// let rooms = Rooms::new(RoomOptions::new("cat", Vec::new()).json(), None).unwrap();
/// assert!(rooms.check_name("lobby").is_ok());
/// assert!(rooms.check_name("api").is_err(), "the room API's own path");
/// assert!(rooms.check_name("..").is_err(), "a name a program could take for a path");
/// assert!(rooms.list().is_empty());
/// ```
#[derive(Debug, Clone)]
pub struct Rooms {
    service: Arc<Service>,
}

/// What every room shares.
#[derive(Debug)]
pub(crate) struct Service {
    pub(crate) options: RoomOptions,
    pub(crate) metrics: RoomMetrics,
    registry: Mutex<Registry>,
    pub(crate) auth: Option<Authenticator>,
    /// Clients and room runners, awaited at shutdown.
    pub(crate) tracker: TaskTracker,
    /// Cancelled when the server shuts down.
    pub(crate) stopping: CancellationToken,
    /// Cancelled when a `oneshot` server has served its client.
    finished: CancellationToken,
}

#[derive(Debug)]
pub(crate) struct Registry {
    rooms: HashMap<String, Arc<Room>>,
    ports: PortPool,
    /// Histories handed on by rooms that stopped accepting clients (`cache_persist`), for
    /// the next room of their name.
    kept: HashMap<String, SharedHistory>,
    /// Clients admitted so far (for `oneshot`).
    admitted: u64,
    /// Programs started and not yet ended (rooms still stopping included): what
    /// `max_rooms` limits.
    running: usize,
}

impl Registry {
    /// Removes `room` from the registry if it is the one registered under `name`.
    pub(crate) fn forget(&mut self, name: &str, room: &Room) {
        if self
            .rooms
            .get(name)
            .is_some_and(|r| std::ptr::eq(Arc::as_ptr(r), room))
        {
            self.rooms.remove(name);
        }
    }
}

impl Service {
    pub(crate) fn registry(&self) -> MutexGuard<'_, Registry> {
        // Each critical section is a few map operations: a poisoned lock is still consistent.
        self.registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Called once a room's program is gone (its history, with `cache_persist`, was handed on
    /// when the room stopped accepting clients).
    pub(crate) fn room_ended(&self, name: &str, port: Option<u16>) {
        let mut registry = self.registry();
        registry.running = registry.running.saturating_sub(1);
        if let Some(port) = port {
            registry.ports.give_back(port);
        }
        drop(registry);
        self.metrics.room_closed(name);
        if self.options.oneshot {
            self.finished.cancel();
        }
    }
}

/// A client admitted to a room, before its WebSocket is running.
#[derive(Debug)]
pub struct Ticket {
    room: Arc<Room>,
    seat: Option<Seat>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        // A ticket never used (the upgrade failed) gives its seat back; the program, told of
        // the join already, is told of the leave.
        if let Some(seat) = &self.seat {
            if let Some(template) = &self.room.service.options.leave_message {
                if let Some(line) = self.room.announcement(template, seat.id) {
                    let _ = self.room.input().try_send(line);
                }
            }
            self.room.remove(seat.id);
        }
    }
}

/// The summary `/api/rooms` lists.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RoomSummary {
    /// Clients in the room.
    pub connections: usize,
    /// The metadata its program set, if any.
    pub metadata: Option<serde_json::Value>,
    /// The room's name.
    pub name: String,
}

impl Rooms {
    /// Rooms that run programs as `options` says; `auth`, when given, makes every client
    /// present a token it verifies. Fails if the options cannot work together ([`RoomOptions::check`]).
    pub fn new(options: RoomOptions, auth: Option<Authenticator>) -> Result<Self, OptionsError> {
        Self::with_metrics(options, auth, RoomMetrics::default())
    }

    /// Like [`Rooms::new`], counting into `metrics` (shared with other mounts).
    pub fn with_metrics(
        options: RoomOptions,
        auth: Option<Authenticator>,
        metrics: RoomMetrics,
    ) -> Result<Self, OptionsError> {
        options.check()?;
        let ports = PortPool::new(options.tcp_ports.0, options.tcp_ports.1);
        Ok(Self {
            service: Arc::new(Service {
                options,
                metrics,
                registry: Mutex::new(Registry {
                    rooms: HashMap::new(),
                    ports,
                    kept: HashMap::new(),
                    admitted: 0,
                    running: 0,
                }),
                auth,
                tracker: TaskTracker::new(),
                stopping: CancellationToken::new(),
                finished: CancellationToken::new(),
            }),
        })
    }

    /// The options rooms run with.
    pub fn options(&self) -> &RoomOptions {
        &self.service.options
    }

    /// The room metrics.
    pub fn metrics(&self) -> &RoomMetrics {
        &self.service.metrics
    }

    /// Checks a room name (already percent-decoded) against the length limit, the reserved
    /// names and the allow-list. `.` and `..` are never rooms: a program given `ROOM=..`
    /// might take it for a path.
    pub fn check_name(&self, name: &str) -> Result<(), Refusal> {
        if name.is_empty()
            || name.len() > MAX_ROOM_NAME
            || name.contains('/')
            || name == "."
            || name == ".."
            || name.chars().any(char::is_control)
            || RESERVED_NAMES.contains(&name)
        {
            return Err(refuse(400, "Invalid room"));
        }
        let allowed = &self.service.options.rooms;
        if !allowed.is_empty() && !allowed.iter().any(|r| r == name) {
            return Err(refuse(400, "Invalid room"));
        }
        Ok(())
    }

    /// Admits a client to room `name`, starting the room's program if it is the first.
    pub fn admit(&self, name: &str, creator: &Creator) -> Result<Ticket, Refusal> {
        self.check_name(name)?;
        let service = &self.service;
        let options = &service.options;
        let mut registry = service.registry();
        if service.stopping.is_cancelled() {
            return Err(refuse(503, "Server is shutting down"));
        }
        if options.oneshot && registry.admitted > 0 {
            return Err(refuse(503, "This server serves a single client"));
        }
        let room = match registry.rooms.get(name) {
            Some(room) => room.clone(),
            None => self.open_room(&mut registry, name, creator)?,
        };
        let (room, seat) = match room.join(creator) {
            Ok(seat) => (room, seat),
            Err(JoinError::Full) => return Err(refuse(429, "Room is full")),
            Err(JoinError::Ending) => {
                // The room is stopping: the client gets a new one.
                registry.forget(name, &room);
                let room = self.open_room(&mut registry, name, creator)?;
                let seat = room
                    .join(creator)
                    .map_err(|_| refuse(503, "Room is not available"))?;
                (room, seat)
            }
        };
        // The join message is queued here, under the registry lock, so the program hears of
        // clients in the order of their ids, and before anything they send.
        if let Some(template) = &options.join_message {
            if let Some(line) = room.announcement(template, seat.id) {
                if room.input().try_send(line).is_err() {
                    room.remove(seat.id);
                    return Err(refuse(503, "Room is busy: its program is not reading"));
                }
            }
        }
        registry.admitted += 1;
        Ok(Ticket {
            room,
            seat: Some(seat),
        })
    }

    fn open_room(
        &self,
        registry: &mut Registry,
        name: &str,
        creator: &Creator,
    ) -> Result<Arc<Room>, Refusal> {
        let service = &self.service;
        let options = &service.options;
        if options.max_rooms.is_some_and(|max| registry.running >= max) {
            return Err(refuse(429, "Too many rooms"));
        }
        let port = if options.tcp {
            Some(
                registry
                    .ports
                    .take()
                    .ok_or_else(|| refuse(503, "No free port for a new room"))?,
            )
        } else {
            None
        };
        let program = match Program::start(options, name, creator, port) {
            Ok(program) => program,
            Err(err) => {
                if let Some(port) = port {
                    registry.ports.give_back(port);
                }
                tracing::error!(room = name, error = %err, "cannot start the program");
                return Err(refuse(502, "Cannot start the program"));
            }
        };
        let cache = registry
            .kept
            .remove(name)
            .or_else(|| options.cache.map(SharedHistory::new));
        let (room, input) = Room::new(name, service.clone(), cache);
        registry.rooms.insert(name.to_owned(), room.clone());
        registry.running += 1;
        service
            .tracker
            .spawn(runner::run(room.clone(), program, creator.clone(), input));
        Ok(room)
    }

    /// Every room with clients, by name.
    pub fn list(&self) -> Vec<RoomSummary> {
        let rooms: Vec<Arc<Room>> = self.service.registry().rooms.values().cloned().collect();
        let mut list: Vec<RoomSummary> = rooms
            .iter()
            .map(|room| RoomSummary {
                connections: room.client_count(),
                metadata: room.metadata(),
                name: room.name.clone(),
            })
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }

    /// One room's summary; a room that is not running has no connections and no metadata.
    pub fn summary(&self, name: &str) -> RoomSummary {
        let room = self.service.registry().rooms.get(name).cloned();
        RoomSummary {
            connections: room.as_ref().map_or(0, |r| r.client_count()),
            metadata: room.as_ref().and_then(|r| r.metadata()),
            name: name.to_owned(),
        }
    }

    /// Clients in all rooms.
    pub fn connections(&self) -> usize {
        let rooms: Vec<Arc<Room>> = self.service.registry().rooms.values().cloned().collect();
        rooms.iter().map(|r| r.client_count()).sum()
    }

    /// Completes when a `oneshot` server has served its client (never otherwise).
    pub async fn finished(&self) {
        self.service.finished.cancelled().await;
    }

    /// Closes every client (1001), stops every program gracefully and waits for all of it, at
    /// most `timeout`.
    pub async fn shutdown(&self, timeout: std::time::Duration) {
        self.service.stopping.cancel();
        self.service.tracker.close();
        if tokio::time::timeout(timeout, self.service.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("rooms did not stop within the shutdown timeout");
        }
    }
}
