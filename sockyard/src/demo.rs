//! The demo application that `sockyard serve` runs with no configuration: a small contract that
//! examples, documentation and black-box tests rely on.

use serde::Deserialize;
use serde_json::Value;

use crate::auth::access::AUTH_ERROR;
use crate::auth::Claims;
use crate::context::Context;
use crate::error::ApiError;
use crate::router::Router;

/// The payload of `login`.
#[derive(Debug, Deserialize)]
struct Login {
    username: String,
}

/// The payload of `GET /resource`.
#[derive(Debug, Deserialize)]
struct Resource {
    #[serde(default)]
    a: String,
    #[serde(default)]
    b: String,
}

/// The demo procedures:
///
/// - `echo` returns its data unchanged (no data in, no data out);
/// - `login` with `{username}` signs a token `{username}`, sets it on the connection
///   (`#setAuthToken`) and returns `{username}`. It trusts anyone: demo only;
/// - `whoami` returns the claims of the connection's token, or an error named `AuthError`;
/// - `GET /resource` (socketcluster-api's example) takes `{a, b}` and returns `{c: "a b"}`;
/// - `GET /fail` always fails with `SomeError {code: 500, message}`.
pub fn router() -> Router {
    Router::new()
        .procedure_raw("echo", |_ctx, data| async move { Ok(data) })
        .procedure("login", |ctx: Context, login: Login| async move {
            let username = login.username.trim().to_owned();
            if username.is_empty() {
                return Err(ApiError::bad_request("username must not be empty"));
            }
            let mut claims = Claims::new();
            claims.insert("username".to_owned(), Value::String(username.clone()));
            ctx.set_auth_token(claims)?;
            Ok(serde_json::json!({ "username": username }))
        })
        .procedure("whoami", |ctx: Context, _: Value| async move {
            match ctx.claims() {
                Some(claims) => Ok(Value::Object((*claims).clone())),
                None => Err(ApiError::new(AUTH_ERROR, "Not authenticated")),
            }
        })
        .get("/resource", |_ctx, request: Resource| async move {
            let c = format!("{} {}", request.a, request.b).trim().to_owned();
            Ok::<_, ApiError>(serde_json::json!({ "c": c }))
        })
        .get("/fail", |_ctx, _: Value| async move {
            Err::<(), _>(ApiError::new("SomeError", "this route always fails").with("code", 500))
        })
}
