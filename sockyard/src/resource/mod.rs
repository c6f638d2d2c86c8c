//! Declared resources: a complete realtime CRUD API from declarations, with no handler code.
//!
//! Each resource gets the same operations through three addresses: route names
//! (`creature/create|get|list|update|patch|destroy|<remote>`), REST paths (`POST /creature`,
//! `GET /creature/:id`, `GET /creature`, `PUT|PATCH|DELETE /creature/:id`, and for children
//! `GET|POST /album/:id/song`), and sockful's shape (event `creature` with `{action,
//! payload}`). Writes are validated, stored in a transaction, then announced on channels
//! `creature` and `creature/<id>` as `{event: created|updated|patched|destroyed, data}`.

mod exec;
pub mod query;
pub mod schema;
pub mod store;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::{json, Map, Value};

pub use schema::{Access, FieldDef, FieldType, ResourceDef};
pub use store::{Change, Record, Scope, SqlStore, Store, StoreError, Updated};

use crate::auth::Claims;
use crate::error::ApiError;
use crate::router::Context;
use crate::router::{Method, Router};

/// The operations every resource has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Insert a record.
    Create,
    /// Read one record.
    Get,
    /// Read many records.
    List,
    /// Replace a record's fields.
    Update,
    /// Change some of a record's fields.
    Patch,
    /// Delete a record (and its children).
    Destroy,
}

impl Operation {
    const ALL: [Self; 6] = [
        Self::Create,
        Self::Get,
        Self::List,
        Self::Update,
        Self::Patch,
        Self::Destroy,
    ];

    /// The route name suffix (`create`, `get`, …).
    pub fn name(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Get => "get",
            Self::List => "list",
            Self::Update => "update",
            Self::Patch => "patch",
            Self::Destroy => "destroy",
        }
    }

    fn is_write(self) -> bool {
        !matches!(self, Self::Get | Self::List)
    }

    fn event(self) -> &'static str {
        match self {
            Self::Create => "created",
            Self::Update => "updated",
            Self::Patch => "patched",
            _ => "destroyed",
        }
    }
}

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
pub type HookFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

type BeforeHook = Arc<dyn Fn(HookContext) -> HookFuture<Result<Before, ApiError>> + Send + Sync>;
type AfterHook =
    Arc<dyn Fn(HookContext, Value) -> HookFuture<Result<Value, ApiError>> + Send + Sync>;
type RemoteMethod =
    Arc<dyn Fn(Context, Value) -> HookFuture<Result<Value, ApiError>> + Send + Sync>;

/// Assembles resources: declarations, hooks and remote methods; then opens the store.
#[must_use]
#[derive(Default)]
pub struct ResourcesBuilder {
    defs: Vec<ResourceDef>,
    before: HashMap<(String, Operation), Vec<BeforeHook>>,
    after: HashMap<(String, Operation), Vec<AfterHook>>,
    remotes: HashMap<(String, String), RemoteMethod>,
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

    /// The resources (`[[resource]]`) and list limits (`[storage]`) that `config` declares.
    pub fn from_config(config: &crate::Config) -> Self {
        let mut builder =
            Self::new().limits(config.storage.default_limit, config.storage.max_limit);
        builder.defs.extend(config.resources.iter().cloned());
        builder
    }

    /// Connects to the store that `storage` names (see [`SqlStore::connect`]), then opens the
    /// resources in it.
    pub async fn open_storage(
        self,
        storage: &crate::config::StorageConfig,
    ) -> Result<Resources, crate::Error> {
        let store = SqlStore::connect(&storage.url, storage.max_connections)
            .await
            .map_err(|e| {
                crate::Error::Resource(format!("cannot open storage {}: {e}", storage.url))
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
        self.before
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
        self.after
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
        self.remotes
            .insert((resource.to_owned(), name.to_owned()), method);
        self
    }

    /// Checks the declarations, opens the store and creates or migrates its tables.
    pub async fn open(self, store: impl Store) -> Result<Resources, crate::Error> {
        let mut defs = Vec::new();
        let mut pending = self.defs;
        // Parents before children, so foreign keys have their tables.
        while !pending.is_empty() {
            let before = pending.len();
            let mut rest = Vec::new();
            for def in pending {
                def.check()
                    .map_err(|e| crate::Error::Resource(e.to_string()))?;
                let ready = def
                    .parent
                    .as_ref()
                    .is_none_or(|p| defs.iter().any(|d: &ResourceDef| &d.name == p));
                if ready {
                    defs.push(def);
                } else {
                    rest.push(def);
                }
            }
            if rest.len() == before {
                let names: Vec<String> = rest
                    .iter()
                    .map(|d| {
                        format!(
                            "{} (parent {})",
                            d.name,
                            d.parent.clone().unwrap_or_default()
                        )
                    })
                    .collect();
                return Err(crate::Error::Resource(format!(
                    "unknown or circular parents: {}",
                    names.join(", ")
                )));
            }
            pending = rest;
        }
        let mut names = std::collections::HashSet::new();
        for def in &defs {
            if !names.insert(def.name.clone()) {
                return Err(crate::Error::Resource(format!(
                    "resource `{}` is declared twice",
                    def.name
                )));
            }
        }
        for (resource, name) in self.remotes.keys() {
            if !names.contains(resource)
                || schema::is_operation(name)
                || !schema::is_identifier(name)
            {
                return Err(crate::Error::Resource(format!(
                    "invalid remote method `{resource}/{name}`"
                )));
            }
        }
        store
            .prepare(&defs)
            .await
            .map_err(|e| crate::Error::Resource(e.to_string()))?;
        Ok(Resources {
            inner: Arc::new(Inner {
                defs,
                store: Box::new(store),
                write_locks: (0..WRITE_LOCKS)
                    .map(|_| tokio::sync::Mutex::new(()))
                    .collect(),
                before: self.before,
                after: self.after,
                remotes: self.remotes,
                default_limit: self.default_limit,
                max_limit: self.max_limit,
            }),
        })
    }
}

/// How many locks order the writes to records (records share them by hash).
const WRITE_LOCKS: usize = 256;

struct Inner {
    defs: Vec<ResourceDef>,
    store: Box<dyn Store>,
    /// Writes to one record hold its lock from the transaction through the announcement, so
    /// subscribers see a record's changes in the order they were committed.
    write_locks: Vec<tokio::sync::Mutex<()>>,
    before: HashMap<(String, Operation), Vec<BeforeHook>>,
    after: HashMap<(String, Operation), Vec<AfterHook>>,
    remotes: HashMap<(String, String), RemoteMethod>,
    default_limit: u64,
    max_limit: u64,
}

/// The resources of a server; cheap to clone.
#[derive(Clone)]
pub struct Resources {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Resources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resources")
            .field(
                "resources",
                &self.inner.defs.iter().map(|d| &d.name).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

fn not_found(resource: &str, id: i64) -> ApiError {
    ApiError::not_found(format!("{resource} {id} does not exist"))
        .with("resource", resource)
        .with("id", id)
}

fn store_error(err: StoreError) -> ApiError {
    match err {
        StoreError::NotFound { resource, id } => not_found(&resource, id),
        StoreError::Conflict {
            resource,
            id,
            expected,
            actual,
        } => ApiError::new(
            "Conflict",
            format!("{resource} {id} was changed: it is at version {actual}, not {expected}"),
        )
        .with("expected", expected)
        .with("actual", actual),
        other => {
            tracing::error!(error = %other, "storage failed");
            ApiError::internal("Storage failed")
        }
    }
}

/// Reads an id: a positive integer, or its decimal text.
fn id_of(data: &Value, key: &str) -> Result<i64, ApiError> {
    let value = data.get(key).unwrap_or(&Value::Null);
    value
        .as_i64()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::bad_request(format!("`{key}` must be a positive integer id")))
}

fn object(data: &Value) -> Result<Map<String, Value>, ApiError> {
    match data {
        Value::Object(map) => Ok(map.clone()),
        Value::Null => Ok(Map::new()),
        _ => Err(ApiError::bad_request("the payload must be an object")),
    }
}

impl Resources {
    /// Starts assembling resources.
    pub fn builder() -> ResourcesBuilder {
        ResourcesBuilder::new()
    }

    /// The declarations, parents first.
    pub fn definitions(&self) -> &[ResourceDef] {
        &self.inner.defs
    }

    fn def(&self, name: &str) -> Result<&ResourceDef, ApiError> {
        self.inner
            .defs
            .iter()
            .find(|d| d.name == name)
            .ok_or_else(|| ApiError::not_found(format!("no resource named `{name}`")))
    }

    fn write_lock(&self, resource: &str, id: i64) -> &tokio::sync::Mutex<()> {
        use std::hash::{Hash as _, Hasher as _};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (resource, id).hash(&mut hasher);
        let index = usize::try_from(hasher.finish() % WRITE_LOCKS as u64).unwrap_or(0);
        &self.inner.write_locks[index]
    }

    fn descendants(&self, name: &str) -> Vec<&ResourceDef> {
        let mut found: Vec<&ResourceDef> = Vec::new();
        let mut names = vec![name.to_owned()];
        while let Some(parent) = names.pop() {
            for def in self
                .inner
                .defs
                .iter()
                .filter(|d| d.parent.as_deref() == Some(parent.as_str()))
            {
                names.push(def.name.clone());
                found.push(def);
            }
        }
        found
    }

    /// Runs `operation` on `resource` for the caller in `ctx` with `data`, hooks and events
    /// included. This is what every address of a resource calls.
    pub async fn run(
        &self,
        ctx: &Context,
        resource: &str,
        operation: Operation,
        data: Value,
    ) -> Result<Value, ApiError> {
        let def = self.def(resource)?.clone();
        let claims = ctx.claims();
        if operation.is_write() {
            def.check_write(claims.as_deref())?;
        } else {
            def.check_read(claims.as_deref())?;
        }
        let mut hook = HookContext {
            ctx: ctx.clone(),
            resource: resource.to_owned(),
            operation,
            data,
        };
        for before in self
            .inner
            .before
            .get(&(resource.to_owned(), operation))
            .into_iter()
            .flatten()
        {
            match before(hook).await? {
                Before::Continue(next) => hook = next,
                Before::Respond(result) => return Ok(result),
            }
        }
        // A create's record has no id before it is committed, so nothing can race with it.
        let ordered = match operation {
            Operation::Update | Operation::Patch | Operation::Destroy => {
                let id = id_of(&hook.data, "id").unwrap_or_default();
                Some(self.write_lock(resource, id).lock().await)
            }
            _ => None,
        };
        let (result, events) = self
            .execute(&def, claims.as_deref(), operation, &hook.data)
            .await?;
        for (name, event, record) in &events {
            self.announce(ctx, name, event, record).await;
        }
        drop(ordered);
        let mut result = result;
        for after in self
            .inner
            .after
            .get(&(resource.to_owned(), operation))
            .into_iter()
            .flatten()
        {
            result = after(hook.clone(), result).await?;
        }
        Ok(result)
    }

    /// The operation itself; returns the result and the change events to announce.
    async fn execute(
        &self,
        def: &ResourceDef,
        claims: Option<&Claims>,
        operation: Operation,
        data: &Value,
    ) -> Result<(Value, Vec<(String, &'static str, Record)>), ApiError> {
        let store = &self.inner.store;
        let owner = def.owner_of(claims);
        let read_scope = Scope {
            owner: (def.read == Access::Owner).then(|| owner.clone().unwrap_or(Value::Null)),
            parent: None,
        };
        let write_scope = Scope {
            owner: (def.write == Access::Owner).then(|| owner.clone().unwrap_or(Value::Null)),
            parent: None,
        };
        match operation {
            Operation::Create => {
                let mut fields = object(data)?;
                let parent = match def.parent_column() {
                    Some(column) => Some(id_of(data, &column)?),
                    None => None,
                };
                if def.owner.is_some() && owner.is_none() {
                    return Err(ApiError::new(
                        crate::auth::access::AUTH_ERROR,
                        format!("creating {} needs an owner claim", def.name),
                    ));
                }
                for reserved in schema::RESERVED {
                    fields.remove(reserved);
                }
                if let Some(column) = def.parent_column() {
                    fields.remove(&column);
                }
                let fields = def.validate_full(&fields)?;
                let record = store
                    .create(def, &fields, &Scope { owner, parent })
                    .await
                    .map_err(store_error)?;
                Ok((
                    Value::Object(record.clone()),
                    vec![(def.name.clone(), operation.event(), record)],
                ))
            }
            Operation::Get => {
                let id = id_of(data, "id")?;
                match store.get(def, id, &read_scope).await.map_err(store_error)? {
                    Some(record) => Ok((Value::Object(record), Vec::new())),
                    None => Err(not_found(&def.name, id)),
                }
            }
            Operation::List => {
                let query_map = object(data)?;
                let query = query::parse(
                    def,
                    &query_map,
                    self.inner.default_limit,
                    self.inner.max_limit,
                )?;
                let (records, total) = store
                    .list(def, &query, &read_scope)
                    .await
                    .map_err(store_error)?;
                let next = if records.len() as u64 == query.limit && query.limit > 0 {
                    records
                        .last()
                        .and_then(|last| query::encode_cursor(&query, last))
                } else {
                    None
                };
                let mut page = json!({"data": records, "total": total, "limit": query.limit, "skip": query.skip});
                if let Some(next) = next {
                    page["next"] = Value::String(next);
                }
                Ok((page, Vec::new()))
            }
            Operation::Update | Operation::Patch => {
                let id = id_of(data, "id")?;
                let version = match data.get("version") {
                    Some(v) => Some(
                        v.as_i64()
                            .ok_or_else(|| ApiError::bad_request("`version` must be an integer"))?,
                    ),
                    None if def.require_version => {
                        return Err(ApiError::bad_request(format!(
                            "`version` is required to {} {}",
                            operation.name(),
                            def.name
                        )));
                    }
                    None => None,
                };
                let mut fields = object(data)?;
                for reserved in schema::RESERVED {
                    fields.remove(reserved);
                }
                if let Some(column) = def.parent_column() {
                    fields.remove(&column);
                }
                let checked = if operation == Operation::Update {
                    def.validate_full(&fields)?
                } else {
                    def.validate_partial(&fields)?
                };
                let replace = operation == Operation::Update;
                let def_for_change = def.clone();
                let outcome = store
                    .update(
                        def,
                        id,
                        version,
                        &write_scope,
                        Box::new(move |before| {
                            if replace {
                                return Ok(checked);
                            }
                            let mut merged = Map::new();
                            for (key, value) in before {
                                if !schema::RESERVED.contains(&key.as_str())
                                    && Some(key) != def_for_change.parent_column().as_ref()
                                {
                                    merged.insert(key.clone(), value.clone());
                                }
                            }
                            for (key, value) in checked {
                                if value.is_null() {
                                    merged.remove(&key);
                                } else {
                                    merged.insert(key, value);
                                }
                            }
                            def_for_change.validate_full(&merged)
                        }),
                    )
                    .await
                    .map_err(store_error)?;
                let (_, after) = outcome?;
                Ok((
                    Value::Object(after.clone()),
                    vec![(def.name.clone(), operation.event(), after)],
                ))
            }
            Operation::Destroy => {
                let id = id_of(data, "id")?;
                let descendants = self.descendants(&def.name);
                let removed = store
                    .destroy(def, id, &write_scope, &descendants)
                    .await
                    .map_err(store_error)?;
                let result = removed
                    .last()
                    .map(|(_, r)| Value::Object(r.clone()))
                    .unwrap_or(Value::Null);
                let events = removed
                    .into_iter()
                    .map(|(name, record)| (name, "destroyed", record))
                    .collect();
                Ok((result, events))
            }
        }
    }

    /// Publishes a change on `<resource>` and `<resource>/<id>`; records of resources read by
    /// their owner only go to `<resource>/<id>` and `<resource>/owner/<owner>`.
    async fn announce(&self, ctx: &Context, resource: &str, event: &str, record: &Record) {
        let Ok(def) = self.def(resource) else { return };
        let message = json!({"event": event, "data": record});
        let id = record.get("id").and_then(Value::as_i64).unwrap_or_default();
        let mut channels = vec![format!("{resource}/{id}")];
        if def.read == Access::Owner {
            if let Some(owner) = record.get("owner").and_then(Value::as_str) {
                channels.push(format!("{resource}/owner/{owner}"));
            }
        } else {
            channels.push(resource.to_owned());
        }
        for channel in channels {
            if let Err(err) = ctx.publish(&channel, &message).await {
                tracing::warn!(channel, error = %err, "could not announce a change");
            }
        }
    }

    /// Runs a remote method (a Rust one, or a configured command).
    pub async fn remote(
        &self,
        ctx: &Context,
        resource: &str,
        name: &str,
        data: Value,
    ) -> Result<Value, ApiError> {
        let def = self.def(resource)?.clone();
        def.check_write(ctx.claims().as_deref())?;
        if let Some(method) = self
            .inner
            .remotes
            .get(&(resource.to_owned(), name.to_owned()))
        {
            return method(ctx.clone(), data).await;
        }
        match def.remotes.iter().find(|m| m.name == name) {
            Some(method) => exec::run(method, &data).await,
            None => Err(ApiError::not_found(format!(
                "{name} is not a valid action."
            ))),
        }
    }

    /// Checks a subscription to a resource channel: `<resource>` and `<resource>/<id>` follow
    /// the read rule (for owner-read resources, the record must be the caller's, and
    /// `<resource>/owner/<x>` is open to the owner `x` only). `None`: not a resource channel.
    pub async fn check_subscribe(
        &self,
        channel: &str,
        claims: Option<&Claims>,
    ) -> Option<Result<(), ApiError>> {
        let (resource, rest) = channel.split_once('/').unwrap_or((channel, ""));
        let def = self.inner.defs.iter().find(|d| d.name == resource)?;
        Some(self.subscribe_rule(def, rest, claims).await)
    }

    async fn subscribe_rule(
        &self,
        def: &ResourceDef,
        rest: &str,
        claims: Option<&Claims>,
    ) -> Result<(), ApiError> {
        def.check_read(claims)?;
        if def.read != Access::Owner {
            return Ok(());
        }
        let forbidden = || {
            ApiError::new(
                crate::auth::access::FORBIDDEN,
                format!("Not allowed to read these {} records", def.name),
            )
        };
        let owner = def.owner_of(claims).ok_or_else(forbidden)?;
        if let Some(value) = rest.strip_prefix("owner/") {
            return if Some(value) == owner.as_str() {
                Ok(())
            } else {
                Err(forbidden())
            };
        }
        let id: i64 = rest.parse().map_err(|_| forbidden())?;
        let scope = Scope {
            owner: Some(owner),
            parent: None,
        };
        match self
            .inner
            .store
            .get(def, id, &scope)
            .await
            .map_err(store_error)?
        {
            Some(_) => Ok(()),
            None => Err(forbidden()),
        }
    }

    /// Whether `channel` belongs to a resource (clients may not publish there).
    pub fn is_resource_channel(&self, channel: &str) -> bool {
        let resource = channel.split('/').next().unwrap_or(channel);
        self.inner.defs.iter().any(|d| d.name == resource)
    }

    /// The routes of every resource, by name, by path, and in sockful's shape.
    pub fn router(&self) -> Router {
        let mut router = Router::new();
        for def in &self.inner.defs {
            let name = def.name.clone();
            for operation in Operation::ALL {
                let resources = self.clone();
                let resource = name.clone();
                router = router.procedure_raw(
                    &format!("{name}/{}", operation.name()),
                    move |ctx, data| {
                        let resources = resources.clone();
                        let resource = resource.clone();
                        async move {
                            resources
                                .run(&ctx, &resource, operation, data.unwrap_or(Value::Null))
                                .await
                                .map(Some)
                        }
                    },
                );
            }
            for remote in self.remote_names(&name) {
                let resources = self.clone();
                let resource = name.clone();
                router = router.procedure_raw(&format!("{name}/{remote}"), move |ctx, data| {
                    let resources = resources.clone();
                    let resource = resource.clone();
                    let remote = remote.clone();
                    async move {
                        resources
                            .remote(&ctx, &resource, &remote, data.unwrap_or(Value::Null))
                            .await
                            .map(Some)
                    }
                });
            }
            router = self.rest_routes(router, def);
            let resources = self.clone();
            let event = name.clone();
            router = router.procedure_raw(&event, move |ctx, data| {
                let resources = resources.clone();
                let resource = name.clone();
                async move {
                    resources
                        .sockful(&ctx, &resource, data.unwrap_or(Value::Null))
                        .await
                        .map(Some)
                }
            });
        }
        router
    }

    fn remote_names(&self, resource: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .inner
            .remotes
            .keys()
            .filter(|(r, _)| r == resource)
            .map(|(_, n)| n.clone())
            .collect();
        if let Ok(def) = self.def(resource) {
            for method in &def.remotes {
                if !names.contains(&method.name) {
                    names.push(method.name.clone());
                }
            }
        }
        names.sort();
        names
    }

    fn rest_routes(&self, mut router: Router, def: &ResourceDef) -> Router {
        let name = def.name.clone();
        let collection = format!("/{name}");
        let item = format!("/{name}/:id");
        for (method, path, operation) in [
            (Method::Post, &collection, Operation::Create),
            (Method::Get, &collection, Operation::List),
            (Method::Get, &item, Operation::Get),
            (Method::Put, &item, Operation::Update),
            (Method::Patch, &item, Operation::Patch),
            (Method::Delete, &item, Operation::Destroy),
        ] {
            let resources = self.clone();
            let resource = name.clone();
            router = router.route(method, path, move |ctx: Context, data: Value| {
                let resources = resources.clone();
                let resource = resource.clone();
                async move {
                    let data = with_param(data, "id", ctx.param("id"))?;
                    resources.run(&ctx, &resource, operation, data).await
                }
            });
        }
        if let (Some(parent), Some(column)) = (&def.parent, def.parent_column()) {
            let children = format!("/{parent}/:id/{name}");
            for (method, operation) in [
                (Method::Get, Operation::List),
                (Method::Post, Operation::Create),
            ] {
                let resources = self.clone();
                let resource = name.clone();
                let column = column.clone();
                let parent = parent.clone();
                router = router.route(method, &children, move |ctx: Context, data: Value| {
                    let resources = resources.clone();
                    let resource = resource.clone();
                    let column = column.clone();
                    let parent = parent.clone();
                    async move {
                        let parent_id = ctx
                            .param("id")
                            .and_then(|id| id.parse::<i64>().ok())
                            .unwrap_or(0);
                        // The parent must exist (and be readable) for its children to be listed.
                        resources
                            .run(&ctx, &parent, Operation::Get, json!({"id": parent_id}))
                            .await?;
                        let data = with_param(data, &column, Some(&parent_id.to_string()))?;
                        resources.run(&ctx, &resource, operation, data).await
                    }
                });
            }
        }
        router
    }

    /// sockful's shape: `{action, payload}` with actions `create get all update destroy`,
    /// `create<Child>` and remote methods.
    async fn sockful(&self, ctx: &Context, resource: &str, data: Value) -> Result<Value, ApiError> {
        let action = data
            .get("action")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let payload = data.get("payload").cloned().unwrap_or(Value::Null);
        let operation = match action.as_str() {
            "create" => Some(Operation::Create),
            "get" => Some(Operation::Get),
            "update" => Some(Operation::Update),
            "patch" => Some(Operation::Patch),
            "destroy" => Some(Operation::Destroy),
            "all" => {
                let page = self.run(ctx, resource, Operation::List, payload).await?;
                return Ok(page
                    .get("data")
                    .cloned()
                    .unwrap_or(Value::Array(Vec::new())));
            }
            _ => None,
        };
        if let Some(operation) = operation {
            // sockful's `get` also takes a bare id.
            let payload = match (operation, &payload) {
                (Operation::Get | Operation::Destroy, Value::Number(_) | Value::String(_)) => {
                    json!({"id": payload})
                }
                _ => payload,
            };
            return self.run(ctx, resource, operation, payload).await;
        }
        if let Some(child) = action.strip_prefix("create").map(str::to_ascii_lowercase) {
            let is_child = self
                .inner
                .defs
                .iter()
                .any(|d| d.name == child && d.parent.as_deref() == Some(resource));
            if is_child {
                let parent_id = id_of(&payload, "id")
                    .or_else(|_| id_of(&payload, &format!("{resource}_id")))?;
                let mut fields = object(&payload)?;
                fields.remove("id");
                fields.insert(format!("{resource}_id"), Value::from(parent_id));
                return self
                    .run(ctx, &child, Operation::Create, Value::Object(fields))
                    .await;
            }
        }
        if self.remote_names(resource).contains(&action) {
            return self.remote(ctx, resource, &action, payload).await;
        }
        Err(ApiError::not_found(format!(
            "{action} is not a valid action."
        )))
    }
}

/// Puts a route parameter into an object payload.
fn with_param(data: Value, key: &str, value: Option<&str>) -> Result<Value, ApiError> {
    let Some(value) = value else { return Ok(data) };
    let mut map = object(&data)?;
    let value = value
        .parse::<i64>()
        .map(Value::from)
        .unwrap_or_else(|_| Value::String(value.to_owned()));
    map.insert(key.to_owned(), value);
    Ok(Value::Object(map))
}
