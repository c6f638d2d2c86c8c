//! A wrapped program: every room runs its own `cat`, so whatever one client of a room sends,
//! every client of that room receives — the room's first client starts the program, the last
//! one leaving stops it. The same server `sockyard wrap cat` runs.
//!
//! ```sh
//! cargo run -p sockyard --example room
//! # then connect two WebSocket clients to ws://127.0.0.1:9000/lobby
//! ```

use sockyard::room::{RoomOptions, RoomServerSettings, Rooms};
use sockyard::RoomServer;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt::init();
    let mut options = RoomOptions::new("cat", Vec::new());
    // Tell the program who came and went.
    options.join_message = Some(r##"{"joined":"#ID"}"##.to_owned());
    options.leave_message = Some(r##"{"left":"#ID"}"##.to_owned());
    let rooms = Rooms::new(options, None)?;
    let mut settings = RoomServerSettings::default();
    // `GET /api/rooms` lists the running rooms.
    settings.api = true;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:9000").await?;
    println!("rooms on ws://{}/<room>", listener.local_addr()?);
    RoomServer::new(rooms, settings, None)
        .serve(listener, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
