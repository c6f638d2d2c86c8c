//! The open WebSocket connections of a server: counted in total and per IP for admission, and
//! kept as handles for shutdown and for code that pushes to many connections.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::connection::Limits;
use crate::peer::ConnectionHandle;

/// The open connections and the admission limits; shared as `Arc<Registry>`.
#[derive(Debug)]
pub(crate) struct Registry {
    max_connections: usize,
    max_connections_per_ip: usize,
    // Held only for map updates, never across an `.await`.
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    admitted: usize,
    per_ip: HashMap<IpAddr, usize>,
    live: HashMap<u64, ConnectionHandle>,
    next_key: u64,
    closing: Option<(u16, String)>,
}

/// A reserved connection slot, released when dropped.
#[derive(Debug)]
pub(crate) struct Admission {
    registry: Arc<Registry>,
    ip: IpAddr,
}

/// A registered live connection, removed from the registry when dropped.
#[derive(Debug)]
pub(crate) struct Registration {
    admission: Admission,
    key: u64,
}

impl Registry {
    /// An empty registry admitting connections within `limits`.
    pub(crate) fn new(limits: &Limits) -> Self {
        Self {
            max_connections: limits.max_connections,
            max_connections_per_ip: limits.max_connections_per_ip,
            state: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update is a single insert/remove/count, so a poisoned lock is still consistent.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Reserves a slot for a connection from `ip`, unless a limit is reached or the server is
    /// shutting down.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Admission> {
        let mut state = self.lock();
        if state.closing.is_some() || state.admitted >= self.max_connections {
            return None;
        }
        let from_ip = state.per_ip.entry(ip).or_insert(0);
        if *from_ip >= self.max_connections_per_ip {
            return None;
        }
        *from_ip += 1;
        state.admitted += 1;
        Some(Admission {
            registry: self.clone(),
            ip,
        })
    }

    /// Records a live connection; if the server is already shutting down it is told to close.
    pub(crate) fn register(&self, handle: ConnectionHandle, admission: Admission) -> Registration {
        let mut state = self.lock();
        let key = state.next_key;
        state.next_key += 1;
        if let Some((code, reason)) = &state.closing {
            handle.close(*code, reason);
        }
        state.live.insert(key, handle);
        Registration { admission, key }
    }

    /// Connections open now.
    pub(crate) fn open(&self) -> usize {
        self.lock().live.len()
    }

    /// Handles to every open connection.
    pub(crate) fn handles(&self) -> Vec<ConnectionHandle> {
        self.lock().live.values().cloned().collect()
    }

    /// Refuses new connections and asks every open one to close.
    pub(crate) fn close_all(&self, code: u16, reason: &str) {
        let handles = {
            let mut state = self.lock();
            state.closing = Some((code, reason.to_owned()));
            state.live.values().cloned().collect::<Vec<_>>()
        };
        for handle in handles {
            handle.close(code, reason);
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut state = self.registry.lock();
        state.admitted -= 1;
        if let Some(count) = state.per_ip.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                state.per_ip.remove(&self.ip);
            }
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.admission.registry.lock().live.remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: usize, per_ip: usize) -> Limits {
        Limits {
            max_connections: total,
            max_connections_per_ip: per_ip,
            ..Limits::default()
        }
    }

    #[test]
    fn admission_counts_in_total_and_per_ip_and_releases_on_drop() {
        let registry = Arc::new(Registry::new(&limits(3, 2)));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = registry.admit(a).unwrap();
        let _second = registry.admit(a).unwrap();
        assert!(registry.admit(a).is_none(), "per-IP limit");
        let _third = registry.admit(b).unwrap();
        assert!(registry.admit(b).is_none(), "total limit");
        drop(first);
        assert!(registry.admit(a).is_some());
    }

    #[test]
    fn closing_refuses_new_connections_and_closes_late_registrations() {
        let registry = Arc::new(Registry::new(&Limits::default()));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let admission = registry.admit(ip).unwrap();
        registry.close_all(1001, "bye");
        assert!(registry.admit(ip).is_none());
        let handle = ConnectionHandle::for_tests(4);
        let registration = registry.register(handle.clone(), admission);
        assert_eq!(registry.open(), 1);
        assert_eq!(
            handle.take_close_request(),
            Some(crate::peer::CloseRequest {
                code: 1001,
                reason: "bye".to_owned()
            })
        );
        drop(registration);
        assert_eq!(registry.open(), 0);
    }
}
