//! The demo application that `sockyard serve` runs with no configuration: a small contract that
//! examples, documentation and black-box tests rely on — its procedures, and the endpoints,
//! resources and access rule of the default configuration.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::auth::access::{AccessRules, ChannelRule, Pattern, Rule, AUTH_ERROR};
use crate::auth::Claims;
use crate::codec::Codec;
use crate::error::ApiError;
use crate::protocol::Dialect;
use crate::resource::{FieldDef, FieldType, ResourceDef};
use crate::router::{Context, Router};
use crate::service::{ApiRoute, Authorizer, EndpointConfig, ProtobufConfig};

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

/// The demo's resources: `creature {name, age ≥ 0}`, `album {title}`, `song {title}` under
/// `album`.
pub(crate) fn resources() -> Vec<ResourceDef> {
    vec![
        ResourceDef::new(
            "creature",
            [
                ("name", FieldDef::new(FieldType::String).required()),
                ("age", FieldDef::new(FieldType::Integer).min(0.0)),
            ],
        ),
        ResourceDef::new(
            "album",
            [("title", FieldDef::new(FieldType::String).required())],
        ),
        ResourceDef::new(
            "song",
            [("title", FieldDef::new(FieldType::String).required())],
        )
        .parent("album"),
    ]
}

/// `[demo]`: whether the demo procedures are served.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct DemoConfig {
    /// Register the demo procedures (`echo`, `login`, `whoami`). `login` gives a token to anyone
    /// who asks: never enable it where that matters. Default `true`.
    pub enabled: bool,
}

/// The demo's endpoints: SocketCluster with JSON at `/socketcluster/`, CTProto at `/ctproto`,
/// MessagePack at `/socketcluster-minbin/`, protobuf at `/socketcluster-protobuf/` and raw
/// WebSocket at `/echo`.
pub(crate) fn endpoints() -> Vec<EndpointConfig> {
    vec![
        EndpointConfig::default(),
        ctproto_endpoint(),
        minbin_endpoint(),
        protobuf_endpoint(),
        echo_endpoint(),
    ]
}

/// The demo's raw endpoint at `/echo`: every message calls `echo`, so text comes back as text
/// and binary as binary, unchanged.
fn echo_endpoint() -> EndpointConfig {
    EndpointConfig {
        path: "/echo".to_owned(),
        dialect: Dialect::Raw,
        route: Some("echo".to_owned()),
        ..EndpointConfig::default()
    }
}

/// The demo's CTProto endpoint at `/ctproto`, accepting `{token}` or `{username}`.
fn ctproto_endpoint() -> EndpointConfig {
    EndpointConfig {
        path: "/ctproto".to_owned(),
        dialect: Dialect::CtProto,
        authorizer: Authorizer::TokenOrUsername,
        ..EndpointConfig::default()
    }
}

/// The demo's MessagePack endpoint (as `sc-codec-min-bin`).
fn minbin_endpoint() -> EndpointConfig {
    EndpointConfig {
        path: "/socketcluster-minbin/".to_owned(),
        codec: Codec::Msgpack,
        ..EndpointConfig::default()
    }
}

/// The `.proto` text of the demo's protobuf endpoint (socketcluster-api's example).
pub const DEMO_PROTO: &str = include_str!("../config/demo.proto");

/// The demo's protobuf endpoint: socketcluster-api's `#api` with `GET /resource` answering
/// `.app.ResponseMessage` and `GET /fail` failing with `.app.SomeError`.
fn protobuf_endpoint() -> EndpointConfig {
    let route = |path: &str| ApiRoute {
        method: "GET".to_owned(),
        path: path.to_owned(),
        response: Some(".app.ResponseMessage".to_owned()),
        error: Some(".app.SomeError".to_owned()),
    };
    EndpointConfig {
        path: "/socketcluster-protobuf/".to_owned(),
        codec: Codec::Protobuf,
        protobuf: ProtobufConfig {
            files: Vec::new(),
            inline: vec![DEMO_PROTO.to_owned()],
            api: true,
            events: Vec::new(),
            routes: [route("/resource"), route("/fail")]
                .into_iter()
                .chain(creature_routes())
                .collect(),
        },
        ..EndpointConfig::default()
    }
}

/// `#api` routes for the demo's `creature` resource.
fn creature_routes() -> Vec<ApiRoute> {
    [
        ("POST", "/creature", ".app.Creature"),
        ("GET", "/creature", ".app.CreaturePage"),
        ("GET", "/creature/:id", ".app.Creature"),
        ("PUT", "/creature/:id", ".app.Creature"),
        ("PATCH", "/creature/:id", ".app.Creature"),
        ("DELETE", "/creature/:id", ".app.Creature"),
    ]
    .into_iter()
    .map(|(method, path, response)| ApiRoute {
        method: method.to_owned(),
        path: path.to_owned(),
        response: Some(response.to_owned()),
        error: Some(".app.ResourceError".to_owned()),
    })
    .collect()
}

/// The demo's rule: channels named `private/…` need an authenticated connection.
pub(crate) fn access_rules() -> AccessRules {
    AccessRules {
        channels: vec![ChannelRule {
            pattern: Pattern::new("private/*"),
            subscribe: Rule::Authenticated,
            publish: Rule::Authenticated,
        }],
        routes: Vec::new(),
    }
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self { enabled: true }
    }
}
