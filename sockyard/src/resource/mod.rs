//! Declared resources: a complete realtime CRUD API from declarations, with no handler code.
//!
//! Each resource gets the same operations through three addresses: route names
//! (`creature/create|get|list|update|patch|destroy|<remote>`), REST paths (`POST /creature`,
//! `GET /creature/:id`, `GET /creature`, `PUT|PATCH|DELETE /creature/:id`, and for children
//! `GET|POST /album/:id/song`), and sockful's shape (event `creature` with `{action,
//! payload}`). Writes are validated, stored in a transaction, then announced on channels
//! `creature` and `creature/<id>` as `{event: created|updated|patched|destroyed, data}`.
//!
//! The parts: [`schema`] (declarations and validation), [`query`] (the list query language),
//! [`store`] (where records live), [`ResourcesBuilder`] (declarations, hooks and remote methods
//! assembled and opened), [`Resources`] (the operations, their routes and their change
//! events) and [`StorageConfig`] (the `[storage]` settings).

mod builder;
mod events;
mod exec;
mod operations;
mod ordering;
pub mod query;
mod routes;
pub mod schema;
mod settings;
pub mod store;

pub use builder::{Before, HookContext, HookFuture, ResourceError, ResourcesBuilder};
pub use operations::{Operation, Resources};
pub use schema::{Access, FieldDef, FieldType, ResourceDef};
pub use settings::StorageConfig;
pub use store::{Change, Record, Scope, SqlStore, Store, StoreError, Updated};
