//! Storage of resource records: the [`Store`] trait any storage implements, and [`SqlStore`],
//! which keeps records in SQLite (a file, WAL; the embedded default) or PostgreSQL (by URL)
//! through sqlx: tables created and migrated from the declarations, writes in transactions,
//! optimistic concurrency on `version`.
//!
//! Every table has `id` (integer key), `version`, and, as declared, `ctime`/`mtime`, `owner`,
//! `<parent>_id` (a foreign key) and `extra` (JSON text of undeclared fields); then one column
//! per declared field. Column and table names come only from checked declarations and values
//! are always bound, never spliced into SQL.
//!
//! The SQL is written by pure functions (`table` for tables, `crud` for records) in the
//! dialect of the database (`dialect`: every difference between SQLite and PostgreSQL), then
//! run by [`SqlStore`].

mod crud;
mod dialect;
mod sql_store;
mod statement;
mod table;

use futures_util::future::BoxFuture;
use serde_json::{Map, Value};
use thiserror::Error;

use super::query::Query;
use super::schema::ResourceDef;
use crate::error::ApiError;

pub use sql_store::SqlStore;

/// A stored record: a JSON object with `id`, `version` and the fields.
pub type Record = Map<String, Value>;

/// Why a storage operation failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// No record with that id.
    #[error("{resource} {id} does not exist")]
    NotFound {
        /// The resource.
        resource: String,
        /// The id.
        id: i64,
    },
    /// The record changed since the version the caller named.
    #[error("{resource} {id} is at version {actual}, not {expected}")]
    Conflict {
        /// The resource.
        resource: String,
        /// The id.
        id: i64,
        /// The version the caller named.
        expected: i64,
        /// The version stored.
        actual: i64,
    },
    /// The database refused or failed.
    #[error("database error: {0}")]
    Database(String),
    /// The declarations do not fit the existing tables in a way that would lose data.
    #[error("cannot migrate table `{table}`: {message}")]
    Migration {
        /// The table.
        table: String,
        /// What would be lost.
        message: String,
    },
}

/// A change applied inside an update's transaction: the stored record in, the new fields out
/// (or a validation error, which rolls the transaction back).
pub type Change<'a> = Box<dyn FnOnce(&Record) -> Result<Record, ApiError> + Send + 'a>;

/// What an update ends in: the record before and after, or the change's own refusal.
pub type Updated = Result<(Record, Record), ApiError>;

/// Where records live. [`SqlStore`] keeps them in SQLite or PostgreSQL; another implementation
/// may keep them anywhere that offers the same guarantees: each write atomic, `version` raised
/// by one on every change and checked when the caller names one, children removed with their
/// parent.
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Creates or migrates the storage for `defs` (parents first); refuses a change that would
    /// lose data.
    fn prepare<'a>(&'a self, defs: &'a [ResourceDef]) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Inserts a record with `version` 1 (and `ctime`/`mtime`, owner and parent as declared).
    fn create<'a>(
        &'a self,
        def: &'a ResourceDef,
        fields: &'a Record,
        scope: &'a Scope,
    ) -> BoxFuture<'a, Result<Record, StoreError>>;

    /// The record `id`, if it exists within `scope`.
    fn get<'a>(
        &'a self,
        def: &'a ResourceDef,
        id: i64,
        scope: &'a Scope,
    ) -> BoxFuture<'a, Result<Option<Record>, StoreError>>;

    /// One page of the records matching `query` within `scope`, and how many match in all.
    fn list<'a>(
        &'a self,
        def: &'a ResourceDef,
        query: &'a Query,
        scope: &'a Scope,
    ) -> BoxFuture<'a, Result<(Vec<Record>, u64), StoreError>>;

    /// Replaces record `id`'s fields with what `change` makes of it, in one transaction; fails
    /// with [`StoreError::Conflict`] when `expected_version` is given and is not the stored one.
    /// Returns the record before and after.
    fn update<'a>(
        &'a self,
        def: &'a ResourceDef,
        id: i64,
        expected_version: Option<i64>,
        scope: &'a Scope,
        change: Change<'a>,
    ) -> BoxFuture<'a, Result<Updated, StoreError>>;

    /// Deletes record `id` and, first, its descendants (`descendants` lists their resources,
    /// each after its parent). Returns what was removed, the record itself last.
    fn destroy<'a>(
        &'a self,
        def: &'a ResourceDef,
        id: i64,
        scope: &'a Scope,
        descendants: &'a [&'a ResourceDef],
    ) -> BoxFuture<'a, Result<Vec<(String, Record)>, StoreError>>;
}

/// Limits a list or a lookup to some records: an owner's, or one parent's children.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// Only records with this owner.
    pub owner: Option<Value>,
    /// Only children of this parent id.
    pub parent: Option<i64>,
}
