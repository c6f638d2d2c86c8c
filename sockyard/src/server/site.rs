//! What `sockyard serve` answers over HTTP: WebSocket upgrades on the endpoint paths (each then
//! run as a [`Connection`]), requests under a `[[room]]` mount, `GET /health` and
//! `GET /metrics`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{header, HeaderValue, Request, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_util::task::TaskTracker;

use super::registry::{Admission, Registry};
use crate::connection::{self, Connection};
use crate::http::origin::origin_allowed;
use crate::http::response::{respond, switching_protocols};
use crate::http::{HttpResponse, Site};
use crate::metrics::ErrorKind;
use crate::peer::ConnectionHandle;
use crate::room::http as room_http;
use crate::room::Rooms;
use crate::service::stages::UpgradeRequest;
use crate::service::Endpoint;
use crate::ws::handshake;

/// The HTTP surface of one running server.
pub(super) struct ServeSite {
    pub(super) shared: Arc<connection::Shared>,
    pub(super) registry: Arc<Registry>,
    pub(super) endpoints: HashMap<String, Arc<Endpoint>>,
    pub(super) rooms: Vec<Rooms>,
    /// Where upgraded connections run (awaited at shutdown).
    pub(super) tracker: TaskTracker,
    pub(super) started: Instant,
}

impl Site for ServeSite {
    async fn respond(&self, mut request: Request<Incoming>, peer: SocketAddr) -> HttpResponse {
        if let Some(endpoint) = self.endpoints.get(request.uri().path()) {
            return self.upgrade(&mut request, peer, endpoint.clone());
        }
        if let Some(response) = self.room_request(&mut request, peer) {
            return response;
        }
        match (request.method(), request.uri().path()) {
            (&http::Method::GET, "/health") => {
                let body = serde_json::json!({
                    "status": "ok",
                    "version": env!("CARGO_PKG_VERSION"),
                    "uptime_seconds": self.started.elapsed().as_secs_f64(),
                    "connections": self.registry.open(),
                });
                respond(StatusCode::OK, "application/json", body.to_string())
            }
            (&http::Method::GET, "/metrics") => {
                let mut text = self.shared.metrics.render();
                // Mounted rooms share one set of families; add them once, before `# EOF`.
                if let Some(rooms) = self.rooms.first() {
                    if let Some(head) = text.strip_suffix("# EOF\n") {
                        text = format!("{head}{}# EOF\n", rooms.metrics().render_families());
                    }
                }
                respond(
                    StatusCode::OK,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    text,
                )
            }
            _ => not_found(),
        }
    }
}

fn not_found() -> HttpResponse {
    respond(StatusCode::NOT_FOUND, "text/plain", "Not Found\n")
}

impl ServeSite {
    /// A request under a `[[room]]` path: an upgrade into `<path><room>`, or the room API at
    /// `<path>api/…`.
    fn room_request(
        &self,
        request: &mut Request<Incoming>,
        peer: SocketAddr,
    ) -> Option<HttpResponse> {
        let path = request.uri().path().to_owned();
        let rooms = self
            .rooms
            .iter()
            .find(|rooms| path.starts_with(&rooms.options().path))?;
        let rest = &path[rooms.options().path.len() - 1..];
        if !handshake::wants_upgrade(request.headers()) {
            return Some(match rest.strip_prefix("/api/") {
                Some(api) if request.method() == http::Method::GET => room_http::api(rooms, api),
                _ => not_found(),
            });
        }
        let origins = rooms.options().origins.clone();
        Some(room_http::upgrade_at(rooms, request, peer, rest, &origins).unwrap_or_else(not_found))
    }

    fn upgrade(
        &self,
        request: &mut Request<Incoming>,
        peer: SocketAddr,
        endpoint: Arc<Endpoint>,
    ) -> HttpResponse {
        let reject = |status: StatusCode, message: String| {
            self.shared.metrics.error(ErrorKind::upgrade_rejected);
            respond(status, "text/plain", message + "\n")
        };
        if !handshake::wants_upgrade(request.headers()) {
            let mut response = reject(
                StatusCode::UPGRADE_REQUIRED,
                "This path accepts WebSocket connections only".to_owned(),
            );
            response
                .headers_mut()
                .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            return response;
        }
        let accept = match handshake::accept(request.method(), request.version(), request.headers())
        {
            Ok(accept) => accept,
            Err(err) => return reject(StatusCode::BAD_REQUEST, err.to_string()),
        };
        if !origin_allowed(request.headers(), &endpoint.origins) {
            return reject(StatusCode::FORBIDDEN, "Origin not allowed".to_owned());
        }
        if let Some(stage) = &self.shared.services.stages.upgrade {
            let upgrade = UpgradeRequest {
                path: request.uri().path(),
                query: request.uri().query(),
                headers: request.headers(),
                peer,
            };
            if let Err(rejection) = stage(&upgrade) {
                let status =
                    StatusCode::from_u16(rejection.status).unwrap_or(StatusCode::UNAUTHORIZED);
                return reject(status, rejection.message);
            }
        }
        let Some(admission) = self.registry.admit(peer.ip()) else {
            return reject(
                StatusCode::SERVICE_UNAVAILABLE,
                "Connection limit reached".to_owned(),
            );
        };
        let on_upgrade = hyper::upgrade::on(request);
        let socket = Socket {
            shared: self.shared.clone(),
            registry: self.registry.clone(),
            endpoint,
            peer,
            admission,
        };
        self.tracker.spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => socket.run(upgraded).await,
                Err(err) => tracing::debug!(error = %err, "upgrade failed"),
            }
        });
        switching_protocols(&accept)
    }
}

/// An upgraded WebSocket about to run on an endpoint.
struct Socket {
    shared: Arc<connection::Shared>,
    registry: Arc<Registry>,
    endpoint: Arc<Endpoint>,
    peer: SocketAddr,
    admission: Admission,
}

impl Socket {
    /// Registers the connection, runs it to its end, and cleans up after it.
    async fn run(self, upgraded: hyper::upgrade::Upgraded) {
        let (shared, peer) = (self.shared, self.peer);
        let handle = ConnectionHandle::new(
            new_socket_id(),
            peer,
            self.endpoint.format.clone(),
            shared.limits.queue_limits(),
            shared.services.common.clone(),
        );
        let registration = self.registry.register(handle.clone(), self.admission);
        shared.metrics.connections.inc();
        shared.metrics.connections_open.inc();
        tracing::debug!(connection = handle.id(), %peer, "WebSocket open");
        // The socket itself, not hyper's wrapper, so that an idle connection holds no buffer.
        // The TLS and fallback transports run in boxed futures, so that a plain connection's
        // state does not make room for theirs.
        let endpoint = self.endpoint;
        let ending = match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(taken) => {
                let io = taken.io.into_inner();
                run_on(io, taken.read_buf, &handle, &shared, &endpoint).await
            }
            Err(upgraded) => match upgraded.downcast::<TokioIo<TlsStream<TcpStream>>>() {
                Ok(taken) => {
                    let io = taken.io.into_inner();
                    Box::pin(run_on(io, taken.read_buf, &handle, &shared, &endpoint)).await
                }
                Err(upgraded) => {
                    let io = TokioIo::new(upgraded);
                    Box::pin(run_on(io, Bytes::new(), &handle, &shared, &endpoint)).await
                }
            },
        };
        shared
            .services
            .common
            .exchange
            .unsubscribe_all(&handle)
            .await;
        shared.metrics.connections_open.dec();
        drop(registration);
        tracing::debug!(connection = handle.id(), code = ending.code, reason = %ending.reason, "WebSocket closed");
    }
}

/// Runs the connection on `io`, starting with the bytes hyper had already read.
async fn run_on<S>(
    io: S,
    read_buf: Bytes,
    handle: &ConnectionHandle,
    shared: &Arc<connection::Shared>,
    endpoint: &Arc<Endpoint>,
) -> connection::Ending
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let connection = Connection::new(
        io,
        &read_buf,
        handle.clone(),
        shared.clone(),
        endpoint.clone(),
    );
    // `read_buf` shares hyper's whole read buffer: let it go before the connection settles
    // into its (buffer-free) idle state.
    drop(read_buf);
    connection.run().await
}

/// A socket id as SocketCluster makes them: 20 URL-safe base64 characters (15 random bytes).
fn new_socket_id() -> String {
    use base64::Engine as _;
    let bytes: [u8; 15] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
