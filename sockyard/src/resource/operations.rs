//! [`Resources`] and what it runs: the [`Operation`]s every resource has — access checked,
//! before hooks, the store, change events, after hooks — and remote methods.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::builder::{Before, HookContext, Hooks, ResourcesBuilder};
use super::exec;
use super::ordering::WriteLocks;
use super::query;
use super::schema::{self, Access, ResourceDef};
use super::store::{Record, Scope, Store, StoreError};
use crate::auth::Claims;
use crate::error::ApiError;
use crate::router::Context;

/// The operations every resource has.
///
/// Of the names every record has ([`schema::RESERVED`]: `id`, `version`, `ctime`, `mtime`,
/// `owner`, `extra`) and a child's parent column (`album_id`), a payload may carry only those
/// its operation takes: `create` none but the parent column (the parent it is created under);
/// `get` and `destroy` `id` (the record's address); `update` and `patch` `id` and `version`
/// (the version read); `list` any of them, as filters and sort keys. Any other is a
/// `ValidationError` naming it (`readOnly`); in particular a child never moves to another
/// parent, so `update` and `patch` refuse its parent column.
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
    /// Every operation, in the order their routes are added.
    pub(super) const ALL: [Self; 6] = [
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

    /// Whether the operation changes records (and so follows the write rule).
    fn is_write(self) -> bool {
        !matches!(self, Self::Get | Self::List)
    }
}

/// What every clone of a [`Resources`] shares.
pub(super) struct Inner {
    /// The declarations, parents first.
    pub(super) defs: Vec<ResourceDef>,
    /// Where the records are.
    pub(super) store: Box<dyn Store>,
    /// Writes to a record or its descendants hold the lock of their tree from the transaction
    /// through the announcement, so subscribers see the changes in the order they were
    /// committed.
    pub(super) write_locks: WriteLocks,
    /// Hooks and Rust remote methods.
    pub(super) hooks: Hooks,
    default_limit: u64,
    max_limit: u64,
}

/// The resources of a server; cheap to clone. Built by [`crate::resource::ResourcesBuilder`] and
/// given to [`crate::ServerBuilder::resources`], which mounts their routes:
/// `note/create`, `GET /note/:id`, sockful's `note` `{action, payload}`, …
#[derive(Clone)]
pub struct Resources {
    pub(super) inner: Arc<Inner>,
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

/// `NotFound` for record `id` of `resource`.
fn not_found(resource: &str, id: i64) -> ApiError {
    ApiError::not_found(format!("{resource} {id} does not exist"))
        .with("resource", resource)
        .with("id", id)
}

/// What a caller is told of a storage failure (the details of an unexpected one stay in the
/// log).
pub(super) fn store_error(err: StoreError) -> ApiError {
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
pub(super) fn id_of(data: &Value, key: &str) -> Result<i64, ApiError> {
    let value = data.get(key).unwrap_or(&Value::Null);
    value
        .as_i64()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::bad_request(format!("`{key}` must be a positive integer id")))
}

/// The id of a payload that holds only an address (`get`, `destroy`): `{id}` or `{id, …}`
/// without the names the server keeps (see [`schema::RESERVED`]).
fn address(def: &ResourceDef, data: &Value) -> Result<i64, ApiError> {
    let id = id_of(data, "id")?;
    let mut rest = object(data)?;
    rest.remove("id");
    def.refuse_system_fields(&rest)?;
    Ok(id)
}

/// The payload as an object (`null` is an empty one).
pub(super) fn object(data: &Value) -> Result<Map<String, Value>, ApiError> {
    match data {
        Value::Object(map) => Ok(map.clone()),
        Value::Null => Ok(Map::new()),
        _ => Err(ApiError::bad_request("the payload must be an object")),
    }
}

impl Resources {
    /// Resources over `store` for the checked `defs` (parents first), with their hooks and the
    /// list limits `(default, max)`.
    pub(super) fn new(
        defs: Vec<ResourceDef>,
        store: Box<dyn Store>,
        hooks: Hooks,
        (default_limit, max_limit): (u64, u64),
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                defs,
                store,
                write_locks: WriteLocks::new(),
                hooks,
                default_limit,
                max_limit,
            }),
        }
    }

    /// Starts assembling resources.
    pub fn builder() -> ResourcesBuilder {
        ResourcesBuilder::new()
    }

    /// The declarations, parents first.
    pub fn definitions(&self) -> &[ResourceDef] {
        &self.inner.defs
    }

    /// The declaration of resource `name`.
    pub(super) fn def(&self, name: &str) -> Result<&ResourceDef, ApiError> {
        self.inner
            .defs
            .iter()
            .find(|d| d.name == name)
            .ok_or_else(|| ApiError::not_found(format!("no resource named `{name}`")))
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
            .hooks
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
        let ordered = self.order_write(&def, operation, &hook.data).await;
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
            .hooks
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
                // A child's parent column is the address of its parent.
                let parent = match def.parent_column() {
                    Some(column) => {
                        fields.remove(&column);
                        Some(id_of(data, &column)?)
                    }
                    None => None,
                };
                if def.owner.is_some() && owner.is_none() {
                    return Err(ApiError::new(
                        crate::auth::access::AUTH_ERROR,
                        format!("creating {} needs an owner claim", def.name),
                    ));
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
                let id = address(def, data)?;
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
                // `id` is the record's address and `version` the one the caller read.
                let mut fields = object(data)?;
                fields.remove("id");
                fields.remove("version");
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
                let id = address(def, data)?;
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
            .hooks
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
}
