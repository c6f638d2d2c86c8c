//! The idle-memory test: opens many idle connections to a server (handshaken in the
//! SocketCluster modes) and reports how much its resident memory (`VmRSS` in `/proc`) grew
//! per connection once it stopped changing.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _};
use tokio::net::TcpStream;

use crate::client::{self, Client};
use crate::frames::ScFrames;
use crate::load::Mode;
use crate::servers::Server;

/// Connections being opened at once.
const OPEN_PARALLEL: usize = 64;

/// Result of the idle-memory test for one server.
#[derive(Debug)]
pub(crate) struct IdleReport {
    /// Connections opened.
    pub(crate) connections: usize,
    /// Server VmRSS before opening them, KiB.
    pub(crate) before_kib: u64,
    /// Server VmRSS once it settled with all of them open, KiB.
    pub(crate) after_kib: u64,
    /// Connections the server had closed by the time RSS settled.
    pub(crate) closed: usize,
    /// Time taken to open them all.
    pub(crate) open_time: Duration,
}

impl IdleReport {
    /// RSS growth per connection, KiB.
    pub(crate) fn kib_per_connection(&self) -> f64 {
        (self.after_kib as f64 - self.before_kib as f64) / self.connections as f64
    }
}

/// Opens `count` idle connections to `server` and reports its RSS growth per connection,
/// printing a progress line.
pub(crate) async fn idle_rss(server: &mut Server, count: usize) -> anyhow::Result<IdleReport> {
    let report = measure_idle(server.addr, server.path, server.mode, count, server.pid)
        .await
        .with_context(|| format!("{}: idle connections", server.name));
    server.check_alive()?;
    let report = report?;
    eprintln!(
        "{}: {count} idle connections opened in {:.1} s; RSS {} → {} KiB{}",
        server.name,
        report.open_time.as_secs_f64(),
        report.before_kib,
        report.after_kib,
        if report.closed > 0 {
            format!(" ({} closed by the server!)", report.closed)
        } else {
            String::new()
        }
    );
    Ok(report)
}

/// Opens `count` idle connections to the server at `addr` (process `pid`), waits for its RSS
/// to settle, closes them again and reports the growth.
pub(crate) async fn measure_idle(
    addr: SocketAddr,
    path: &str,
    mode: Mode,
    count: usize,
    pid: u32,
) -> anyhow::Result<IdleReport> {
    ensure!(count > 0, "no connections to open");
    let before_kib = settled_rss(pid).await?;
    let opened = Instant::now();
    let streams = open_idle(addr, path, mode, count).await?;
    let open_time = opened.elapsed();
    let after_kib = settled_rss(pid).await?;
    let closed = streams.iter().filter(|s| is_closed(s)).count();
    drop(streams);
    // Let the server tear them down before the next test.
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(IdleReport {
        connections: count,
        before_kib,
        after_kib,
        closed,
        open_time,
    })
}

/// Opens `count` connections, [`OPEN_PARALLEL`] at a time, and keeps them idle. In the
/// SocketCluster modes each one completes the handshake.
async fn open_idle(
    addr: SocketAddr,
    path: &str,
    mode: Mode,
    count: usize,
) -> anyhow::Result<Vec<TcpStream>> {
    let frames = match mode.encoding(None)? {
        Some(encoding) => Some(Arc::new(ScFrames::new(encoding, "echo", "")?)),
        None => None,
    };
    client::open_many(count, OPEN_PARALLEL, |index| {
        let (path, frames) = (path.to_owned(), frames.clone());
        async move {
            let client = Client::open(addr, &path, frames.as_deref())
                .await
                .with_context(|| format!("idle connection {index}"))?;
            Ok(client.stream)
        }
    })
    .await
}

/// Whether the peer has closed `stream` (EOF or error without blocking).
fn is_closed(stream: &TcpStream) -> bool {
    let mut byte = [0; 1];
    match stream.try_read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(err) => err.kind() != std::io::ErrorKind::WouldBlock,
    }
}

/// VmRSS once it has stayed within 16 KiB over three polls 250 ms apart (at most ~10 s).
async fn settled_rss(pid: u32) -> anyhow::Result<u64> {
    let mut last = rss_kib(pid)?;
    let mut steady = 0;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = rss_kib(pid)?;
        if now.abs_diff(last) <= 16 {
            steady += 1;
            if steady == 3 {
                return Ok(now);
            }
        } else {
            steady = 0;
        }
        last = now;
    }
    Ok(last)
}

/// Resident set size of `pid` in KiB (`VmRSS` in `/proc/PID/status`).
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_vm_rss(&status).with_context(|| format!("no VmRSS in {path}"))
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_found() {
        let status = "Name:\tx\nVmPeak:\t  9000 kB\nVmRSS:\t    4321 kB\nThreads: 2\n";
        assert_eq!(parse_vm_rss(status), Some(4321));
    }

    #[test]
    fn own_process_is_readable() {
        assert!(rss_kib(std::process::id()).unwrap() > 0);
    }

    #[test]
    fn growth_per_connection() {
        let report = IdleReport {
            connections: 4,
            before_kib: 100,
            after_kib: 110,
            closed: 0,
            open_time: Duration::ZERO,
        };
        assert_eq!(report.kib_per_connection(), 2.5);
    }
}
