//! The write locks that put change events in commit order: a write to any record of a tree (a
//! top-level record and its descendants) holds the lock of the tree's root from its
//! transaction through its announcement, so a parent's cascading `destroy` never overtakes a
//! child's `patch` or `create`, nor the other way round.

use serde_json::Value;
use tokio::sync::{Mutex, MutexGuard};

use super::operations::{id_of, Operation, Resources};
use super::schema::ResourceDef;
use super::store::Scope;

/// How many locks order the writes to records (trees share them by hash).
const WRITE_LOCKS: usize = 256;

/// The locks, shared by the trees whose roots hash to the same one.
pub(super) struct WriteLocks(Vec<Mutex<()>>);

impl WriteLocks {
    /// [`WRITE_LOCKS`] free locks.
    pub(super) fn new() -> Self {
        Self((0..WRITE_LOCKS).map(|_| Mutex::new(())).collect())
    }

    /// The lock of the tree whose root is record `id` of `resource`.
    fn of(&self, resource: &str, id: i64) -> &Mutex<()> {
        use std::hash::{Hash as _, Hasher as _};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (resource, id).hash(&mut hasher);
        let index = usize::try_from(hasher.finish() % WRITE_LOCKS as u64).unwrap_or(0);
        &self.0[index]
    }
}

impl Resources {
    /// Waits for the lock that orders `operation` on `def` with `data` among the writes to
    /// its tree; `None` for reads, and for a top-level create (its record has no id before it
    /// commits, so nothing can race with it). One lock per write, so writes never deadlock.
    pub(super) async fn order_write(
        &self,
        def: &ResourceDef,
        operation: Operation,
        data: &Value,
    ) -> Option<MutexGuard<'_, ()>> {
        let (resource, id) = match operation {
            Operation::Get | Operation::List => return None,
            Operation::Create => {
                // A child's creation races with its parent's destroy.
                let parent = self.def(def.parent.as_deref()?).ok()?;
                let parent_id = id_of(data, &def.parent_column()?).ok()?;
                self.root_of(parent, parent_id).await
            }
            Operation::Update | Operation::Patch | Operation::Destroy => {
                self.root_of(def, id_of(data, "id").unwrap_or_default())
                    .await
            }
        };
        Some(self.inner.write_locks.of(&resource, id).lock().await)
    }

    /// The root of the tree record `id` of `def` belongs to, found by following parent
    /// columns up. Children never move, so the answer holds for the record's life; a record
    /// that cannot be read is taken as its own root (the write then fails on it).
    async fn root_of(&self, def: &ResourceDef, id: i64) -> (String, i64) {
        let (mut def, mut id) = (def, id);
        while let (Some(parent), Some(column)) = (def.parent.as_deref(), def.parent_column()) {
            let record = self.inner.store.get(def, id, &Scope::default()).await;
            let parent_id = record
                .ok()
                .flatten()
                .and_then(|record| record.get(&column).and_then(Value::as_i64));
            match (self.def(parent), parent_id) {
                (Ok(parent), Some(parent_id)) => (def, id) = (parent, parent_id),
                _ => break,
            }
        }
        (def.name.clone(), id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_always_gets_the_same_lock() {
        let locks = WriteLocks::new();
        assert!(std::ptr::eq(locks.of("album", 7), locks.of("album", 7)));
        let spread: std::collections::HashSet<*const Mutex<()>> = (1..1000)
            .map(|id| locks.of("album", id) as *const _)
            .collect();
        assert!(spread.len() > WRITE_LOCKS / 2, "{}", spread.len());
    }
}
