//! CRUD with no handler code: a `note` resource declared in configuration, stored in SQLite,
//! with live change events on the `note` and `note/<id>` channels.
//!
//! ```sh
//! cargo run -p sockyard --example crud_sqlite
//! cargo run -p sockyard-cli -- call ws://127.0.0.1:8000/socketcluster/ note/create '{"text":"hi"}'
//! cargo run -p sockyard-cli -- call ws://127.0.0.1:8000/socketcluster/ "GET /note/1"
//! ```

use sockyard::{Config, ResourcesBuilder, Router, Server};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt::init();
    let config = Config::from_toml_str(
        r#"
        [auth]
        key = "replace-with-a-long-random-secret"

        [[endpoint]]
        path = "/socketcluster/"

        [storage]
        url = "sqlite://notes.db"

        [[resource]]
        name = "note"
        [resource.fields]
        text = { type = "string", required = true, max_length = 500 }
        done = { type = "boolean" }
        "#,
        "CRUD example",
    )?;
    // Opens (and creates) the database, and the table from the declaration.
    let resources = ResourcesBuilder::from_declarations(&config.resources, &config.storage)
        .open_storage(&config.storage)
        .await?;
    // The resources' routes (`note/create`, `GET /note/:id`, …) are mounted by the builder.
    let server = Server::builder(&config)
        .routes(Router::new().build()?)
        .resources(resources)
        .build()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:8000").await?;
    println!("notes on ws://{}/socketcluster/", listener.local_addr()?);
    server
        .serve(listener, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
