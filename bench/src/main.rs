//! `sockyard-bench`: measures Sockyard against a minimal fastwebsockets echo server with our
//! own lean load generator, and reports ratios (see `bench/README.md`).

mod baseline;
mod codecs;
mod fanout;
mod fanout_run;
mod frames;
mod load;
mod procfs;
mod resources;
mod run;
mod wire;
mod wrap;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

/// Benchmark tools for Sockyard.
#[derive(Debug, Parser)]
#[command(name = "sockyard-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole benchmark: baseline and Sockyard, echo and idle memory, one table.
    Run(run::RunArgs),
    /// Run the codec comparison: Sockyard's echo over JSON, MessagePack and protobuf, one
    /// server with its default endpoints, one table with ratios to JSON.
    Codecs(codecs::CodecsArgs),
    /// Run the resources benchmark: creature/create and creature/get per second over
    /// WebSocket on SQLite and PostgreSQL, beside echo on the same server.
    Resources(resources::ResourcesArgs),
    /// Run the wrap benchmark: `cat` wrapped by sockyard wrap, ScaleSocket 0.2.4 and
    /// websocketd, one room per client and one shared room, one table.
    Wrap(wrap::WrapArgs),
    /// Run the fan-out benchmark: socketcluster-server (Node) and Sockyard, one publisher to
    /// 1,000 and 10,000 subscribers, one table.
    Fanout(fanout_run::FanoutArgs),
    /// Fan-out load on one running server: subscribers on one channel and one publisher.
    FanoutLoad(FanoutLoadArgs),
    /// Run the baseline echo server (hyper + fastwebsockets defaults, one thread).
    BaselineServer {
        /// Address to listen on; port 0 picks a free port. The bound address is printed.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
    },
    /// Load one running server and print what was measured.
    Load(LoadArgs),
    /// Open idle connections to one running server and print its RSS growth per connection.
    Idle {
        /// Server URL, e.g. ws://127.0.0.1:8000/socketcluster/
        url: String,
        /// raw: upgrade only; sc, msgpack, protobuf: upgrade and SocketCluster handshake in that
        /// codec.
        #[arg(long, value_enum, default_value = "sc")]
        mode: load::Mode,
        /// Connections to open.
        #[arg(long, default_value_t = 5000)]
        connections: usize,
        /// The server's process id (its VmRSS is read from /proc).
        #[arg(long)]
        server_pid: u32,
    },
}

/// Options of the standalone `load` command.
#[derive(Debug, clap::Args)]
struct LoadArgs {
    /// Server URL, e.g. ws://127.0.0.1:8000/socketcluster/
    url: String,
    /// raw: echo frames as they are; sc: SocketCluster (JSON) handshake then `echo` invokes;
    /// msgpack, protobuf: the same in those codecs (protobuf with the default config's schema).
    #[arg(long, value_enum, default_value = "sc")]
    mode: load::Mode,
    /// Connections.
    #[arg(long, default_value_t = 50)]
    connections: usize,
    /// Messages in flight per connection (written together).
    #[arg(long, default_value_t = 10)]
    window: usize,
    /// Payload bytes.
    #[arg(long, default_value_t = 64)]
    payload_bytes: usize,
    /// Warm-up seconds.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Measured seconds.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Server process to sample CPU time from.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Seconds without the expected replies before failing as stalled.
    #[arg(long, default_value_t = 10.0)]
    stall_timeout: f64,
}

/// Options of the standalone `fanout-load` command.
#[derive(Debug, clap::Args)]
struct FanoutLoadArgs {
    /// Server URL, e.g. ws://127.0.0.1:8000/socketcluster/
    url: String,
    /// Subscriber connections.
    #[arg(long, default_value_t = 1000)]
    subscribers: usize,
    /// Publications in flight: a number, or `auto` to search for the smallest window within
    /// 5 % of the best deliveries/s.
    #[arg(long, default_value = "auto", value_parser = fanout_run::parse_window)]
    window: fanout::WindowChoice,
    /// Largest window the search tries.
    #[arg(long, default_value_t = 256)]
    max_window: usize,
    /// Seconds per window-search step.
    #[arg(long, default_value_t = 1.0)]
    step: f64,
    /// The window search keeps only windows whose p99 latency stays within this many µs.
    #[arg(long)]
    latency_budget_us: Option<u64>,
    /// Publications per second (within the window); default: as fast as the window allows.
    #[arg(long)]
    rate: Option<f64>,
    /// Seconds of load before the window search (at window 2), and again at the chosen
    /// window before the measured one.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Measured seconds.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Server process to sample CPU time from.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Seconds the publisher waits for a publication to reach everyone before giving up on it.
    #[arg(long, default_value_t = 5.0)]
    stall_timeout: f64,
}

fn main() -> ExitCode {
    match dispatch(Cli::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run(args) => run::main(&args),
        Command::Codecs(args) => codecs::main(&args),
        Command::Resources(args) => resources::main(&args),
        Command::Wrap(args) => wrap::main(&args),
        Command::Fanout(args) => fanout_run::main(&args),
        Command::FanoutLoad(args) => standalone_fanout(&args),
        Command::BaselineServer { listen } => baseline::serve(listen),
        Command::Load(args) => standalone_load(&args),
        Command::Idle {
            url,
            mode,
            connections,
            server_pid,
        } => standalone_idle(&url, mode, connections, server_pid),
    }
}

fn standalone_idle(
    url: &str,
    mode: load::Mode,
    connections: usize,
    server_pid: u32,
) -> anyhow::Result<()> {
    let (addr, path) = parse_ws_url(url)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let idle = runtime.block_on(run::measure_idle(
        addr,
        &path,
        mode,
        connections,
        server_pid,
    ))?;
    println!(
        "RSS {} → {} KiB: {:.2} KB per connection ({connections} opened in {:.1} s, {} closed \
         by the server)",
        idle.before_kib,
        idle.after_kib,
        idle.kib_per_connection(),
        idle.open_time.as_secs_f64(),
        idle.closed
    );
    Ok(())
}

fn standalone_load(args: &LoadArgs) -> anyhow::Result<()> {
    let (addr, path) = parse_ws_url(&args.url)?;
    let spec = load::LoadSpec {
        addr,
        path,
        mode: args.mode,
        schema: None,
        connections: args.connections,
        window: args.window,
        payload_bytes: args.payload_bytes,
        warmup: Duration::from_secs_f64(args.warmup),
        duration: Duration::from_secs_f64(args.duration),
        server_pid: args.server_pid,
        pinned: None,
        stall_timeout: Duration::from_secs_f64(args.stall_timeout),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(load::run(&spec))?;
    println!(
        "{:.0} msgs/s over {:.2} s; batch RTT p50 {} µs, p90 {} µs, p99 {} µs, p99.9 {} µs; \
         client {:.0}% of a core",
        report.rate(),
        report.elapsed.as_secs_f64(),
        report.latency_us.value_at_quantile(0.5),
        report.latency_us.value_at_quantile(0.9),
        report.latency_us.value_at_quantile(0.99),
        report.latency_us.value_at_quantile(0.999),
        report.client_busy() * 100.0,
    );
    if let (Some(us), Some(busy)) = (report.server_us_per_message(), report.server_busy()) {
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

fn standalone_fanout(args: &FanoutLoadArgs) -> anyhow::Result<()> {
    let (addr, path) = parse_ws_url(&args.url)?;
    if let Some(rate) = args.rate {
        anyhow::ensure!(rate > 0.0, "--rate must be positive");
    }
    let spec = fanout::FanoutSpec {
        addr,
        path,
        subscribers: args.subscribers,
        window: args.window,
        max_window: args.max_window,
        step: Duration::from_secs_f64(args.step),
        latency_budget_us: args.latency_budget_us,
        rate: args.rate,
        warmup: Duration::from_secs_f64(args.warmup),
        duration: Duration::from_secs_f64(args.duration),
        server_pid: args.server_pid,
        pinned: None,
        stall_timeout: Duration::from_secs_f64(args.stall_timeout),
        label: format!("1×{}", args.subscribers),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(fanout::run(&spec))?;
    println!(
        "{} subscribers: {}",
        report.subscribers,
        fanout_run::summary(&report)
    );
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
