//! A server of rooms alone (what `sockyard wrap` runs): the shared HTTP front with a room mount
//! at the root — rooms at `/<room>`, `GET /health`, and as asked `GET /metrics`, the room API
//! under `/api/` and static files; optionally over TLS.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, StatusCode};
use hyper::body::Incoming;
use tokio::net::TcpListener;

use super::http::{self as room_http};
use super::Rooms;
use crate::http::response::respond;
use crate::http::{Front, HttpResponse, Site};
use crate::tls::Tls;
use crate::ws::handshake;

/// Time allowed for a request's headers (and a TLS handshake) when the settings name none.
const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// What the HTTP side of a room server offers.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct RoomServerSettings {
    /// Serve the room API under `/api/`.
    pub api: bool,
    /// Serve `/metrics`.
    pub metrics: bool,
    /// Serve the files of this directory (not those symbolic links inside it lead out of it,
    /// unless `follow_symlinks`).
    pub static_dir: Option<PathBuf>,
    /// Serve files of `static_dir` that symbolic links lead to outside it.
    pub follow_symlinks: bool,
    /// Allowed `Origin`s for WebSocket upgrades (empty: any).
    pub origins: Vec<String>,
    /// How long a shutdown waits for programs to stop. Default 5 s.
    pub shutdown_timeout: Option<Duration>,
    /// How long a new connection has for its TLS handshake (with TLS on), and again for
    /// complete HTTP request headers; then it is dropped. Default 10 s.
    pub header_timeout: Option<Duration>,
}

/// Serves rooms.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use sockyard::room::{RoomOptions, RoomServerSettings, Rooms};
/// use sockyard::RoomServer;
///
/// let rooms = Rooms::new(RoomOptions::new("cat", Vec::new()), None)?;
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:9000").await?;
/// RoomServer::new(rooms, RoomServerSettings::default(), None)
///     .serve(listener, async { let _ = tokio::signal::ctrl_c().await; })
///     .await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct RoomServer {
    site: Arc<RoomSite>,
    tls: Option<Tls>,
}

/// The HTTP surface of a room server.
#[derive(Debug)]
struct RoomSite {
    rooms: Rooms,
    settings: RoomServerSettings,
}

impl RoomServer {
    /// A server for `rooms`, with `settings`, over TLS when `tls` is given.
    pub fn new(rooms: Rooms, settings: RoomServerSettings, tls: Option<Tls>) -> Self {
        Self {
            site: Arc::new(RoomSite { rooms, settings }),
            tls,
        }
    }

    /// Serves `listener` until `shutdown` completes (or a `oneshot` server has served its
    /// client), then closes every client with 1001 and stops the programs gracefully.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let settings = &self.site.settings;
        let header_timeout = settings.header_timeout.unwrap_or(DEFAULT_HEADER_TIMEOUT);
        let front = Front::new(self.tls, header_timeout);
        let rooms = self.site.rooms.clone();
        let until = async {
            tokio::select! {
                () = shutdown => {}
                () = rooms.finished() => {}
            }
        };
        front.accept(listener, self.site.clone(), until).await;
        tracing::info!("shutting down: closing rooms");
        let timeout = settings.shutdown_timeout.unwrap_or(Duration::from_secs(5));
        rooms.shutdown(timeout).await;
        front.stop_http();
        front.drain(Duration::from_secs(1)).await;
        Ok(())
    }
}

fn not_found() -> HttpResponse {
    respond(StatusCode::NOT_FOUND, "text/plain", "Not found\n")
}

impl Site for RoomSite {
    async fn respond(&self, mut request: Request<Incoming>, peer: SocketAddr) -> HttpResponse {
        let path = request.uri().path().to_owned();
        if handshake::wants_upgrade(request.headers()) {
            let origins = &self.settings.origins;
            return room_http::upgrade_at(&self.rooms, &mut request, peer, &path, origins)
                .unwrap_or_else(not_found);
        }
        if request.method() != http::Method::GET && request.method() != http::Method::HEAD {
            return respond(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                "Method not allowed\n",
            );
        }
        if path == "/health" {
            let body = serde_json::json!({
                "status": "ok",
                "version": env!("CARGO_PKG_VERSION"),
                "rooms": self.rooms.list().len(),
                "connections": self.rooms.connections(),
            });
            return respond(StatusCode::OK, "application/json", body.to_string());
        }
        if path == "/metrics" && self.settings.metrics {
            return respond(
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                self.rooms.metrics().render(),
            );
        }
        if let Some(rest) = path.strip_prefix("/api/") {
            if self.settings.api {
                return room_http::api(&self.rooms, rest);
            }
        }
        if let Some(dir) = &self.settings.static_dir {
            return room_http::serve_static(dir, &path, self.settings.follow_symlinks).await;
        }
        not_found()
    }
}
