//! Middleware: functions that run before a route's handler and may inspect, rewrite or reject
//! the call.

use std::future::Future;

use futures_util::future::BoxFuture;
use serde_json::Value;

use super::Context;
use crate::error::ApiError;

/// A call on its way to a handler, as middleware sees it.
#[derive(Debug, Clone)]
pub struct Request {
    /// The call's context (connection, route parameters).
    pub ctx: Context,
    /// The route as the client named it (`echo`, `GET /creature/7`).
    pub route: String,
    /// The payload; middleware may replace it.
    pub data: Option<Value>,
    /// Whether the call is a transmit (no reply will be sent, so a rejection is only logged).
    pub is_transmit: bool,
}

/// The future a middleware returns.
pub type MiddlewareFuture = BoxFuture<'static, Result<Request, ApiError>>;

/// Runs before handlers. Return the (possibly rewritten) request to continue, or an error to
/// reject the call: an invoke then gets that error as its reply; a rejected transmit is dropped.
///
/// Any `Fn(Request) -> impl Future<Output = Result<Request, ApiError>>` is a middleware:
///
/// ```
/// use sockyard::{ApiError, Router};
/// use sockyard::router::Request;
///
/// let router = Router::new()
///     .middleware(|req: Request| async move {
///         if req.route.starts_with("admin/") {
///             return Err(ApiError::new("Forbidden", "admins only"));
///         }
///         Ok(req)
///     })
///     .procedure("echo", |_ctx, data: serde_json::Value| async move { Ok::<_, ApiError>(data) });
/// assert!(router.build().is_ok());
/// ```
pub trait Middleware: Send + Sync + 'static {
    /// Inspects the request.
    fn handle(&self, request: Request) -> MiddlewareFuture;
}

impl<F, Fut> Middleware for F
where
    F: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Request, ApiError>> + Send + 'static,
{
    fn handle(&self, request: Request) -> MiddlewareFuture {
        Box::pin(self(request))
    }
}
