//! A chat: clients sign in with a name, then say things in rooms that everyone may read and
//! only signed-in clients may write to. Shows channels, auth tokens, access rules and a
//! publish-in stage that stamps every message with its sender.
//!
//! ```sh
//! cargo run -p sockyard --example chat
//! ```
//!
//! With the official JavaScript client:
//!
//! ```js
//! const socket = require('socketcluster-client').create({ hostname: '127.0.0.1', port: 8000 });
//! await socket.invoke('login', { name: 'ann' });
//! (async () => { for await (const m of socket.subscribe('room/lobby')) console.log(m); })();
//! await socket.invokePublish('room/lobby', { text: 'hello' });
//! ```

use serde::Deserialize;
use serde_json::{json, Value};
use sockyard::auth::Claims;
use sockyard::stages::ChannelRequest;
use sockyard::{ApiError, Config, Context, Router, Server, Stages};

#[derive(Deserialize)]
struct Login {
    name: String,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt::init();
    let config = Config::from_toml_str(
        r#"
        [auth]
        key = "replace-with-a-long-random-secret"

        [[endpoint]]
        path = "/socketcluster/"

        [[access.channel]]
        pattern = "room/*"
        subscribe = "public"
        publish = "authenticated"
        "#,
        "chat example",
    )?;
    let routes = Router::new()
        .procedure("login", |ctx: Context, login: Login| async move {
            let name = login.name.trim().to_owned();
            if name.is_empty() {
                return Err(ApiError::bad_request("a name is required"));
            }
            let mut claims = Claims::new();
            claims.insert("name".to_owned(), Value::String(name.clone()));
            ctx.set_auth_token(claims)?;
            Ok(json!({ "name": name }))
        })
        .build()?;
    // Every message carries who sent it, whatever the client wrote.
    let stages = Stages::new().publish_in(|mut request: ChannelRequest| async move {
        let from = request
            .connection
            .claims()
            .and_then(|claims| claims.get("name").cloned())
            .unwrap_or(Value::Null);
        let text = request
            .data
            .as_ref()
            .and_then(|data| data.get("text"))
            .cloned()
            .unwrap_or(Value::Null);
        request.data = Some(json!({ "from": from, "text": text }));
        Ok(request)
    });
    let server = Server::builder(&config)
        .routes(routes)
        .stages(stages)
        .build()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:8000").await?;
    println!("chat on ws://{}/socketcluster/", listener.local_addr()?);
    server
        .serve(listener, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
