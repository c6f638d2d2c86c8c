//! The addresses of every resource's operations: route names
//! (`creature/create|get|list|update|patch|destroy|<remote>`), REST paths (`POST /creature`,
//! `GET /creature/:id`, `GET /creature`, `PUT|PATCH|DELETE /creature/:id`, and for children
//! `GET|POST /album/:id/song`), and sockful's shape (event `creature` with `{action,
//! payload}`).

use serde_json::{json, Value};

use super::operations::{id_of, object, Operation, Resources};
use super::schema::ResourceDef;
use crate::error::ApiError;
use crate::router::Context;
use crate::router::{Method, Router};

impl Resources {
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

    /// The remote methods of `resource`, Rust and command ones, sorted.
    fn remote_names(&self, resource: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .inner
            .hooks
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

    /// The REST paths of `def`'s operations, and of its children under a parent.
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
