//! The baseline the benchmark compares Sockyard with: a WebSocket echo server built the plain
//! way from good parts (hyper HTTP/1 upgrade + fastwebsockets with default settings) on one
//! single-threaded tokio runtime, echoing every text and binary frame.

use std::io::Write as _;
use std::net::SocketAddr;

use anyhow::Context as _;
use bytes::Bytes;
use fastwebsockets::upgrade::{self, UpgradeFut};
use fastwebsockets::{FragmentCollector, OpCode, WebSocketError};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

/// Runs the baseline echo server on `listen` until the process is killed. Prints
/// `listening on ADDR` (the bound address, so port 0 works) as its first stdout line.
pub(crate) fn serve(listen: SocketAddr) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the runtime")?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding {listen}"))?;
        let local = listener.local_addr()?;
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening on {local}")?;
        stdout.flush()?;
        drop(stdout);
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(serve_http(stream));
                }
                Err(err) => {
                    // Out of file descriptors: wait rather than spin.
                    eprintln!("accept failed: {err}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    })
}

/// Serves one TCP connection's HTTP/1 requests, allowing it to be upgraded.
async fn serve_http(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let served = http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service_fn(accept_upgrade))
        .with_upgrades()
        .await;
    // Clients that just disconnect are normal in a benchmark; nothing to report.
    drop(served);
}

/// Answers an upgrade request with 101 and starts the echo loop once hyper hands over the
/// socket; anything else gets 400.
async fn accept_upgrade(
    mut request: Request<Incoming>,
) -> Result<Response<Empty<Bytes>>, WebSocketError> {
    if !upgrade::is_upgrade_request(&request) {
        let mut response = Response::new(Empty::new());
        *response.status_mut() = StatusCode::BAD_REQUEST;
        return Ok(response);
    }
    let (response, upgraded) = upgrade::upgrade(&mut request)?;
    tokio::spawn(async move {
        let _ = echo(upgraded).await;
    });
    Ok(response)
}

/// Echoes data frames until the peer closes (fastwebsockets answers pings and closes itself).
async fn echo(upgraded: UpgradeFut) -> Result<(), WebSocketError> {
    let mut ws = FragmentCollector::new(upgraded.await?);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
            OpCode::Close => return Ok(()),
            _ => {}
        }
    }
}
