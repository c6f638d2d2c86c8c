//! Shared helpers for integration tests: a real server on 127.0.0.1:0 with a test router, and a
//! raw WebSocket client for sending exact frames.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{json, Value};
use sockyard::{ApiError, Config, Context, Router, Server, ServerHandle};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A server running in this process; it shuts down when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    pub handle: ServerHandle,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    /// `ws://127.0.0.1:PORT/socketcluster/`
    pub fn url(&self) -> String {
        format!("ws://{}/socketcluster/", self.addr)
    }

    /// Triggers a graceful shutdown and waits for `serve` to return.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Starts a server with `config` (its listen address is ignored) and the test router.
pub async fn start_with(config: Config) -> TestServer {
    start_with_router(config, test_router()).await
}

/// Starts a server with the default config and the test router.
pub async fn start() -> TestServer {
    start_with(Config::default()).await
}

/// Starts a server with `config` and `router`.
pub async fn start_with_router(config: Config, router: Router) -> TestServer {
    start_server(Server::new(&config, router.build().expect("routes")).expect("server")).await
}

/// Starts a server from a builder.
pub async fn start_built(builder: sockyard::ServerBuilder) -> TestServer {
    start_server(builder.build().expect("server")).await
}

/// Serves `server` on 127.0.0.1:0.
pub async fn start_server(server: Server) -> TestServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let handle = server.handle();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.serve(listener, async move {
        let _ = stopped.await;
    }));
    TestServer {
        addr,
        handle,
        stop: Some(stop),
        task: Some(task),
    }
}

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
                    sockyard::InvokeError::Remote(err) => err,
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

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens a raw WebSocket to `url` without any handshake.
pub async fn raw_connect(url: &str) -> Ws {
    tokio_tungstenite::connect_async(url)
        .await
        .expect("connect")
        .0
}

/// Opens a raw WebSocket and completes the SocketCluster handshake (cid 1).
pub async fn handshaken(url: &str) -> Ws {
    let mut ws = raw_connect(url).await;
    send_text(
        &mut ws,
        r##"{"event":"#handshake","data":{"authToken":null},"cid":1}"##,
    )
    .await;
    let reply = next_json(&mut ws).await;
    assert_eq!(reply["rid"], 1, "handshake reply: {reply}");
    ws
}

pub async fn send_text(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).await.expect("send");
}

/// The next text message that is not a ping, parsed as JSON (fails the test after 5 s).
pub async fn next_json(ws: &mut Ws) -> Value {
    loop {
        match next_message(ws).await {
            Message::Text(text) if text.is_empty() || text.as_str() == "#1" => continue,
            Message::Text(text) => return serde_json::from_str(text.as_str()).expect("JSON"),
            other => panic!("expected text, got {other:?}"),
        }
    }
}

/// The next message of any kind (fails the test after 5 s).
pub async fn next_message(ws: &mut Ws) -> Message {
    tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("timed out waiting for a message")
        .expect("stream ended")
        .expect("read error")
}

/// Reads until the server's close frame; returns its code and reason (1006 if the stream just
/// ended).
pub async fn expect_close(ws: &mut Ws) -> (u16, String) {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Err(_) => panic!("no close within 10 s"),
            Ok(None | Some(Err(_))) => return (1006, String::new()),
            Ok(Some(Ok(Message::Close(frame)))) => {
                return frame.map_or((1005, String::new()), |f| {
                    (u16::from(f.code), f.reason.to_string())
                })
            }
            Ok(Some(Ok(_))) => continue,
        }
    }
}

/// An echo invoke frame with the given cid and data.
pub fn echo(cid: u64, data: Value) -> String {
    json!({"event": "echo", "data": data, "cid": cid}).to_string()
}

/// Whether the test may skip when a tool is missing: only outside CI.
pub fn may_skip() -> bool {
    std::env::var("CI").map_or(true, |v| v != "true" && v != "1")
}
