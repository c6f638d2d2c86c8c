//! Handlers: async functions taking a [`Context`] and a typed payload, erased to one boxed type;
//! panics become `InternalError` replies instead of taking anything else down.

use std::future::Future;
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;

use futures_util::future::BoxFuture;
use futures_util::FutureExt as _;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::Context;
use crate::error::ApiError;

/// The outcome of a call: reply data (`None` means "no data", as a JavaScript `undefined`) or
/// an error.
pub type CallResult = Result<Option<Value>, ApiError>;

/// A boxed, sendable call future.
pub type CallFuture = BoxFuture<'static, CallResult>;

/// A handler with its types erased, as stored in the route table.
pub(crate) trait ErasedHandler: Send + Sync + 'static {
    fn call(&self, ctx: Context, data: Option<Value>) -> CallFuture;
}

/// Wraps a typed handler `Fn(Context, T) -> impl Future<Output = Result<R, E>>`.
pub(crate) struct Typed<F, T, R, E> {
    f: F,
    types: PhantomData<fn(T) -> (R, E)>,
}

impl<F, T, R, E> Typed<F, T, R, E> {
    pub(crate) fn new(f: F) -> Self {
        Self {
            f,
            types: PhantomData,
        }
    }
}

impl<F, Fut, T, R, E> ErasedHandler for Typed<F, T, R, E>
where
    F: Fn(Context, T) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, E>> + Send + 'static,
    T: DeserializeOwned + 'static,
    R: Serialize + 'static,
    E: Into<ApiError> + 'static,
{
    fn call(&self, ctx: Context, data: Option<Value>) -> CallFuture {
        let payload = match T::deserialize(data.unwrap_or(Value::Null)) {
            Ok(payload) => payload,
            Err(err) => {
                let err = ApiError::bad_request(format!("Invalid payload: {err}"));
                return Box::pin(std::future::ready(Err(err)));
            }
        };
        let future = match std::panic::catch_unwind(AssertUnwindSafe(|| (self.f)(ctx, payload))) {
            Ok(future) => future,
            Err(panic) => return Box::pin(std::future::ready(Err(panicked(&*panic)))),
        };
        Box::pin(guard(async move {
            let output = future.await.map_err(Into::into)?;
            match serde_json::to_value(output) {
                Ok(Value::Null) => Ok(None),
                Ok(value) => Ok(Some(value)),
                Err(err) => {
                    tracing::error!(error = %err, "handler result could not be serialised");
                    Err(ApiError::internal("Handler result could not be encoded"))
                }
            }
        }))
    }
}

/// Wraps a raw handler that sees the payload exactly as sent (`None` when left out) and decides
/// whether its reply carries data.
pub(crate) struct Raw<F>(pub(crate) F);

impl<F, Fut> ErasedHandler for Raw<F>
where
    F: Fn(Context, Option<Value>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = CallResult> + Send + 'static,
{
    fn call(&self, ctx: Context, data: Option<Value>) -> CallFuture {
        match std::panic::catch_unwind(AssertUnwindSafe(|| (self.0)(ctx, data))) {
            Ok(future) => Box::pin(guard(future)),
            Err(panic) => Box::pin(std::future::ready(Err(panicked(&*panic)))),
        }
    }
}

/// Turns a panic while polling `future` into an `InternalError` result.
pub(crate) fn guard(
    future: impl Future<Output = CallResult> + Send + 'static,
) -> impl Future<Output = CallResult> + Send + 'static {
    AssertUnwindSafe(future)
        .catch_unwind()
        .map(|outcome| outcome.unwrap_or_else(|panic| Err(panicked(&*panic))))
}

/// The message of the `InternalError` a panicking handler produces.
pub(crate) const PANIC_MESSAGE: &str = "The handler failed unexpectedly";

fn panicked(panic: &(dyn std::any::Any + Send)) -> ApiError {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned());
    tracing::error!(panic = %message, "handler panicked");
    ApiError::internal(PANIC_MESSAGE)
}
