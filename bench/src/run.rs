//! The `run` subcommand: starts the baseline echo server and Sockyard side by side, pins them
//! away from the load generator, measures both with the same client in the same run, and
//! prints each figure with its Sockyard/baseline ratio and the project's targets.

use std::fmt::Write as _;

use anyhow::Context as _;

use crate::args::{BenchArgs, Cpus, EchoArgs, Pinning};
use crate::bench_config::{sockyard_config, TempConfig};
use crate::idle::{self, IdleReport};
use crate::load::{self, LoadReport, LoadSpec, ECHO_WORKLOADS};
use crate::pinning;
use crate::servers::{print_notes, Server};
use crate::table::{verdict, Spread, Stopwatch, Table};

/// Settings of one benchmark run.
#[derive(Debug, Clone, clap::Args)]
#[command(mut_arg("reps", |arg| arg.help(
    "Repetitions of each echo test (interleaved baseline/Sockyard); the table shows medians"
)))]
pub(crate) struct RunArgs {
    /// The binary, the measured windows, the repetitions.
    #[command(flatten)]
    pub(crate) bench: BenchArgs,
    /// Idle connections opened for the memory test.
    #[arg(long, default_value_t = 5000)]
    pub(crate) idle_connections: usize,
    /// The echo messages.
    #[command(flatten)]
    pub(crate) echo: EchoArgs,
    /// Where the load generator and the servers run.
    #[command(flatten)]
    pub(crate) pinning: Pinning,
}

/// The target for idle memory per handshaken connection, KiB.
const TARGET_IDLE_KIB: f64 = 4.0;
/// The target for Sockyard's echo throughput at 50×10, as a fraction of the baseline's.
const TARGET_ECHO_RATIO: f64 = 0.5;

/// Pins this process (all its threads) to the client CPU unless pinning is off, then runs the
/// benchmark on the load generator's single-threaded runtime.
pub(crate) fn main(args: &RunArgs) -> anyhow::Result<()> {
    crate::runtime::run_pinned(&args.pinning, "servers", |pinned| run(args, pinned))
}

/// Every repetition's figures: `idle[server]` and `echo[workload][server]`, the baseline
/// first.
#[derive(Debug, Default)]
struct Results {
    idle: [Vec<IdleReport>; 2],
    echo: Vec<[Vec<LoadReport>; 2]>,
}

async fn run(args: &RunArgs, pinned: Option<Cpus>) -> anyhow::Result<()> {
    args.bench.check_reps()?;
    let sockyard_bin = args.bench.sockyard_binary()?;
    let server_cpu = pinned.map(|cpus| cpus.server);
    let stopwatch = Stopwatch::start();

    let per_ip = (args.idle_connections + 1000).max(6000);
    let config = TempConfig::create(&sockyard_config("run", per_ip, ""))?;
    let mut results = Results {
        echo: ECHO_WORKLOADS.iter().map(|_| Default::default()).collect(),
        ..Results::default()
    };
    let mut notes: [Vec<String>; 2] = [vec![], vec![]];
    for rep in 0..args.bench.reps {
        // Fresh processes for every repetition: the idle test must not find memory freed by
        // earlier tests, and repetitions stay independent.
        let mut servers = [
            Server::start_baseline(server_cpu).await?,
            Server::start_sockyard(&sockyard_bin, config.path(), server_cpu).await?,
        ];
        eprintln!(
            "rep {}: baseline pid {} on {}, sockyard pid {} on {}",
            rep + 1,
            servers[0].pid,
            servers[0].addr,
            servers[1].pid,
            servers[1].addr
        );
        // Alternate who goes first (ABBA across repetitions) to even out drift.
        let order = if rep % 2 == 0 { [0, 1] } else { [1, 0] };
        for which in order {
            let report = idle::idle_rss(&mut servers[which], args.idle_connections).await?;
            results.idle[which].push(report);
        }
        for (w, &(connections, window)) in ECHO_WORKLOADS.iter().enumerate() {
            for which in order {
                let server = &mut servers[which];
                let spec = LoadSpec {
                    addr: server.addr,
                    path: server.path.to_owned(),
                    mode: server.mode,
                    schema: None,
                    connections,
                    window,
                    echo: args.echo,
                    timing: args.bench.timing,
                    server_pid: Some(server.pid),
                    pinned: None,
                };
                let report = load::run(&spec)
                    .await
                    .with_context(|| format!("{} echo {connections}×{window}", server.name));
                server.check_alive()?;
                let report = report?;
                eprintln!(
                    "rep {} {:>8} {connections:>2}×{window:<2}: {}",
                    rep + 1,
                    server.name,
                    report.progress()
                );
                results.echo[w][which].push(report);
            }
        }
        let [baseline, sockyard] = servers;
        notes[0].extend(baseline.stop().await);
        notes[1].extend(sockyard.stop().await);
    }

    print!("{}", render(args, pinned, &stopwatch, &results));
    for (name, notes) in ["baseline", "sockyard"].into_iter().zip(notes) {
        print_notes(name, &notes);
    }
    Ok(())
}

fn render(
    args: &RunArgs,
    pinned: Option<Cpus>,
    stopwatch: &Stopwatch,
    results: &Results,
) -> String {
    let mut table = Table::new(
        [
            "metric",
            "baseline",
            "sockyard",
            "sockyard/baseline",
            "target",
        ]
        .map(String::from)
        .to_vec(),
    );
    for (w, &(connections, window)) in ECHO_WORKLOADS.iter().enumerate() {
        for metric in LoadReport::metrics(false) {
            let [b, s] = [0, 1].map(|which| metric.spread(&results.echo[w][which]));
            let target = if metric.name == "msgs/s" && (connections, window) == (50, 10) {
                let pass = s.median / b.median >= TARGET_ECHO_RATIO;
                format!("≥ {TARGET_ECHO_RATIO}× baseline: {}", verdict(pass))
            } else {
                String::new()
            };
            table.push(vec![
                format!("echo {connections}×{window}: {}", metric.name),
                b.show(metric.decimals),
                s.show(metric.decimals),
                s.ratio_to(&b),
                target,
            ]);
        }
    }
    let [b, s] =
        [0, 1].map(|which| Spread::of_each(&results.idle[which], IdleReport::kib_per_connection));
    table.push(vec![
        format!("idle connection RSS, KB ({} conns)", args.idle_connections),
        b.show(2),
        s.show(2),
        s.ratio_to(&b),
        format!(
            "≤ {TARGET_IDLE_KIB} KB (handshaken): {}",
            verdict(s.median <= TARGET_IDLE_KIB)
        ),
    ]);

    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nSockyard vs baseline (hyper + fastwebsockets 0.10 defaults, single-threaded tokio)"
    );
    let _ = writeln!(
        out,
        "{} B payloads over 127.0.0.1; {}; Sockyard: multi-thread runtime with \
         TOKIO_WORKER_THREADS=1",
        args.echo.payload_bytes,
        pinning::describe(pinned, "both servers")
    );
    let _ = writeln!(
        out,
        "echo: {} s warm-up + {} s measured, {} repetition(s) interleaved; median [min–max]; \
         RTT = one batch (window frames written at once → last reply)",
        args.bench.timing.warmup, args.bench.timing.duration, args.bench.reps
    );
    let describe = |reports: &[IdleReport]| {
        reports
            .iter()
            .map(|r| {
                format!(
                    "{}→{}{}",
                    r.before_kib,
                    r.after_kib,
                    if r.closed > 0 {
                        format!(" ({} closed by the server)", r.closed)
                    } else {
                        String::new()
                    }
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(
        out,
        "idle: VmRSS growth / connections, fresh server per repetition (KiB; baseline {}; \
         sockyard {})",
        describe(&results.idle[0]),
        describe(&results.idle[1]),
    );
    let _ = writeln!(out, "{}\n", stopwatch.summary());
    table.render(&mut out);
    let sockyard = results.echo.iter().flat_map(|pair| pair[1].iter());
    let _ = writeln!(out, "\nsockyard {}", LoadReport::ping_summary(sockyard));
    out
}
