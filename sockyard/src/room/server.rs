//! A server of rooms alone (what `sockyard wrap` runs): rooms at `/<room>`, `GET /health`,
//! and as asked `GET /metrics`, the room API under `/api/` and static files; optionally over
//! TLS.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::http::{self as room_http, respond, HttpResponse};
use super::Rooms;
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
    /// Serve the files of this directory.
    pub static_dir: Option<PathBuf>,
    /// Allowed `Origin`s for WebSocket upgrades (empty: any).
    pub origins: Vec<String>,
    /// How long a shutdown waits for programs to stop. Default 5 s.
    pub shutdown_timeout: Option<Duration>,
    /// How long a new connection has for its TLS handshake (with TLS on), and again for
    /// complete HTTP request headers; then it is dropped. Default 10 s.
    pub header_timeout: Option<Duration>,
}

impl RoomServerSettings {
    fn header_timeout(&self) -> Duration {
        self.header_timeout.unwrap_or(DEFAULT_HEADER_TIMEOUT)
    }
}

/// Serves rooms.
#[derive(Debug)]
pub struct RoomServer {
    rooms: Rooms,
    settings: Arc<RoomServerSettings>,
    tls: Option<Tls>,
}

impl RoomServer {
    /// A server for `rooms`, with `settings`, over TLS when `tls` is given.
    pub fn new(rooms: Rooms, settings: RoomServerSettings, tls: Option<Tls>) -> Self {
        Self {
            rooms,
            settings: Arc::new(settings),
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
        let tracker = TaskTracker::new();
        let stopping = CancellationToken::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                () = self.rooms.finished() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        let connection = HttpConnection {
                            rooms: self.rooms.clone(),
                            settings: self.settings.clone(),
                            peer,
                        };
                        let tls = self.tls.clone();
                        let stopping = stopping.clone();
                        let header_timeout = self.settings.header_timeout();
                        tracker.spawn(async move {
                            match tls {
                                Some(tls) => {
                                    if let Some(stream) = tls.accept(stream, peer, header_timeout).await {
                                        connection.serve(stream, stopping).await;
                                    }
                                }
                                None => connection.serve(stream, stopping).await,
                            }
                        });
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
        drop(listener);
        tracing::info!("shutting down: closing rooms");
        let timeout = self
            .settings
            .shutdown_timeout
            .unwrap_or(Duration::from_secs(5));
        self.rooms.shutdown(timeout).await;
        stopping.cancel();
        tracker.close();
        let _ = tokio::time::timeout(Duration::from_secs(1), tracker.wait()).await;
        Ok(())
    }
}

struct HttpConnection {
    rooms: Rooms,
    settings: Arc<RoomServerSettings>,
    peer: SocketAddr,
}

impl HttpConnection {
    async fn serve<S>(self, stream: S, stopping: CancellationToken)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let header_timeout = self.settings.header_timeout();
        let this = Arc::new(self);
        let service = hyper::service::service_fn(move |request| {
            let this = this.clone();
            async move { Ok::<_, Infallible>(this.respond(request).await) }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout);
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        tokio::pin!(connection);
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(error = %err, "HTTP connection ended with an error");
                }
            }
            () = stopping.cancelled() => {
                connection.as_mut().graceful_shutdown();
                let _ = connection.await;
            }
        }
    }

    async fn respond(&self, mut request: Request<Incoming>) -> HttpResponse {
        let path = request.uri().path().to_owned();
        if handshake::wants_upgrade(request.headers()) {
            return match room_http::room_of_path(&path) {
                Some(Ok(name)) => room_http::upgrade(
                    &self.rooms,
                    &mut request,
                    self.peer,
                    &name,
                    &self.settings.origins,
                ),
                Some(Err(refusal)) => respond(
                    StatusCode::BAD_REQUEST,
                    "text/plain",
                    format!("{}\n", refusal.message),
                ),
                None => respond(StatusCode::NOT_FOUND, "text/plain", "Not found\n"),
            };
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
            return room_http::serve_static(dir, &path).await;
        }
        respond(StatusCode::NOT_FOUND, "text/plain", "Not found\n")
    }
}
