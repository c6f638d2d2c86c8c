//! The TCP ports handed to programs that talk over TCP (`--tcp`): each running room holds one,
//! and a room that finds none free is refused on its own, never the whole server.

use std::collections::BTreeSet;

/// Ports `start..end` (end exclusive), each free or held by one room.
#[derive(Debug, Clone)]
pub(super) struct PortPool {
    start: u16,
    end: u16,
    held: BTreeSet<u16>,
}

impl PortPool {
    /// The ports from `start` up to, not including, `end`.
    pub(super) fn new(start: u16, end: u16) -> Self {
        Self {
            start,
            end,
            held: BTreeSet::new(),
        }
    }

    /// The lowest free port, now held; `None` when every port is held.
    pub(super) fn take(&mut self) -> Option<u16> {
        let port = (self.start..self.end).find(|p| !self.held.contains(p))?;
        self.held.insert(port);
        Some(port)
    }

    /// Frees a port.
    pub(super) fn give_back(&mut self, port: u16) {
        self.held.remove(&port);
    }

    /// How many ports are held.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.held.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_lent_lowest_first_until_none_are_left() {
        let mut pool = PortPool::new(19520, 19522);
        assert_eq!(pool.take(), Some(19520));
        assert_eq!(pool.take(), Some(19521));
        assert_eq!(pool.take(), None, "the end is exclusive");
        pool.give_back(19520);
        assert_eq!(pool.held(), 1);
        assert_eq!(pool.take(), Some(19520));
        assert_eq!(PortPool::new(5, 5).take(), None);
    }
}
