//! [`ResourcesBuilder`]: declarations, before/after hooks and remote methods gathered, checked,
//! then opened in a store; and [`ResourceError`], why that fails.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde_json::Value;
use thiserror::Error;

use super::operations::{Operation, Resources};
use super::schema::{self, DefinitionError, ResourceDef};
use super::settings::StorageConfig;
use super::store::{SqlStore, Store, StoreError};
use crate::error::ApiError;
use crate::router::Context;

/// What a before hook sees and may change.
#[derive(Debug, Clone)]
pub struct HookContext {
    /// The caller.
    pub ctx: Context,
    /// The resource.
    pub resource: String,
    /// The operation.
    pub operation: Operation,
    /// The payload (record data, or `{id, …}`, or the list query); a before hook may rewrite
    /// it.
    pub data: Value,
}

/// What a before hook decides.
#[derive(Debug, Clone)]
pub enum Before {
    /// Go on, with this (possibly rewritten) context.
    Continue(HookContext),
    /// Skip the operation and answer with this result.
    Respond(Value),
}

/// A boxed, sendable future.
pub type HookFuture<T> = BoxFuture<'static, T>;

/// A hook run before an operation.
pub(super) type BeforeHook =
    Arc<dyn Fn(HookContext) -> HookFuture<Result<Before, ApiError>> + Send + Sync>;
/// A hook run after an operation, on its result.
pub(super) type AfterHook =
    Arc<dyn Fn(HookContext, Value) -> HookFuture<Result<Value, ApiError>> + Send + Sync>;
/// A remote method written in Rust.
pub(super) type RemoteMethod =
    Arc<dyn Fn(Context, Value) -> HookFuture<Result<Value, ApiError>> + Send + Sync>;

/// The hooks and remote methods of every resource.
#[derive(Default)]
pub(super) struct Hooks {
    /// Before hooks by resource and operation, in the order they run.
    pub(super) before: HashMap<(String, Operation), Vec<BeforeHook>>,
    /// After hooks by resource and operation, in the order they run.
    pub(super) after: HashMap<(String, Operation), Vec<AfterHook>>,
    /// Rust remote methods by resource and name.
    pub(super) remotes: HashMap<(String, String), RemoteMethod>,
}

/// Why resources could not be declared, stored or migrated.
#[derive(Debug, Error)]
pub enum ResourceError {
    /// A declaration cannot work.
    #[error(transparent)]
    Definition(#[from] DefinitionError),
    /// Some resources name a parent that is not declared, or parents form a circle.
    #[error("unknown or circular parents: {}", describe_parents(.0))]
    UnknownParents(Vec<(String, String)>),
    /// Two resources have the same name.
    #[error("resource `{0}` is declared twice")]
    DeclaredTwice(String),
    /// A remote method is on an unknown resource, or its name is not allowed.
    #[error("invalid remote method `{resource}/{name}`")]
    InvalidRemote {
        /// The resource.
        resource: String,
        /// The method name.
        name: String,
    },
    /// The store could not be opened.
    #[error("cannot open storage {url}: {error}")]
    Connect {
        /// The storage URL.
        url: String,
        /// Why.
        error: StoreError,
    },
    /// The store could not create or migrate the tables.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// `a (parent b), c (parent d)`.
fn describe_parents(pairs: &[(String, String)]) -> String {
    let names: Vec<String> = pairs
        .iter()
        .map(|(name, parent)| format!("{name} (parent {parent})"))
        .collect();
    names.join(", ")
}

/// Assembles resources: declarations, hooks and remote methods; then opens the store.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use sockyard::resource::{Before, FieldDef, FieldType, Operation, ResourceDef, SqlStore};
/// use sockyard::{ApiError, ResourcesBuilder};
///
/// let resources = ResourcesBuilder::new()
///     .resource(ResourceDef::new(
///         "note",
///         [("text", FieldDef::new(FieldType::String).required())],
///     ))
///     .before("note", Operation::Create, |hook| async move {
///         if hook.ctx.claims().is_none() {
///             return Err(ApiError::new("Forbidden", "sign in first"));
///         }
///         Ok(Before::Continue(hook))
///     })
///     .open(SqlStore::connect("sqlite://notes.db", 1).await?)
///     .await?;
/// assert!(resources.is_resource_channel("note/1"));
/// # Ok(())
/// # }
/// ```
#[must_use]
#[derive(Default)]
pub struct ResourcesBuilder {
    defs: Vec<ResourceDef>,
    hooks: Hooks,
    default_limit: u64,
    max_limit: u64,
}

impl std::fmt::Debug for ResourcesBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResourcesBuilder")
            .field(
                "resources",
                &self.defs.iter().map(|d| &d.name).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl ResourcesBuilder {
    /// No resources yet; pages of 100 records by default, at most 1000.
    pub fn new() -> Self {
        Self {
            default_limit: 100,
            max_limit: 1000,
            ..Self::default()
        }
    }

    /// The resources `defs` (a config's `[[resource]]`) with the list limits of `storage`.
    pub fn from_declarations(defs: &[ResourceDef], storage: &StorageConfig) -> Self {
        let mut builder = Self::new().limits(storage.default_limit, storage.max_limit);
        builder.defs.extend(defs.iter().cloned());
        builder
    }

    /// Connects to the store that `storage` names (see [`SqlStore::connect`]), then opens the
    /// resources in it.
    pub async fn open_storage(self, storage: &StorageConfig) -> Result<Resources, ResourceError> {
        let store = SqlStore::connect(&storage.url, storage.max_connections)
            .await
            .map_err(|error| ResourceError::Connect {
                url: storage.url.clone(),
                error,
            })?;
        self.open(store).await
    }

    /// Adds a resource.
    pub fn resource(mut self, def: ResourceDef) -> Self {
        self.defs.push(def);
        self
    }

    /// Sets the page size of `list` when the query has no `$limit`, and the largest `$limit`.
    pub fn limits(mut self, default_limit: u64, max_limit: u64) -> Self {
        self.default_limit = default_limit;
        self.max_limit = max_limit;
        self
    }

    /// Runs `hook` before `operation` on `resource`. It may veto (an error), rewrite the data, or
    /// answer itself ([`Before::Respond`]).
    pub fn before<F, Fut>(mut self, resource: &str, operation: Operation, hook: F) -> Self
    where
        F: Fn(HookContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Before, ApiError>> + Send + 'static,
    {
        let hook: BeforeHook = Arc::new(move |ctx| Box::pin(hook(ctx)));
        self.hooks
            .before
            .entry((resource.to_owned(), operation))
            .or_default()
            .push(hook);
        self
    }

    /// Runs `hook` after `operation` on `resource` succeeded (after the commit); it sees the
    /// result and may replace it.
    pub fn after<F, Fut>(mut self, resource: &str, operation: Operation, hook: F) -> Self
    where
        F: Fn(HookContext, Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, ApiError>> + Send + 'static,
    {
        let hook: AfterHook = Arc::new(move |ctx, result| Box::pin(hook(ctx, result)));
        self.hooks
            .after
            .entry((resource.to_owned(), operation))
            .or_default()
            .push(hook);
        self
    }

    /// Registers a remote method, callable as `<resource>/<name>` (and as a sockful action).
    pub fn remote<F, Fut>(mut self, resource: &str, name: &str, method: F) -> Self
    where
        F: Fn(Context, Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, ApiError>> + Send + 'static,
    {
        let method: RemoteMethod = Arc::new(move |ctx, payload| Box::pin(method(ctx, payload)));
        self.hooks
            .remotes
            .insert((resource.to_owned(), name.to_owned()), method);
        self
    }

    /// Checks the declarations, opens the store and creates or migrates its tables.
    pub async fn open(self, store: impl Store) -> Result<Resources, ResourceError> {
        let defs = parents_first(self.defs)?;
        let mut names = HashSet::new();
        for def in &defs {
            if !names.insert(def.name.clone()) {
                return Err(ResourceError::DeclaredTwice(def.name.clone()));
            }
        }
        for (resource, name) in self.hooks.remotes.keys() {
            if !names.contains(resource)
                || schema::is_operation(name)
                || !schema::is_identifier(name)
            {
                return Err(ResourceError::InvalidRemote {
                    resource: resource.clone(),
                    name: name.clone(),
                });
            }
        }
        store.prepare(&defs).await?;
        Ok(Resources::new(
            defs,
            Box::new(store),
            self.hooks,
            (self.default_limit, self.max_limit),
        ))
    }
}

/// Checks each declaration and orders them parents before children, so that foreign keys have
/// their tables.
fn parents_first(mut pending: Vec<ResourceDef>) -> Result<Vec<ResourceDef>, ResourceError> {
    let mut defs: Vec<ResourceDef> = Vec::new();
    while !pending.is_empty() {
        let before = pending.len();
        let mut rest = Vec::new();
        for def in pending {
            def.check()?;
            let ready = def
                .parent
                .as_ref()
                .is_none_or(|p| defs.iter().any(|d| &d.name == p));
            if ready {
                defs.push(def);
            } else {
                rest.push(def);
            }
        }
        if rest.len() == before {
            return Err(ResourceError::UnknownParents(
                rest.into_iter()
                    .map(|d| (d.name, d.parent.unwrap_or_default()))
                    .collect(),
            ));
        }
        pending = rest;
    }
    Ok(defs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declarations_are_ordered_parents_first() {
        let song = ResourceDef::new("song", []).parent("album");
        let album = ResourceDef::new("album", []);
        let ordered = parents_first(vec![song.clone(), album.clone()]).unwrap();
        assert_eq!(ordered, [album, song]);
        let orphan = ResourceDef::new("song", []).parent("album");
        assert_eq!(
            parents_first(vec![orphan]).unwrap_err().to_string(),
            "unknown or circular parents: song (parent album)"
        );
        let bad = ResourceDef::new("Bad", []);
        assert!(matches!(
            parents_first(vec![bad]),
            Err(ResourceError::Definition(_))
        ));
    }

    #[test]
    fn errors_say_what_is_wrong() {
        assert_eq!(
            ResourceError::DeclaredTwice("song".into()).to_string(),
            "resource `song` is declared twice"
        );
        assert_eq!(
            ResourceError::InvalidRemote {
                resource: "song".into(),
                name: "get".into()
            }
            .to_string(),
            "invalid remote method `song/get`"
        );
        assert_eq!(
            ResourceError::Connect {
                url: "mysql://h".into(),
                error: StoreError::Database("unsupported".into()),
            }
            .to_string(),
            "cannot open storage mysql://h: database error: unsupported"
        );
        let migration = StoreError::Migration {
            table: "song".into(),
            message: "no".into(),
        };
        assert_eq!(
            ResourceError::from(migration.clone()).to_string(),
            migration.to_string()
        );
    }
}
