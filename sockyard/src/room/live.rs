//! A running room: its clients, its program's input queue, and the fan-out of the program's
//! messages to the clients (the task that runs the program is in `runner`).
//!
//! Output flows program → decoder → [`Room::deliver`], which hands one encoded frame to each
//! recipient's bounded queue. A full queue makes the room wait (and so the program, whose
//! output is no longer read) for up to `slow_client_timeout_ms`, after which that client alone
//! is disconnected; nothing is dropped unless `drop_when_full` asks for it. Input flows
//! clients → one bounded queue → the program's stdin; a full queue stops reading from the
//! clients, so a slow program slows its clients instead of growing memory.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};

use super::cache::SharedHistory;
use super::framing::ChildMessage;
use super::metrics::RoomCounters;
use super::program::Creator;
use super::template::{render, JoinInfo};
use super::{Registry, Service};
use crate::ws::frame::{write_frame, OpCode};

/// Close code for a client that did not read its messages in time.
pub const CLOSE_TOO_SLOW: u16 = 4400;
/// Close code when the server shuts down.
pub const CLOSE_GOING_AWAY: u16 = 1001;

/// What a client's connection is told to send.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// An encoded WebSocket frame.
    Frame(Bytes),
    /// Close the connection after the frames before this one.
    Close(u16, String),
}

/// A client in a room, as the room sees it.
#[derive(Debug)]
struct Slot {
    outbound: mpsc::Sender<Outbound>,
    /// Closes the connection at once (ahead of its queue).
    kick: Option<oneshot::Sender<(u16, String)>>,
    remote_addr: String,
    query_string: String,
}

#[derive(Debug)]
struct RoomState {
    clients: BTreeMap<u32, Slot>,
    next_id: u32,
    metadata: Option<Value>,
    cache: Option<SharedHistory>,
    /// False once the room is ending: joins go to a new room of the same name.
    accepting: bool,
}

/// A running room.
#[derive(Debug)]
pub(crate) struct Room {
    pub(crate) name: String,
    pub(crate) service: Arc<Service>,
    state: Mutex<RoomState>,
    input: mpsc::Sender<Bytes>,
    /// How many clients the room has; the runner watches it.
    population: watch::Sender<usize>,
    /// The room's busiest counters, looked up once.
    pub(crate) counters: RoomCounters,
}

/// What a joining client needs: its id, its queue, and the way it is closed early.
#[derive(Debug)]
pub(crate) struct Seat {
    pub(crate) id: u32,
    pub(crate) outbound: mpsc::Receiver<Outbound>,
    pub(crate) kicked: oneshot::Receiver<(u16, String)>,
}

/// Why a join was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum JoinError {
    /// The room is ending; try a new one.
    Ending,
    /// `max_clients` reached.
    Full,
}

fn encode(message: &ChildMessage) -> Bytes {
    let mut frame = Vec::with_capacity(message.payload.len() + 10);
    let opcode = if message.binary {
        OpCode::Binary
    } else {
        OpCode::Text
    };
    write_frame(&mut frame, opcode, &message.payload);
    Bytes::from(frame)
}

impl Room {
    /// A room with no clients yet; `cache` is its history (kept from an earlier run or new).
    pub(crate) fn new(
        name: &str,
        service: Arc<Service>,
        cache: Option<SharedHistory>,
    ) -> (Arc<Self>, mpsc::Receiver<Bytes>) {
        let (input, input_rx) = mpsc::channel(service.options.input_queue);
        let counters = service.metrics.counters(name);
        let room = Arc::new(Self {
            name: name.to_owned(),
            service,
            state: Mutex::new(RoomState {
                clients: BTreeMap::new(),
                next_id: 1,
                metadata: None,
                cache,
                accepting: true,
            }),
            input,
            population: watch::Sender::new(0),
            counters,
        });
        (room, input_rx)
    }

    fn lock(&self) -> MutexGuard<'_, RoomState> {
        // Each critical section is a few map operations: a poisoned lock is still consistent.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds a client; its queue starts with the room's history.
    pub(crate) fn join(&self, creator: &Creator) -> Result<Seat, JoinError> {
        let options = &self.service.options;
        let mut state = self.lock();
        if !state.accepting {
            return Err(JoinError::Ending);
        }
        if options
            .max_clients
            .is_some_and(|max| state.clients.len() >= max)
        {
            return Err(JoinError::Full);
        }
        let id = state.next_id;
        state.next_id = state.next_id.wrapping_add(1).max(1);
        let history = state.cache.as_ref().map(SharedHistory::lock);
        let kept = history.as_ref().map_or(0, |history| history.len());
        let (outbound, receiver) = mpsc::channel(options.client_queue + kept);
        for message in history.iter().flat_map(|history| history.replay()) {
            // The queue was made large enough for the whole history.
            let _ = outbound.try_send(Outbound::Frame(encode(message)));
        }
        drop(history);
        let (kick, kicked) = oneshot::channel();
        state.clients.insert(
            id,
            Slot {
                outbound,
                kick: Some(kick),
                remote_addr: creator.remote_addr.clone(),
                query_string: creator.query_string.clone(),
            },
        );
        self.population.send_replace(state.clients.len());
        drop(state);
        self.service.metrics.joined(&self.name);
        Ok(Seat {
            id,
            outbound: receiver,
            kicked,
        })
    }

    /// Removes a client (after its leave message, if any, was queued).
    pub(crate) fn remove(&self, id: u32) {
        let mut state = self.lock();
        if state.clients.remove(&id).is_some() {
            self.population.send_replace(state.clients.len());
            drop(state);
            self.service.metrics.left(&self.name);
        }
    }

    /// The join or leave line for client `id`, from `template`.
    pub(crate) fn announcement(&self, template: &str, id: u32) -> Option<Bytes> {
        let state = self.lock();
        let slot = state.clients.get(&id)?;
        let info = JoinInfo {
            id,
            room: &self.name,
            remote_addr: &slot.remote_addr,
            query_string: &slot.query_string,
        };
        let mut line = render(template, &info).into_bytes();
        line.push(b'\n');
        Some(Bytes::from(line))
    }

    /// Queues bytes for the program, waiting while its queue is full.
    pub(crate) async fn send_input(&self, bytes: Bytes) -> bool {
        self.input.send(bytes).await.is_ok()
    }

    /// The program's input queue, for clients that wait for room in it.
    pub(crate) fn input(&self) -> &mpsc::Sender<Bytes> {
        &self.input
    }

    /// Clients now in the room.
    pub(crate) fn client_count(&self) -> usize {
        self.lock().clients.len()
    }

    /// The metadata the program last set (`_meta`).
    pub(crate) fn metadata(&self) -> Option<Value> {
        self.lock().metadata.clone()
    }

    /// Closes client `id` at once.
    pub(crate) fn kick(&self, id: u32, code: u16, reason: &str) {
        let kick = self
            .lock()
            .clients
            .get_mut(&id)
            .and_then(|slot| slot.kick.take());
        if let Some(kick) = kick {
            let _ = kick.send((code, reason.to_owned()));
        }
    }

    /// Delivers one program message to its recipients, waiting for slow ones.
    pub(crate) async fn deliver(&self, message: ChildMessage) {
        let options = &self.service.options;
        let metrics = &self.service.metrics;
        if message.meta {
            let metadata = serde_json::from_slice::<Value>(&message.payload).ok();
            self.lock().metadata = metadata;
            return;
        }
        let frame = encode(&message);
        let mut delivered = 0;
        let mut waiting: Vec<(u32, mpsc::Sender<Outbound>)> = Vec::new();
        let mut addressee_known = message.to.is_none();
        {
            // Offering a frame never blocks, so it happens under the lock; only clients whose
            // queue is full are waited for, outside it.
            let state = self.lock();
            if message.to.is_none() {
                if let Some(cache) = &state.cache {
                    cache.lock().push(&message);
                }
            }
            let mut offer = |id: u32, slot: &Slot| {
                // A client already told to close (its kick taken) is not waited for again:
                // it would stall the room for another timeout on every message.
                if slot.kick.is_none() {
                    return;
                }
                match slot.outbound.try_send(Outbound::Frame(frame.clone())) {
                    Ok(()) => delivered += 1,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        waiting.push((id, slot.outbound.clone()));
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => {}
                }
            };
            match message.to {
                None => {
                    for (id, slot) in &state.clients {
                        offer(*id, slot);
                    }
                }
                Some(id) => {
                    if let Some(slot) = state.clients.get(&id) {
                        addressee_known = true;
                        offer(id, slot);
                    }
                }
            }
        }
        if !addressee_known {
            metrics.dropped(&self.name, "unknown_client", 1);
            return;
        }
        if options.drop_when_full {
            metrics.dropped(&self.name, "client_full", waiting.len() as u64);
        } else if !waiting.is_empty() {
            let patience = Duration::from_millis(options.slow_client_timeout_ms);
            let sends = waiting.iter().map(|(id, sender)| {
                let frame = frame.clone();
                async move {
                    let sent =
                        tokio::time::timeout(patience, sender.send(Outbound::Frame(frame))).await;
                    (*id, sent)
                }
            });
            for (id, sent) in futures_util::future::join_all(sends).await {
                match sent {
                    Ok(Ok(())) => delivered += 1,
                    Ok(Err(_)) => {}
                    Err(_) => {
                        tracing::info!(room = %self.name, client = id, "client too slow: disconnecting");
                        metrics.slow_client(&self.name);
                        self.kick(id, CLOSE_TOO_SLOW, "Too slow: messages waited too long");
                    }
                }
            }
        }
        self.counters.messages_out.inc_by(delivered);
    }

    /// Stops accepting clients (a client that comes now gets a new room) and, with
    /// `cache_persist`, hands the history on at once: the program may take a while to stop,
    /// and a client that comes straight back must find the history in the new room. The room
    /// keeps adding to it what its program prints until it has stopped.
    fn retire(&self, registry: &mut Registry, state: &mut RoomState) {
        state.accepting = false;
        registry.forget(&self.name, self);
        if self.service.options.cache_persist {
            if let Some(cache) = &state.cache {
                registry.kept.insert(self.name.clone(), cache.clone());
            }
        }
    }

    /// Stops accepting clients if there are none; says whether it did.
    pub(super) fn close_if_empty(&self) -> bool {
        let mut registry = self.service.registry();
        let mut state = self.lock();
        if !state.clients.is_empty() {
            return false;
        }
        self.retire(&mut registry, &mut state);
        true
    }

    /// Ends the room: no more joins; every client is closed with `code` after what is queued
    /// for it (or at once, if it does not take the close in time).
    pub(super) async fn close_all(&self, code: u16, reason: &str) {
        {
            let mut registry = self.service.registry();
            self.retire(&mut registry, &mut self.lock());
        }
        let slots: Vec<(u32, mpsc::Sender<Outbound>)> = self
            .lock()
            .clients
            .iter()
            .map(|(id, slot)| (*id, slot.outbound.clone()))
            .collect();
        let patience = Duration::from_millis(self.service.options.slow_client_timeout_ms);
        let closes = slots.iter().map(|(id, sender)| async move {
            let close = Outbound::Close(code, reason.to_owned());
            let sent = tokio::time::timeout(patience, sender.send(close)).await;
            (*id, sent)
        });
        for (id, sent) in futures_util::future::join_all(closes).await {
            if sent.is_err() {
                self.kick(id, code, reason);
            }
        }
    }

    /// Watches how many clients the room has.
    pub(super) fn population(&self) -> watch::Receiver<usize> {
        self.population.subscribe()
    }

    /// Queues the join message of every client now in the room (for a restarted program).
    pub(super) async fn rejoin_all(&self) {
        let Some(template) = self.service.options.join_message.clone() else {
            return;
        };
        let ids: Vec<u32> = self.lock().clients.keys().copied().collect();
        for id in ids {
            if let Some(line) = self.announcement(&template, id) {
                self.send_input(line).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::room::cache::CacheSpec;
    use crate::room::{RoomOptions, Rooms};

    #[tokio::test]
    async fn a_persisted_history_is_handed_on_as_soon_as_the_room_stops_accepting() {
        let spec = CacheSpec {
            tagged: false,
            size: 4,
        };
        let mut options = RoomOptions::new("cat", Vec::new());
        options.cache = Some(spec);
        options.cache_persist = true;
        let rooms = Rooms::new(options, None).unwrap();
        let cache = SharedHistory::new(spec);
        cache.lock().push(&ChildMessage::new(&b"kept"[..], false));
        let (room, _input) = Room::new("r", rooms.service.clone(), Some(cache));
        rooms
            .service
            .registry()
            .rooms
            .insert("r".to_owned(), room.clone());
        assert!(room.close_if_empty());
        // Before the program has stopped, the next room of this name can have it.
        let kept = {
            let registry = rooms.service.registry();
            assert!(!registry.rooms.contains_key("r"));
            registry.kept.get("r").expect("history handed on").clone()
        };
        let payloads = |kept: &SharedHistory| -> Vec<Vec<u8>> {
            kept.lock().replay().map(|m| m.payload.to_vec()).collect()
        };
        assert_eq!(payloads(&kept), [b"kept".to_vec()]);
        // What the program prints while it stops, with no client left, is kept too.
        room.deliver(ChildMessage::new(&b"bye"[..], false)).await;
        assert_eq!(payloads(&kept), [b"kept".to_vec(), b"bye".to_vec()]);
        // The room ending later leaves the history where it was handed on.
        rooms.service.room_ended("r", None);
        let registry = rooms.service.registry();
        assert_eq!(
            payloads(&registry.kept["r"]),
            [b"kept".to_vec(), b"bye".to_vec()]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_kicked_client_is_not_waited_for_again() {
        let mut options = RoomOptions::new("cat", Vec::new());
        options.client_queue = 1;
        options.slow_client_timeout_ms = 50;
        let rooms = Rooms::new(options, None).unwrap();
        let (room, _input) = Room::new("r", rooms.service.clone(), None);
        let mut slow = room.join(&Creator::default()).unwrap();
        let mut fast = room.join(&Creator::default()).unwrap();
        let message = |n: u8| ChildMessage::new(vec![b'0' + n], false);

        room.deliver(message(0)).await;
        assert!(fast.outbound.recv().await.is_some());
        // The slow client's queue is full: the room waits for it once, then closes it.
        let started = tokio::time::Instant::now();
        room.deliver(message(1)).await;
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert_eq!(slow.kicked.try_recv().unwrap().0, CLOSE_TOO_SLOW);
        assert!(fast.outbound.recv().await.is_some());
        // Later messages do not wait for it again.
        let started = tokio::time::Instant::now();
        for n in 2..9 {
            room.deliver(message(n)).await;
            assert!(fast.outbound.recv().await.is_some());
        }
        assert_eq!(started.elapsed(), Duration::ZERO);
        let metrics = rooms.metrics().render();
        assert!(
            metrics.contains("sockyard_room_slow_clients_total{room=\"r\"} 1\n"),
            "{metrics}"
        );
        assert!(slow.outbound.try_recv().is_ok(), "what was queued stays");
    }
}
