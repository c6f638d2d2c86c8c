//! The router the in-process test servers run: the demo application plus procedures that
//! fail, sleep, panic, call the client back, push, close, flood, kick out, log in for a while and
//! publish, so a test can make the server do each of those on request.

use std::time::Duration;

use serde_json::{json, Value};
use sockyard::{ApiError, Context, InvokeError, Router};

/// The procedures integration and compatibility tests call:
///
/// - `echo`: returns its data unchanged;
/// - `nothing`: replies without data;
/// - `fail`: errors with `{name: "CustomError", message: "bad thing", extra: 42}`;
/// - `sleep`: waits `data` milliseconds, then returns `data`;
/// - `panic`: panics (the caller gets `InternalError`);
/// - `callClient`: invokes the caller's `clientProc` with `data` and returns its answer;
/// - `pushToMe`: transmits `serverEvent` with `data` to the caller, returns nothing;
/// - `closeMe`: closes the caller's connection with `data.code` and `data.reason`;
/// - `flood`: starts a task that transmits `data.count` events of `data.size` bytes to the
///   caller, stopping at the first refusal;
/// - `kickMe`: kicks the caller out of `data.channel` with `data.message`;
/// - `loginFor`: like the demo's `login`, with a token that expires after `data.seconds`;
/// - `publishFromServer`: publishes `data.data` on `data.channel` from Rust code;
/// - the demo's `GET /resource` (`{a, b}` → `{c}`) and `GET /fail`, and `GET /resource/`,
///   which returns `"slash"`.
pub fn test_router() -> Router {
    Router::new()
        .nest("", sockyard::demo::router())
        .procedure("nothing", |_ctx, _: Value| async { Ok::<_, ApiError>(()) })
        .procedure("fail", |_ctx, _: Value| async {
            Err::<(), _>(ApiError::new("CustomError", "bad thing").with("extra", 42))
        })
        .procedure("sleep", |_ctx, ms: u64| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok::<_, ApiError>(ms)
        })
        .procedure("panic", |_ctx, _: Value| async {
            if true {
                panic!("deliberate test panic");
            }
            Ok::<_, ApiError>(())
        })
        .procedure("callClient", |ctx: Context, data: Value| async move {
            ctx.connection()
                .invoke("clientProc", data, Duration::from_secs(5))
                .await
                .map_err(|e| match e {
                    InvokeError::Remote(err) => err,
                    other => ApiError::new("InvokeFailed", other.to_string()),
                })
        })
        .procedure("pushToMe", |ctx: Context, data: Value| async move {
            ctx.connection()
                .transmit("serverEvent", data)
                .map_err(|e| ApiError::new("PushFailed", e.to_string()))
        })
        .procedure("closeMe", |ctx: Context, data: Value| async move {
            let code = data["code"].as_u64().unwrap_or(1000) as u16;
            let reason = data["reason"].as_str().unwrap_or("").to_owned();
            ctx.connection().close(code, &reason);
            Ok::<_, ApiError>(())
        })
        .procedure("flood", |ctx: Context, data: Value| async move {
            // Pushes from another task, as a publisher would, yielding between pushes.
            let count = data["count"].as_u64().unwrap_or(0);
            let filler = "x".repeat(data["size"].as_u64().unwrap_or(16) as usize);
            let connection = ctx.connection().clone();
            tokio::spawn(async move {
                for _ in 0..count {
                    if connection.transmit("flood", &filler).is_err() {
                        break;
                    }
                    tokio::task::yield_now().await;
                }
            });
            Ok::<_, ApiError>(())
        })
        .procedure("kickMe", |ctx: Context, data: Value| async move {
            let channel = data["channel"].as_str().unwrap_or_default().to_owned();
            let message = data["message"].as_str().unwrap_or_default().to_owned();
            ctx.connection().kick_out(&channel, &message);
            Ok::<_, ApiError>(())
        })
        .procedure("loginFor", |ctx: Context, data: Value| async move {
            let seconds = data["seconds"].as_u64().unwrap_or(1);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            let mut claims = serde_json::Map::new();
            claims.insert("username".into(), data["username"].clone());
            claims.insert("exp".into(), json!(now + seconds));
            ctx.set_auth_token(claims)?;
            Ok::<_, ApiError>(json!({"username": data["username"]}))
        })
        .procedure(
            "publishFromServer",
            |ctx: Context, data: Value| async move {
                let channel = data["channel"].as_str().unwrap_or_default().to_owned();
                ctx.publish(&channel, &data["data"]).await
            },
        )
        .get("/resource/", |_ctx, _: Value| async {
            Ok::<_, ApiError>("slash")
        })
}
