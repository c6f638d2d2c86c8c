//! A sockyard server running inside the test's process on a free port of 127.0.0.1, shut down
//! when dropped.

use std::net::SocketAddr;

use sockyard::{Config, Router, Server, ServerBuilder, ServerHandle};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::router::test_router;

/// A server running in this process; it shuts down when dropped.
#[derive(Debug)]
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Read access to it: metrics, subscribers, publishing, tokens.
    pub handle: ServerHandle,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    /// `ws://127.0.0.1:PORT/socketcluster/`
    pub fn url(&self) -> String {
        self.url_of("/socketcluster/")
    }

    /// `ws://127.0.0.1:PORT` + `path`.
    pub fn url_of(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
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

/// Starts a server with the default config and the test router.
pub async fn start() -> TestServer {
    start_with(Config::default()).await
}

/// Starts a server with `config` (its listen address is ignored) and the test router.
pub async fn start_with(config: Config) -> TestServer {
    start_with_router(config, test_router()).await
}

/// Starts a server with `config` and `router`.
pub async fn start_with_router(config: Config, router: Router) -> TestServer {
    start_server(Server::new(&config, router.build().expect("routes")).expect("server")).await
}

/// Starts a server from a builder.
pub async fn start_built(builder: ServerBuilder) -> TestServer {
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
