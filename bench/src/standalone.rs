//! The subcommands that measure one server already running, given its URL: `load` (echo
//! load), `idle` (memory per idle connection) and `fanout-load` (one publisher, many
//! subscribers).

use std::net::SocketAddr;

use anyhow::Context as _;

use crate::args::{EchoArgs, PublisherArgs, Timing, FANOUT_WARMUP_HELP};
use crate::fanout::{self, FanoutSpec};
use crate::idle;
use crate::load::{self, LoadSpec, Mode};
use crate::runtime;

/// Options of the standalone `load` command.
#[derive(Debug, clap::Args)]
#[command(
    mut_arg("payload_bytes", |arg| arg.help("Payload bytes")),
    mut_arg("stall_timeout", |arg| arg.help(
        "Seconds without the expected replies before failing as stalled"
    )),
)]
pub(crate) struct LoadArgs {
    /// Server URL, e.g. ws://127.0.0.1:8000/socketcluster/
    url: String,
    /// raw: echo frames as they are; sc: SocketCluster (JSON) handshake then `echo` invokes;
    /// msgpack, protobuf: the same in those codecs (protobuf with the default config's schema).
    #[arg(long, value_enum, default_value = "sc")]
    mode: Mode,
    /// Connections.
    #[arg(long, default_value_t = 50)]
    connections: usize,
    /// Messages in flight per connection (written together).
    #[arg(long, default_value_t = 10)]
    window: usize,
    /// The echo messages.
    #[command(flatten)]
    echo: EchoArgs,
    /// The warm-up and the measured window.
    #[command(flatten)]
    timing: Timing,
    /// Server process to sample CPU time from.
    #[arg(long)]
    server_pid: Option<u32>,
}

/// Options of the standalone `idle` command.
#[derive(Debug, clap::Args)]
pub(crate) struct IdleArgs {
    /// Server URL, e.g. ws://127.0.0.1:8000/socketcluster/
    url: String,
    /// raw: upgrade only; sc, msgpack, protobuf: upgrade and SocketCluster handshake in that
    /// codec.
    #[arg(long, value_enum, default_value = "sc")]
    mode: Mode,
    /// Connections to open.
    #[arg(long, default_value_t = 5000)]
    connections: usize,
    /// The server's process id (its VmRSS is read from /proc).
    #[arg(long)]
    server_pid: u32,
}

/// Options of the standalone `fanout-load` command.
#[derive(Debug, clap::Args)]
#[command(mut_arg("warmup", |arg| arg.help(FANOUT_WARMUP_HELP)))]
pub(crate) struct FanoutLoadArgs {
    /// Server URL, e.g. ws://127.0.0.1:8000/socketcluster/
    url: String,
    /// Subscriber connections.
    #[arg(long, default_value_t = 1000)]
    subscribers: usize,
    /// The publisher's window and patience.
    #[command(flatten)]
    publisher: PublisherArgs,
    /// The window search keeps only windows whose p99 latency stays within this many µs.
    #[arg(long)]
    latency_budget_us: Option<u64>,
    /// Publications per second (within the window); default: as fast as the window allows.
    #[arg(long)]
    rate: Option<f64>,
    /// The warm-up and the measured window.
    #[command(flatten)]
    timing: Timing,
    /// Server process to sample CPU time from.
    #[arg(long)]
    server_pid: Option<u32>,
}

/// Runs `load` and prints what was measured.
pub(crate) fn load(args: &LoadArgs) -> anyhow::Result<()> {
    let (addr, path) = parse_ws_url(&args.url)?;
    let spec = LoadSpec {
        addr,
        path,
        mode: args.mode,
        schema: None,
        connections: args.connections,
        window: args.window,
        echo: args.echo,
        timing: args.timing,
        server_pid: args.server_pid,
        pinned: None,
    };
    let report = runtime::current_thread()?.block_on(load::run(&spec))?;
    println!(
        "{:.0} msgs/s over {:.2} s; batch RTT p50 {} µs, p90 {} µs, p99 {} µs, p99.9 {} µs; \
         client {:.0}% of a core",
        report.rate(),
        report.cpu.elapsed.as_secs_f64(),
        report.latency_us.value_at_quantile(0.5),
        report.latency_us.value_at_quantile(0.9),
        report.latency_us.value_at_quantile(0.99),
        report.latency_us.value_at_quantile(0.999),
        report.cpu.client_busy() * 100.0,
    );
    if let (Some(us), Some(busy)) = (report.server_us_per_message(), report.cpu.server_busy()) {
        println!(
            "server: {us:.2} µs CPU per message, {:.0}% of a core",
            busy * 100.0
        );
    }
    if report.pings_answered + report.other_frames > 0 {
        println!(
            "pings answered: {}; other events ignored: {}",
            report.pings_answered, report.other_frames
        );
    }
    Ok(())
}

/// Runs `idle` and prints the server's RSS growth per connection.
pub(crate) fn idle(args: &IdleArgs) -> anyhow::Result<()> {
    let (addr, path) = parse_ws_url(&args.url)?;
    let idle = runtime::current_thread()?.block_on(idle::measure_idle(
        addr,
        &path,
        args.mode,
        args.connections,
        args.server_pid,
    ))?;
    println!(
        "RSS {} → {} KiB: {:.2} KB per connection ({} opened in {:.1} s, {} closed by the \
         server)",
        idle.before_kib,
        idle.after_kib,
        idle.kib_per_connection(),
        args.connections,
        idle.open_time.as_secs_f64(),
        idle.closed
    );
    Ok(())
}

/// Runs `fanout-load` and prints the one-line summary.
pub(crate) fn fanout_load(args: &FanoutLoadArgs) -> anyhow::Result<()> {
    let (addr, path) = parse_ws_url(&args.url)?;
    if let Some(rate) = args.rate {
        anyhow::ensure!(rate > 0.0, "--rate must be positive");
    }
    let spec = FanoutSpec {
        addr,
        path,
        subscribers: args.subscribers,
        publisher: args.publisher,
        latency_budget_us: args.latency_budget_us,
        rate: args.rate,
        timing: args.timing,
        server_pid: args.server_pid,
        pinned: None,
        label: format!("1×{}", args.subscribers),
    };
    let report = runtime::current_thread()?.block_on(fanout::run(&spec))?;
    println!("{} subscribers: {}", report.subscribers, report.summary());
    Ok(())
}

/// Splits `ws://HOST:PORT/path` into a socket address and a path (default `/`).
fn parse_ws_url(url: &str) -> anyhow::Result<(SocketAddr, String)> {
    let rest = url
        .strip_prefix("ws://")
        .context("only ws:// URLs are supported")?;
    let (authority, path) = match rest.find('/') {
        Some(slash) => (&rest[..slash], &rest[slash..]),
        None => (rest, "/"),
    };
    let addr = authority
        .parse()
        .with_context(|| format!("{authority:?} is not IP:PORT"))?;
    Ok((addr, path.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let (addr, path) = parse_ws_url("ws://127.0.0.1:8000/socketcluster/").unwrap();
        assert_eq!(addr.port(), 8000);
        assert_eq!(path, "/socketcluster/");
        assert_eq!(parse_ws_url("ws://127.0.0.1:1").unwrap().1, "/");
        assert!(parse_ws_url("http://x").is_err());
    }
}
