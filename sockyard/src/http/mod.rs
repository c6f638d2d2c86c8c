//! The HTTP front every server shares — `sockyard serve` and `sockyard wrap` alike: one accept
//! loop, TLS with its handshake deadline, HTTP/1 with a header deadline and graceful stop, and
//! the tasks behind it tracked for shutdown. What a request gets is up to the [`Site`] it
//! serves; `response.rs` builds the answers, including the 101 of an upgrade, and `origin.rs`
//! checks the `Origin` of upgrades against an allow-list.

pub(crate) mod origin;
pub(crate) mod response;
mod settings;
mod throttle;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::tls::Tls;
pub(crate) use response::HttpResponse;
pub use settings::{LogFormat, ServerConfig};
use throttle::Throttle;

/// The shortest time between two logged accept failures.
const ACCEPT_FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// What answers the requests a front accepts.
pub(crate) trait Site: Send + Sync + 'static {
    /// Answers one request from `peer`. An upgrade answered 101 starts its connection on a task
    /// of the site's own (awaited at shutdown).
    fn respond(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> impl Future<Output = HttpResponse> + Send;
}

/// The accepting side of one server: its TLS, its header deadline and the tasks it started.
#[derive(Debug)]
pub(crate) struct Front {
    tls: Option<Tls>,
    header_timeout: Duration,
    /// Every task the front and its site started (HTTP connections, upgraded sockets).
    tracker: TaskTracker,
    /// Cancelled to stop the HTTP connections gracefully.
    stopping: CancellationToken,
}

impl Front {
    /// A front answering over TLS when `tls` is given; a new connection has `header_timeout` for
    /// its TLS handshake and again for its request headers.
    pub(crate) fn new(tls: Option<Tls>, header_timeout: Duration) -> Self {
        Self {
            tls,
            header_timeout,
            tracker: TaskTracker::new(),
            stopping: CancellationToken::new(),
        }
    }

    /// The tracker a site spawns its upgraded connections on, so shutdown waits for them.
    pub(crate) fn tracker(&self) -> &TaskTracker {
        &self.tracker
    }

    /// Accepts connections on `listener` for `site` until `until` completes.
    pub(crate) async fn accept<T: Site>(
        &self,
        listener: TcpListener,
        site: Arc<T>,
        until: impl Future<Output = ()>,
    ) {
        tokio::pin!(until);
        let mut failures = Throttle::new(ACCEPT_FAILURE_LOG_INTERVAL);
        loop {
            tokio::select! {
                () = &mut until => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        if let Some(failures) = failures.succeed() {
                            tracing::info!(failures, "accepting connections again");
                        }
                        let _ = stream.set_nodelay(true);
                        let connection = HttpConnection {
                            site: site.clone(),
                            peer,
                            header_timeout: self.header_timeout,
                            stopping: self.stopping.clone(),
                        };
                        match self.tls.clone() {
                            None => {
                                self.tracker.spawn(connection.serve(stream));
                            }
                            Some(tls) => {
                                let deadline = self.header_timeout;
                                self.tracker.spawn(async move {
                                    if let Some(stream) = tls.accept(stream, peer, deadline).await {
                                        connection.serve(stream).await;
                                    }
                                });
                            }
                        }
                    }
                    Err(err) => {
                        // Out of file descriptors and similar: back off instead of spinning,
                        // and say so once a second (`suppressed`: failures not logged since).
                        if let Some(suppressed) = failures.occur(Instant::now()) {
                            tracing::warn!(error = %err, suppressed, "accept failed");
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
    }

    /// Ends the HTTP connections gracefully (requests in progress are answered); upgraded
    /// sockets are the site's to close.
    pub(crate) fn stop_http(&self) {
        self.stopping.cancel();
    }

    /// Waits at most `timeout` for every task to finish; false if some were still running.
    pub(crate) async fn drain(&self, timeout: Duration) -> bool {
        self.tracker.close();
        tokio::time::timeout(timeout, self.tracker.wait())
            .await
            .is_ok()
    }
}

/// One accepted connection, served as HTTP/1.1 until it upgrades or ends.
struct HttpConnection<T> {
    site: Arc<T>,
    peer: SocketAddr,
    header_timeout: Duration,
    stopping: CancellationToken,
}

impl<T: Site> HttpConnection<T> {
    async fn serve<S>(self, stream: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (site, peer) = (self.site, self.peer);
        let service = hyper::service::service_fn(move |request| {
            let site = site.clone();
            async move { Ok::<_, Infallible>(site.respond(request, peer).await) }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_timeout);
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
            () = self.stopping.cancelled() => {
                connection.as_mut().graceful_shutdown();
                let _ = connection.await;
            }
        }
    }
}
