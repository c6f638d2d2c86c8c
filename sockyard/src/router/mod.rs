//! Routes calls to handlers by name (`echo`) or by method and path (`GET /creature/:id`), with
//! routers nested to any depth and middleware that runs before handlers.
//!
//! Path semantics follow socketcluster-api: nesting joins paths (`/album` + `/song` is
//! `/album/song`), and `/resource` and `/resource/` are different routes, so a handler mounted at
//! the root of a nested router answers the trailing-slash path.

mod context;
mod handler;
mod middleware;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use thiserror::Error;

pub use context::{Context, Params};
pub use handler::{CallFuture, CallResult};
pub use middleware::{Middleware, MiddlewareFuture, Request};

use crate::error::ApiError;
use crate::peer::ConnectionHandle;
use handler::{guard, ErasedHandler, Raw, Typed};

/// An HTTP-style method for path routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// GET
    Get,
    /// POST
    Post,
    /// PUT
    Put,
    /// PATCH
    Patch,
    /// DELETE
    Delete,
}

impl Method {
    const ALL: [Self; 5] = [Self::Get, Self::Post, Self::Put, Self::Patch, Self::Delete];

    /// Parses a method name, ignoring ASCII case (`get` and `GET` are the same).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(name))
    }

    /// The upper-case method name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
            Self::Delete => "DELETE",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A mistake in how routes were put together, found when the router is built.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RouterError {
    /// Two handlers were registered under the same name.
    #[error("duplicate route name `{0}`")]
    DuplicateName(String),
    /// A name is empty or looks like a method + path route.
    #[error("invalid route name `{0}`: names must be non-empty and not start with an HTTP method and a path")]
    InvalidName(String),
    /// A path pattern is malformed or conflicts with another.
    #[error("route `{method} {path}`: {reason}")]
    Path {
        /// The route's method.
        method: Method,
        /// The route's full path.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Generates `get`, `post`, … as shorthands for [`Router::route`] with that method.
macro_rules! method_shorthands {
    ($($name:ident => $method:ident),* $(,)?) => {
        $(
            #[doc = concat!("`route(Method::", stringify!($method), ", ..)`.")]
            pub fn $name<F, Fut, T, R, E>(self, path: &str, handler: F) -> Self
            where
                F: Fn(Context, T) -> Fut + Send + Sync + 'static,
                Fut: Future<Output = Result<R, E>> + Send + 'static,
                T: DeserializeOwned + 'static,
                R: Serialize + 'static,
                E: Into<ApiError> + 'static,
            {
                self.route(Method::$method, path, handler)
            }
        )*
    };
}

type SharedHandler = Arc<dyn ErasedHandler>;
type Chain = Arc<[Arc<dyn Middleware>]>;

enum Entry {
    Name(String, SharedHandler),
    Path(Method, String, SharedHandler),
    Nest(String, Router),
}

/// A set of routes under construction. Build it with chained calls, then [`Router::build`] it
/// into the [`RouteTable`] a server uses.
///
/// ```
/// use serde::Deserialize;
/// use sockyard::{ApiError, Context, Router};
///
/// #[derive(Deserialize)]
/// struct Add { a: i64, b: i64 }
///
/// async fn add(_ctx: Context, args: Add) -> Result<i64, ApiError> {
///     Ok(args.a + args.b)
/// }
///
/// let albums = Router::new()
///     .get("/", |_ctx, _: ()| async { Ok::<_, ApiError>(vec!["a", "b"]) })
///     .get("/:id", |ctx: Context, _: ()| async move {
///         Ok::<_, ApiError>(ctx.param("id").map(str::to_owned))
///     });
/// let table = Router::new()
///     .procedure("add", add)
///     .nest("/album", albums)
///     .build()
///     .unwrap();
/// assert!(table.contains("add"));
/// assert!(table.contains("GET /album/"));
/// assert!(table.contains("GET /album/7"));
/// assert!(!table.contains("GET /album"));
/// ```
#[must_use]
pub struct Router {
    entries: Vec<Entry>,
    middleware: Vec<Arc<dyn Middleware>>,
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field("routes", &self.entries.len())
            .field("middleware", &self.middleware.len())
            .finish()
    }
}

impl Default for Router {
    fn default() -> Self {
        Self::new()
    }
}

impl Router {
    /// An empty router.
    pub fn new() -> Self {
        Self {
            entries: Vec::new(),
            middleware: Vec::new(),
        }
    }

    /// Registers a named procedure. The payload is decoded into `T` (a `BadRequest` error reply
    /// if it does not fit); the result is encoded from `R`, and `()` or `None` replies without
    /// data.
    pub fn procedure<F, Fut, T, R, E>(mut self, name: &str, handler: F) -> Self
    where
        F: Fn(Context, T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, E>> + Send + 'static,
        T: DeserializeOwned + 'static,
        R: Serialize + 'static,
        E: Into<ApiError> + 'static,
    {
        self.entries
            .push(Entry::Name(name.to_owned(), Arc::new(Typed::new(handler))));
        self
    }

    /// Registers a named procedure that sees the payload exactly as sent (`None` when the client
    /// left it out) and replies with exactly what it returns.
    pub fn procedure_raw<F, Fut>(mut self, name: &str, handler: F) -> Self
    where
        F: Fn(Context, Option<Value>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = CallResult> + Send + 'static,
    {
        self.entries
            .push(Entry::Name(name.to_owned(), Arc::new(Raw(handler))));
        self
    }

    /// Registers a handler for `method` and a path pattern. Segments starting with `:` capture a
    /// parameter (`/creature/:id`); a final segment starting with `*` captures the rest.
    pub fn route<F, Fut, T, R, E>(mut self, method: Method, path: &str, handler: F) -> Self
    where
        F: Fn(Context, T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, E>> + Send + 'static,
        T: DeserializeOwned + 'static,
        R: Serialize + 'static,
        E: Into<ApiError> + 'static,
    {
        self.entries.push(Entry::Path(
            method,
            normalize(path),
            Arc::new(Typed::new(handler)),
        ));
        self
    }

    method_shorthands! {
        get => Get,
        post => Post,
        put => Put,
        patch => Patch,
        delete => Delete,
    }

    /// Mounts `router` under `prefix`. Its path routes get `prefix` in front (`/album` + `/:id`
    /// is `/album/:id`, `/album` + `/` is `/album/`); its named routes get `prefix` without
    /// slashes and a `/` (`album` + `list` is `album/list`). Its middleware applies to its own
    /// routes only, after this router's.
    pub fn nest(mut self, prefix: &str, router: Self) -> Self {
        self.entries.push(Entry::Nest(prefix.to_owned(), router));
        self
    }

    /// Adds middleware that runs, in the order added, before every handler of this router and
    /// of routers nested in it.
    pub fn middleware(mut self, middleware: impl Middleware) -> Self {
        self.middleware.push(Arc::new(middleware));
        self
    }

    /// Assembles the route table, checking for duplicate names and conflicting paths.
    pub fn build(self) -> Result<RouteTable, RouterError> {
        let mut table = RouteTable::default();
        self.flatten("", "", &[], &mut table)?;
        Ok(table)
    }

    fn flatten(
        self,
        path_prefix: &str,
        name_prefix: &str,
        outer: &[Arc<dyn Middleware>],
        table: &mut RouteTable,
    ) -> Result<(), RouterError> {
        let chain: Vec<Arc<dyn Middleware>> =
            outer.iter().cloned().chain(self.middleware).collect();
        let shared_chain: Chain = chain.clone().into();
        for entry in self.entries {
            match entry {
                Entry::Name(name, handler) => {
                    let full = format!("{name_prefix}{name}");
                    if name.is_empty() || split_path_route(&full).is_some() {
                        return Err(RouterError::InvalidName(full));
                    }
                    let route = Arc::new(Route {
                        handler,
                        middleware: shared_chain.clone(),
                        pattern: full.clone(),
                    });
                    if table.names.insert(full.clone(), route).is_some() {
                        return Err(RouterError::DuplicateName(full));
                    }
                }
                Entry::Path(method, path, handler) => {
                    let full = join_paths(path_prefix, &path);
                    let pattern = to_matchit(&full).map_err(|reason| RouterError::Path {
                        method,
                        path: full.clone(),
                        reason,
                    })?;
                    let route = Arc::new(Route {
                        handler,
                        middleware: shared_chain.clone(),
                        pattern: full.clone(),
                    });
                    table.paths[method.index()]
                        .insert(pattern.clone(), route.clone())
                        .map_err(|err| RouterError::Path {
                            method,
                            path: full.clone(),
                            reason: err.to_string(),
                        })?;
                    table.inserted.push((method, pattern, route));
                }
                Entry::Nest(prefix, router) => {
                    let paths = join_paths(path_prefix, &normalize(&prefix));
                    let trimmed = prefix.trim_matches('/');
                    let names = if trimmed.is_empty() {
                        name_prefix.to_owned()
                    } else {
                        format!("{name_prefix}{trimmed}/")
                    };
                    router.flatten(paths.trim_end_matches('/'), &names, &chain, table)?;
                }
            }
        }
        Ok(())
    }
}

/// One resolved route: its handler, the middleware in front of it, and the pattern it was
/// registered under.
struct Route {
    handler: SharedHandler,
    middleware: Chain,
    pattern: String,
}

/// The built routing table a server dispatches calls through.
#[derive(Default)]
pub struct RouteTable {
    names: HashMap<String, Arc<Route>>,
    paths: [matchit::Router<Arc<Route>>; 5],
    /// Every path route as inserted (method, matchit pattern), so tables can be combined.
    inserted: Vec<(Method, String, Arc<Route>)>,
}

impl fmt::Debug for RouteTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteTable")
            .field("names", &self.names.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl RouteTable {
    /// Whether a call to `route` (a name, or `METHOD /path`) would find a handler.
    pub fn contains(&self, route: &str) -> bool {
        self.resolve(route).is_some()
    }

    /// Adds the routes of `other` that this table does not already answer: where both have a
    /// route of the same name, or paths that conflict, this table's route stays.
    ///
    /// ```
    /// use sockyard::{ApiError, Router};
    ///
    /// let ours = Router::new().procedure("ping", |_ctx, _: ()| async { Ok::<_, ApiError>("ours") });
    /// let theirs = Router::new()
    ///     .procedure("ping", |_ctx, _: ()| async { Ok::<_, ApiError>("theirs") })
    ///     .get("/status", |_ctx, _: ()| async { Ok::<_, ApiError>("up") });
    /// let mut table = ours.build().unwrap();
    /// table.add_missing(theirs.build().unwrap());
    /// assert!(table.contains("ping") && table.contains("GET /status"));
    /// ```
    pub fn add_missing(&mut self, other: Self) {
        for (name, route) in other.names {
            self.names.entry(name).or_insert(route);
        }
        for (method, pattern, route) in other.inserted {
            if self.paths[method.index()]
                .insert(pattern.clone(), route.clone())
                .is_ok()
            {
                self.inserted.push((method, pattern, route));
            }
        }
    }

    /// Starts a call on behalf of `connection`. Names are looked up first as written; a route of
    /// the form `METHOD /path` (e.g. `GET /creature/7`) is matched against the path routes. An
    /// unknown route answers `NotFound`.
    pub fn call(
        &self,
        connection: &ConnectionHandle,
        route: &str,
        data: Option<Value>,
        is_transmit: bool,
    ) -> CallFuture {
        match self.resolve(route) {
            Some((found, params)) => dispatch(found, connection, params, route, data, is_transmit),
            None => Box::pin(std::future::ready(Err(ApiError::not_found(format!(
                "Unknown procedure '{route}'"
            ))))),
        }
    }

    /// Starts a call of the path route `method path`. An unknown route answers `NotFound`.
    pub fn call_path(
        &self,
        connection: &ConnectionHandle,
        method: Method,
        path: &str,
        data: Option<Value>,
    ) -> CallFuture {
        match self.resolve_path(method, path) {
            Some((found, params)) => {
                let route = format!("{method} {path}");
                dispatch(found, connection, params, &route, data, false)
            }
            None => Box::pin(std::future::ready(Err(ApiError::not_found(format!(
                "No route for '{method} {path}'"
            ))))),
        }
    }

    /// The pattern of the path route that `method path` would reach (e.g. `/creature/:id` for
    /// `GET /creature/7`).
    pub fn pattern_of(&self, method: Method, path: &str) -> Option<String> {
        self.resolve_path(method, path)
            .map(|(route, _)| route.pattern.clone())
    }

    fn resolve(&self, route: &str) -> Option<(Arc<Route>, Params)> {
        if let Some(found) = self.names.get(route) {
            return Some((found.clone(), Params::default()));
        }
        let (method, path) = split_path_route(route)?;
        self.resolve_path(method, path)
    }

    fn resolve_path(&self, method: Method, path: &str) -> Option<(Arc<Route>, Params)> {
        let path = path.split_once('?').map_or(path, |(p, _)| p);
        let matched = self.paths[method.index()].at(path).ok()?;
        let mut params = Params::default();
        for (name, value) in matched.params.iter() {
            params.push(name, value);
        }
        Some((matched.value.clone(), params))
    }
}

fn dispatch(
    route: Arc<Route>,
    connection: &ConnectionHandle,
    params: Params,
    name: &str,
    data: Option<Value>,
    is_transmit: bool,
) -> CallFuture {
    let ctx = Context::new(connection.clone(), params);
    if route.middleware.is_empty() {
        return route.handler.call(ctx, data);
    }
    let request = Request {
        ctx,
        route: name.to_owned(),
        data,
        is_transmit,
    };
    Box::pin(guard(async move {
        let mut request = request;
        for middleware in route.middleware.iter() {
            request = middleware.handle(request).await?;
        }
        route.handler.call(request.ctx, request.data).await
    }))
}

/// Whether `err` is the `InternalError` produced by a panicking handler (counted separately).
pub(crate) fn is_panic_error(err: &ApiError) -> bool {
    err.name == ApiError::INTERNAL && err.message == handler::PANIC_MESSAGE
}

/// Splits `GET /path` into its method and path.
fn split_path_route(route: &str) -> Option<(Method, &str)> {
    let (method, path) = route.split_once(' ')?;
    if !path.starts_with('/') {
        return None;
    }
    Some((Method::parse(method)?, path))
}

/// Adds a leading `/` when missing (socketcluster-api does the same).
fn normalize(path: &str) -> String {
    if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    }
}

/// Joins a mount prefix (without trailing slash) and a route path (with leading slash).
fn join_paths(prefix: &str, path: &str) -> String {
    format!("{}{}", prefix.trim_end_matches('/'), path)
}

/// Converts `/a/:id/*rest` into matchit's `/a/{id}/{*rest}`, escaping literal braces.
fn to_matchit(path: &str) -> Result<String, String> {
    let segments: Vec<&str> = path.split('/').collect();
    let last = segments.len() - 1;
    let mut out = Vec::with_capacity(segments.len());
    for (i, segment) in segments.iter().enumerate() {
        let converted = if let Some(name) = segment.strip_prefix(':') {
            if name.is_empty() {
                return Err("parameter without a name".to_owned());
            }
            format!("{{{name}}}")
        } else if let Some(name) = segment.strip_prefix('*') {
            if i != last || name.is_empty() {
                return Err("a `*name` segment must be last and named".to_owned());
            }
            format!("{{*{name}}}")
        } else {
            segment.replace('{', "{{").replace('}', "}}")
        };
        out.push(converted);
    }
    Ok(out.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn conn() -> ConnectionHandle {
        ConnectionHandle::for_tests(16)
    }

    async fn call(table: &RouteTable, route: &str, data: Value) -> CallResult {
        table.call(&conn(), route, Some(data), false).await
    }

    fn echo_params() -> Router {
        Router::new()
    }

    #[tokio::test]
    async fn routes_by_name_and_decodes_typed_payloads() {
        #[derive(serde::Deserialize)]
        struct Add {
            a: i64,
            b: i64,
        }
        let table = Router::new()
            .procedure(
                "add",
                |_ctx, p: Add| async move { Ok::<_, ApiError>(p.a + p.b) },
            )
            .procedure("nothing", |_ctx, _: ()| async { Ok::<_, ApiError>(()) })
            .build()
            .unwrap();
        assert_eq!(
            call(&table, "add", json!({"a":1,"b":2})).await,
            Ok(Some(json!(3)))
        );
        assert_eq!(table.call(&conn(), "nothing", None, false).await, Ok(None));
        let err = call(&table, "add", json!({"a":"x"})).await.unwrap_err();
        assert_eq!(err.name, "BadRequest");
        let err = call(&table, "missing", json!(1)).await.unwrap_err();
        assert_eq!(err, ApiError::not_found("Unknown procedure 'missing'"));
    }

    #[tokio::test]
    async fn raw_procedures_see_absent_data() {
        let table = Router::new()
            .procedure_raw("echo", |_ctx, data| async move { Ok(data) })
            .build()
            .unwrap();
        assert_eq!(table.call(&conn(), "echo", None, false).await, Ok(None));
        assert_eq!(
            call(&table, "echo", Value::Null).await,
            Ok(Some(Value::Null))
        );
    }

    #[tokio::test]
    async fn matches_paths_with_params_and_the_trailing_slash_distinction() {
        let songs = Router::new()
            .get("/", |_ctx, _: ()| async { Ok::<_, ApiError>("root") })
            .get("/:song", |ctx: Context, _: ()| async move {
                Ok::<_, ApiError>(format!("song {}", ctx.param("song").unwrap()))
            });
        let albums = Router::new()
            .get("/:id", |ctx: Context, _: ()| async move {
                Ok::<_, ApiError>(format!("album {}", ctx.param("id").unwrap()))
            })
            .nest("/:id/song", songs);
        let table = Router::new()
            .get("/resource", |_ctx, _: ()| async {
                Ok::<_, ApiError>("no slash")
            })
            .get("/resource/", |_ctx, _: ()| async {
                Ok::<_, ApiError>("slash")
            })
            .post(
                "/resource",
                |_ctx, v: Value| async move { Ok::<_, ApiError>(v) },
            )
            .get("/files/*rest", |ctx: Context, _: ()| async move {
                Ok::<_, ApiError>(ctx.param("rest").map(str::to_owned))
            })
            .nest("/album", albums)
            .build()
            .unwrap();
        assert_eq!(
            call(&table, "GET /resource", Value::Null).await,
            Ok(Some(json!("no slash")))
        );
        assert_eq!(
            call(&table, "GET /resource/", Value::Null).await,
            Ok(Some(json!("slash")))
        );
        assert_eq!(
            call(&table, "get /resource?x=1", Value::Null).await,
            Ok(Some(json!("no slash")))
        );
        assert_eq!(
            call(&table, "POST /resource", json!(5)).await,
            Ok(Some(json!(5)))
        );
        assert_eq!(
            call(&table, "GET /album/9", Value::Null).await,
            Ok(Some(json!("album 9")))
        );
        assert_eq!(
            call(&table, "GET /album/9/song/", Value::Null).await,
            Ok(Some(json!("root")))
        );
        assert_eq!(
            call(&table, "GET /album/9/song/3", Value::Null).await,
            Ok(Some(json!("song 3")))
        );
        assert_eq!(
            call(&table, "GET /files/a/b.txt", Value::Null).await,
            Ok(Some(json!("a/b.txt")))
        );
        assert!(!table.contains("GET /album/9/song"));
        assert!(!table.contains("DELETE /resource"));
        let err = table
            .call_path(&conn(), Method::Put, "/nope", None)
            .await
            .unwrap_err();
        assert_eq!(err.name, "NotFound");
        assert_eq!(
            table
                .call_path(&conn(), Method::Get, "/resource/", None)
                .await,
            Ok(Some(json!("slash")))
        );
    }

    #[tokio::test]
    async fn nests_names_to_any_depth() {
        let inner =
            Router::new().procedure("create", |_ctx, _: ()| async { Ok::<_, ApiError>("made") });
        let middle = Router::new().nest("song", inner);
        let table = echo_params().nest("/album/", middle).build().unwrap();
        assert_eq!(
            call(&table, "album/song/create", Value::Null).await,
            Ok(Some(json!("made")))
        );
    }

    #[tokio::test]
    async fn middleware_runs_in_order_rewrites_and_rejects() {
        let inner = Router::new()
            .middleware(|mut req: Request| async move {
                req.data = Some(json!(format!(
                    "{}+inner",
                    req.data.unwrap().as_str().unwrap()
                )));
                Ok(req)
            })
            .procedure("echo", |_ctx, v: Value| async move { Ok::<_, ApiError>(v) });
        let table = Router::new()
            .middleware(|mut req: Request| async move {
                if req.data == Some(json!("block")) {
                    return Err(ApiError::new("Blocked", "no"));
                }
                req.data = Some(json!("outer"));
                Ok(req)
            })
            .nest("x", inner)
            .procedure(
                "plain",
                |_ctx, v: Value| async move { Ok::<_, ApiError>(v) },
            )
            .build()
            .unwrap();
        assert_eq!(
            call(&table, "x/echo", json!("hi")).await,
            Ok(Some(json!("outer+inner")))
        );
        assert_eq!(
            call(&table, "plain", json!("hi")).await,
            Ok(Some(json!("outer")))
        );
        assert_eq!(
            call(&table, "x/echo", json!("block")).await,
            Err(ApiError::new("Blocked", "no"))
        );
    }

    #[tokio::test]
    async fn panics_become_internal_errors() {
        let table = Router::new()
            .procedure("boom", |_ctx, _: ()| async {
                if true {
                    panic!("kaboom");
                }
                Ok::<_, ApiError>(())
            })
            .procedure(
                "sync_boom",
                |_ctx, _: ()| -> std::future::Ready<Result<(), ApiError>> { panic!("early") },
            )
            .middleware(|req: Request| async move { Ok(req) })
            .build()
            .unwrap();
        for route in ["boom", "sync_boom"] {
            let err = call(&table, route, Value::Null).await.unwrap_err();
            assert_eq!(err.name, "InternalError", "{route}");
        }
    }

    #[test]
    fn rejects_duplicates_conflicts_and_bad_names() {
        let dup = Router::new()
            .procedure("a", |_c, _: ()| async { Ok::<_, ApiError>(()) })
            .procedure("a", |_c, _: ()| async { Ok::<_, ApiError>(()) });
        assert_eq!(
            dup.build().unwrap_err(),
            RouterError::DuplicateName("a".into())
        );
        let clash = Router::new()
            .get("/x/:id", |_c, _: ()| async { Ok::<_, ApiError>(()) })
            .get("/x/:name", |_c, _: ()| async { Ok::<_, ApiError>(()) });
        assert!(matches!(
            clash.build().unwrap_err(),
            RouterError::Path { .. }
        ));
        let bad = Router::new().procedure("GET /x", |_c, _: ()| async { Ok::<_, ApiError>(()) });
        assert!(matches!(
            bad.build().unwrap_err(),
            RouterError::InvalidName(_)
        ));
        let splat = Router::new().get("/a/*rest/b", |_c, _: ()| async { Ok::<_, ApiError>(()) });
        assert!(matches!(
            splat.build().unwrap_err(),
            RouterError::Path { .. }
        ));
    }

    #[test]
    fn converts_patterns() {
        assert_eq!(to_matchit("/a/:id/b"), Ok("/a/{id}/b".into()));
        assert_eq!(to_matchit("/a/{literal}"), Ok("/a/{{literal}}".into()));
        assert_eq!(join_paths("/a", "/"), "/a/");
        assert_eq!(join_paths("", "/x"), "/x");
    }
}
