//! The smallest Sockyard server: one SocketCluster endpoint and an `echo` procedure.
//!
//! ```sh
//! cargo run -p sockyard --example echo
//! cargo run -p sockyard-cli -- call ws://127.0.0.1:8000/socketcluster/ echo '{"hello":"world"}'
//! ```

use sockyard::{ApiError, Config, Context, Router, Server};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt::init();
    // One endpoint and a key of our own, instead of the demo application's defaults.
    let config = Config::from_toml_str(
        r#"
        [auth]
        key = "replace-with-a-long-random-secret"

        [[endpoint]]
        path = "/socketcluster/"
        "#,
        "echo example",
    )?;
    let routes = Router::new()
        .procedure(
            "echo",
            |_ctx: Context, data: serde_json::Value| async move { Ok::<_, ApiError>(data) },
        )
        .build()?;
    let listener = tokio::net::TcpListener::bind(listen_address()).await?;
    println!("echo on ws://{}/socketcluster/", listener.local_addr()?);
    Server::new(&config, routes)?
        .serve(listener, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

/// `SOCKYARD_LISTEN`, or 127.0.0.1:8000.
fn listen_address() -> String {
    std::env::var("SOCKYARD_LISTEN").unwrap_or_else(|_| "127.0.0.1:8000".to_owned())
}
