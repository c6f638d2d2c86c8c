//! The `fanout` subcommand: starts the official socketcluster-server (the Node reference in
//! `bench/node/`) and Sockyard side by side, pins them away from the load generator, measures
//! one publisher fanning out to 1,000 and 10,000 subscribers on each in the same run, and
//! prints deliveries/s, latency, losses and CPU per delivery with the Sockyard/node ratios and
//! the project's target.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{ensure, Context as _};
use tokio::process::Command;

use super::{table, FanoutReport, FanoutSpec};
use crate::args::{BenchArgs, Cpus, Pinning, PublisherArgs, FANOUT_WARMUP_HELP};
use crate::bench_config::{sockyard_config, TempConfig};
use crate::servers::{print_notes, Server};
use crate::table::Stopwatch;

/// Settings of one fan-out benchmark run.
#[derive(Debug, Clone, clap::Args)]
#[command(
    mut_arg("warmup", |arg| arg.help(FANOUT_WARMUP_HELP)),
    mut_arg("duration", |arg| arg.help("Seconds measured per workload")),
    mut_arg("reps", |arg| arg.default_value("1").help(
        "Repetitions of each workload, node first each time (its p99 is Sockyard's latency \
         budget); the table shows medians"
    )),
    mut_arg("window", |arg| arg.help(
        "Publications in flight: a number, or `auto` to search for the smallest window that \
         gets within 5 % of the best deliveries/s (for Sockyard: among the windows whose p99 \
         stays within 80 % of node's)"
    )),
)]
pub(crate) struct FanoutArgs {
    /// The binary, the measured windows, the repetitions.
    #[command(flatten)]
    pub(crate) bench: BenchArgs,
    /// The Node.js executable for the reference server.
    #[arg(long, value_name = "PATH", default_value = "node")]
    pub(crate) node: PathBuf,
    /// The reference server's folder (fanout-server.js and its package-lock.json); `npm ci`
    /// runs there when node_modules is missing. Default: bench/node in this source tree.
    #[arg(long, value_name = "DIR")]
    pub(crate) node_dir: Option<PathBuf>,
    /// Servers to measure.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Which::Node, Which::Sockyard])]
    pub(crate) servers: Vec<Which>,
    /// Subscriber counts, one workload each.
    #[arg(long, value_delimiter = ',', default_values_t = [1000, 10000])]
    pub(crate) subscribers: Vec<usize>,
    /// The publisher's window and patience.
    #[command(flatten)]
    pub(crate) publisher: PublisherArgs,
    /// Where the load generator and the servers run.
    #[command(flatten)]
    pub(crate) pinning: Pinning,
    /// Times a workload is measured again when other processes took more than 5 % of the
    /// load generator's or the server's CPU during its measured window.
    #[arg(long, default_value_t = 1)]
    pub(crate) retries: usize,
}

/// A server the fan-out benchmark can measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Which {
    /// The official socketcluster-server 20 (bench/node/fanout-server.js).
    Node,
    /// `sockyard serve`.
    Sockyard,
}

/// Sockyard's window search keeps windows whose p99 is within this fraction of node's
/// measured p99, so that the noise between a search step and the measured window does not
/// decide the latency comparison.
pub(super) const BUDGET_MARGIN: f64 = 0.8;

/// Pins this process to the client CPU and runs the benchmark on the load generator's
/// single-threaded runtime.
pub(crate) fn main(args: &FanoutArgs) -> anyhow::Result<()> {
    crate::runtime::run_pinned(&args.pinning, "servers", |pinned| fanout_all(args, pinned))
}

/// The outcome of one workload on one server.
pub(super) type Outcome = Result<FanoutReport, String>;

async fn fanout_all(args: &FanoutArgs, pinned: Option<Cpus>) -> anyhow::Result<()> {
    args.bench.check_reps()?;
    ensure!(!args.subscribers.is_empty(), "no --subscribers given");
    ensure!(!args.servers.is_empty(), "no --servers given");
    let stopwatch = Stopwatch::start();
    let server_cpu = pinned.map(|cpus| cpus.server);

    let mut servers: Vec<Server> = Vec::new();
    // Held until the end: Sockyard reads its config at start only, but it is ours to clean up.
    let mut _config = None;
    for which in [Which::Node, Which::Sockyard] {
        if !args.servers.contains(&which) {
            continue;
        }
        let server = match which {
            Which::Node => {
                let dir = match &args.node_dir {
                    Some(dir) => dir.clone(),
                    None => Path::new(env!("CARGO_MANIFEST_DIR")).join("node"),
                };
                ensure_node_modules(&dir).await?;
                Server::start_node(&args.node, &dir.join("fanout-server.js"), server_cpu).await?
            }
            Which::Sockyard => {
                let bin = args.bench.sockyard_binary()?;
                let most = args.subscribers.iter().copied().max().unwrap_or(0);
                let per_ip = (most + 1000).max(11_000);
                let config = TempConfig::create(&sockyard_config(
                    "fanout",
                    per_ip,
                    "outbound_queue_length = 2048",
                ))?;
                let server = Server::start_sockyard(&bin, config.path(), server_cpu).await?;
                _config = Some(config);
                server
            }
        };
        eprintln!("{}", server.describe(server_cpu));
        servers.push(server);
    }

    // outcomes[workload][server] holds one entry per repetition.
    let mut outcomes: Vec<Vec<Vec<Outcome>>> = args
        .subscribers
        .iter()
        .map(|_| servers.iter().map(|_| Vec::new()).collect())
        .collect();
    let mut dead = vec![None; servers.len()];
    for (w, &subscribers) in args.subscribers.iter().enumerate() {
        for rep in 0..args.bench.reps {
            // Node first: its p99 is Sockyard's latency budget in the window search.
            let mut budget = None;
            for (which, server) in servers.iter_mut().enumerate() {
                if let Some(reason) = &dead[which] {
                    outcomes[w][which].push(Err(format!("not run: {reason}")));
                    continue;
                }
                let label = format!(
                    "{} 1×{subscribers}{}",
                    server.name,
                    if args.bench.reps > 1 {
                        format!(" rep {}", rep + 1)
                    } else {
                        String::new()
                    }
                );
                let spec = FanoutSpec {
                    addr: server.addr,
                    path: server.path.to_owned(),
                    subscribers,
                    publisher: args.publisher,
                    latency_budget_us: budget.filter(|_| server.name == "sockyard"),
                    rate: None,
                    timing: args.bench.timing,
                    server_pid: Some(server.pid),
                    pinned,
                    label: label.clone(),
                };
                let measured = server
                    .measure(args.retries, &label, || super::run(&spec), |r| &r.cpu)
                    .await;
                let (outcome, attempts) = match measured {
                    Ok(measured) => measured,
                    Err(err) => {
                        dead[which] = Some(format!("{} exited", server.name));
                        outcomes[w][which].push(Err(format!("{err:#}")));
                        eprintln!("{label}: {err:#}");
                        continue;
                    }
                };
                match outcome {
                    Ok(mut report) => {
                        report.remeasured = attempts;
                        eprintln!("{label}: {}", report.summary());
                        if server.name == "node" {
                            budget = Some((report.latency(0.99) as f64 * BUDGET_MARGIN) as u64);
                        }
                        outcomes[w][which].push(Ok(report));
                    }
                    Err(err) => {
                        eprintln!("{label}: FAILED: {err:#}");
                        outcomes[w][which].push(Err(format!("{err:#}")));
                    }
                }
            }
        }
    }

    let mut notes = Vec::new();
    let names: Vec<&'static str> = servers.iter().map(|s| s.name).collect();
    for server in servers {
        let name = server.name;
        notes.push((name, server.stop().await));
    }
    let header = table::Header {
        args,
        pinned,
        stopwatch: &stopwatch,
        node_version: node_version(&args.node),
    };
    print!("{}", table::render(&header, &names, &outcomes));
    for (name, notes) in notes {
        print_notes(name, &notes);
    }
    Ok(())
}

/// Runs `npm ci` in `dir` unless its node_modules already holds socketcluster-server.
async fn ensure_node_modules(dir: &Path) -> anyhow::Result<()> {
    ensure!(
        dir.join("fanout-server.js").is_file(),
        "no fanout-server.js in {} (pass --node-dir)",
        dir.display()
    );
    if dir.join("node_modules/socketcluster-server").is_dir() {
        return Ok(());
    }
    eprintln!(
        "installing the reference server: npm ci in {}",
        dir.display()
    );
    let output = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(300), output)
        .await
        .context("npm ci took longer than 5 minutes")?
        .context("running npm ci (is npm installed?)")?;
    ensure!(
        output.status.success(),
        "npm ci failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// `node --version`, or `?`.
fn node_version(node: &Path) -> String {
    std::process::Command::new(node)
        .arg("--version")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map_or_else(|| "?".to_owned(), |v| v.trim().to_owned())
}
