//! The `fanout` subcommand: starts the official socketcluster-server (the Node reference in
//! `bench/node/`) and Sockyard side by side, pins them away from the load generator, measures
//! one publisher fanning out to 1,000 and 10,000 subscribers on each in the same run, and
//! prints deliveries/s, latency, losses and CPU per delivery with the Sockyard/node ratios and
//! the project's target.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use tokio::process::Command;

use crate::fanout::{self, FanoutReport, FanoutSpec, WindowChoice};
use crate::procfs;
use crate::run::{self, Server, Spread, TempConfig};

/// Settings of one fan-out benchmark run.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct FanoutArgs {
    /// The sockyard binary; default: `sockyard` next to this executable.
    #[arg(long, value_name = "PATH")]
    pub(crate) sockyard: Option<PathBuf>,
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
    /// Publications in flight: a number, or `auto` to search for the smallest window that
    /// gets within 5 % of the best deliveries/s (for Sockyard: among the windows whose p99
    /// stays within 80 % of node's).
    #[arg(long, default_value = "auto", value_parser = parse_window)]
    pub(crate) window: WindowChoice,
    /// Largest window the search tries.
    #[arg(long, default_value_t = 256)]
    pub(crate) max_window: usize,
    /// Seconds measured per window-search step.
    #[arg(long, default_value_t = 1.0)]
    pub(crate) step: f64,
    /// Seconds of load before the window search (at window 2), and again at the chosen window
    /// before the measured one.
    #[arg(long, default_value_t = 1.0)]
    pub(crate) warmup: f64,
    /// Seconds measured per workload.
    #[arg(long, default_value_t = 5.0)]
    pub(crate) duration: f64,
    /// Repetitions of each workload, node first each time (its p99 is Sockyard's latency
    /// budget); the table shows medians.
    #[arg(long, default_value_t = 1)]
    pub(crate) reps: usize,
    /// CPU for the load generator (this process).
    #[arg(long, default_value_t = 0)]
    pub(crate) client_cpu: usize,
    /// CPU for the servers.
    #[arg(long, default_value_t = 1)]
    pub(crate) server_cpu: usize,
    /// Do not pin anything with taskset.
    #[arg(long)]
    pub(crate) no_pin: bool,
    /// Seconds the publisher waits for a publication to reach every subscriber (or for its
    /// ack) before giving up on it.
    #[arg(long, default_value_t = 5.0)]
    pub(crate) stall_timeout: f64,
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

/// The target: Sockyard's deliveries/s at least this multiple of node's, at a p99 latency no
/// worse than node's.
const TARGET_RATIO: f64 = 10.0;

/// Share of a benchmark CPU other processes may take during a measured window before the
/// figures count as disturbed.
const DISTURBED: f64 = 0.05;

/// Sockyard's window search keeps windows whose p99 is within this fraction of node's
/// measured p99, so that the noise between a search step and the measured window does not
/// decide the latency comparison.
const BUDGET_MARGIN: f64 = 0.8;

/// `auto` or a window size.
pub(crate) fn parse_window(text: &str) -> Result<WindowChoice, String> {
    if text == "auto" {
        return Ok(WindowChoice::Auto);
    }
    match text.parse::<usize>() {
        Ok(window) if (1..=fanout::MAX_WINDOW).contains(&window) => Ok(WindowChoice::Fixed(window)),
        _ => Err(format!("expected `auto` or 1..={}", fanout::MAX_WINDOW)),
    }
}

/// Pins this process to the client CPU, builds the single-threaded runtime the load
/// generator runs on, and runs the benchmark.
pub(crate) fn main(args: &FanoutArgs) -> anyhow::Result<()> {
    let taskset = run::pin_self(!args.no_pin, args.client_cpu)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the runtime")?;
    runtime.block_on(async {
        tokio::select! {
            outcome = fanout_all(args, taskset) => outcome,
            () = run::interrupted() => bail!("interrupted; servers stopped"),
        }
    })
}

/// The outcome of one workload on one server.
type Outcome = Result<FanoutReport, String>;

async fn fanout_all(args: &FanoutArgs, taskset: bool) -> anyhow::Result<()> {
    ensure!(args.reps > 0, "--reps must be at least 1");
    ensure!(!args.subscribers.is_empty(), "no --subscribers given");
    ensure!(!args.servers.is_empty(), "no --servers given");
    let started = Instant::now();
    let load_before = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let server_cpu = taskset.then_some(args.server_cpu);

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
                let bin = run::sockyard_binary(args.sockyard.as_deref())?;
                let most = args.subscribers.iter().copied().max().unwrap_or(0);
                let per_ip = (most + 1000).max(11_000);
                let config = TempConfig::create(&run::sockyard_config(
                    "fanout",
                    per_ip,
                    "outbound_queue_length = 2048",
                ))?;
                let server = Server::start_sockyard(&bin, config.path(), server_cpu).await?;
                _config = Some(config);
                server
            }
        };
        eprintln!(
            "{} pid {} on {}{}",
            server.name,
            server.pid,
            server.addr,
            server_cpu.map_or(String::new(), |cpu| format!(" (CPU {cpu})"))
        );
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
        for rep in 0..args.reps {
            // Node first: its p99 is Sockyard's latency budget in the window search.
            let mut budget = None;
            for which in 0..servers.len() {
                let server = &mut servers[which];
                if let Some(reason) = &dead[which] {
                    outcomes[w][which].push(Err(format!("not run: {reason}")));
                    continue;
                }
                let label = format!(
                    "{} 1×{subscribers}{}",
                    server.name,
                    if args.reps > 1 {
                        format!(" rep {}", rep + 1)
                    } else {
                        String::new()
                    }
                );
                let spec = FanoutSpec {
                    addr: server.addr,
                    path: server.path.to_owned(),
                    subscribers,
                    window: args.window,
                    max_window: args.max_window,
                    step: Duration::from_secs_f64(args.step),
                    latency_budget_us: if server.name == "sockyard" {
                        budget
                    } else {
                        None
                    },
                    rate: None,
                    warmup: Duration::from_secs_f64(args.warmup),
                    duration: Duration::from_secs_f64(args.duration),
                    server_pid: Some(server.pid),
                    pinned: taskset.then_some((args.client_cpu, args.server_cpu)),
                    stall_timeout: Duration::from_secs_f64(args.stall_timeout),
                    label: label.clone(),
                };
                let mut attempt = 0;
                let outcome = loop {
                    let outcome = fanout::run(&spec).await;
                    if let Err(err) = server.check_alive() {
                        break Err(err);
                    }
                    // Let the server finish tearing the connections down before the next test.
                    settle(server.pid).await;
                    let disturbance = outcome
                        .as_ref()
                        .ok()
                        .and_then(FanoutReport::foreign_load)
                        .filter(|&(on_client, on_server)| on_client.max(on_server) > DISTURBED);
                    match disturbance {
                        Some((on_client, on_server)) if attempt < args.retries => {
                            attempt += 1;
                            eprintln!(
                                "{label}: other processes took {:.0} % of the load generator's \
                                 CPU and {:.0} % of the server's; measuring again",
                                on_client * 100.0,
                                on_server * 100.0
                            );
                        }
                        _ => break Ok(outcome),
                    }
                };
                let outcome = match outcome {
                    Ok(outcome) => outcome,
                    Err(err) => {
                        dead[which] = Some(format!("{} exited", server.name));
                        outcomes[w][which].push(Err(format!("{err:#}")));
                        eprintln!("{label}: {err:#}");
                        continue;
                    }
                };
                match outcome {
                    Ok(mut report) => {
                        report.remeasured = attempt;
                        eprintln!("{label}: {}", summary(&report));
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
    let load_after = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let header = Header {
        args,
        taskset,
        load_before: load_before.trim().to_owned(),
        load_after: load_after.trim().to_owned(),
        wall: started.elapsed(),
    };
    print!("{}", render(&header, &names, &outcomes));
    for (name, notes) in notes {
        if !notes.is_empty() {
            println!(
                "\n{name} logged {} warning/error line(s), first ones:",
                notes.len()
            );
            for line in notes.iter().take(10) {
                println!("  {line}");
            }
        }
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

/// Waits (at most 10 s) until the server has used under 5 % of a core for 250 ms.
pub(crate) async fn settle(pid: u32) {
    let ticks = procfs::ticks_per_second();
    let Ok(mut last) = procfs::cpu_time(pid, ticks) else {
        return;
    };
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let Ok(now) = procfs::cpu_time(pid, ticks) else {
            return;
        };
        if now.saturating_sub(last) < Duration::from_micros(12_500) {
            return;
        }
        last = now;
    }
}

/// One line about one report.
pub(crate) fn summary(report: &FanoutReport) -> String {
    let mut line = format!(
        "{:.0} deliveries/s ({:.0} publishes/s, window {}), latency p50 {} µs, p99 {} µs, \
         max {} µs; lost {} of {}",
        report.delivery_rate(),
        report.publish_rate(),
        report.window,
        report.latency(0.5),
        report.latency(0.99),
        report.latency_us.max(),
        report.lost,
        report.expected,
    );
    if let (Some(us), Some(busy)) = (report.server_us_per_delivery(), report.server_busy()) {
        let _ = write!(
            line,
            "; server {us:.2} µs/delivery ({:.0}% busy)",
            busy * 100.0
        );
    }
    let _ = write!(line, "; client {:.0}% busy", report.client_busy() * 100.0);
    if report.incomplete > 0 {
        let _ = write!(
            line,
            "; {} subscriber(s) missed publications",
            report.incomplete
        );
    }
    if report.duplicates > 0 {
        let _ = write!(line, "; {} duplicate/reordered", report.duplicates);
    }
    if report.abandoned > 0 {
        let _ = write!(
            line,
            "; publisher gave up on {} publication(s)",
            report.abandoned
        );
    }
    if report.failed > 0 {
        let _ = write!(
            line,
            "; {} subscriber(s) failed, first: {}",
            report.failed,
            report.failures.first().map_or("?", String::as_str)
        );
    }
    if report.other_frames > 0 {
        let _ = write!(line, "; {} other frames ignored", report.other_frames);
    }
    if report.pings_answered > 0 {
        let _ = write!(line, "; {} pings answered", report.pings_answered);
    }
    line
}

/// What the table header says about the run.
#[derive(Debug)]
struct Header<'a> {
    args: &'a FanoutArgs,
    taskset: bool,
    load_before: String,
    load_after: String,
    wall: Duration,
}

/// One table row: label, one cell per server, ratio, target verdict.
#[derive(Debug)]
struct Row {
    label: String,
    cells: Vec<String>,
    ratio: String,
    target: String,
}

fn render(header: &Header<'_>, names: &[&str], outcomes: &[Vec<Vec<Outcome>>]) -> String {
    let args = header.args;
    let node = names.iter().position(|&n| n == "node");
    let sockyard = names.iter().position(|&n| n == "sockyard");
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for (w, &subscribers) in args.subscribers.iter().enumerate() {
        let label = format!("1×{subscribers}");
        let ok: Vec<Vec<&FanoutReport>> = outcomes[w]
            .iter()
            .map(|reps| reps.iter().filter_map(|o| o.as_ref().ok()).collect())
            .collect();
        for (s, reps) in outcomes[w].iter().enumerate() {
            for outcome in reps {
                if let Err(err) = outcome {
                    failures.push(format!("{} {label}: {err}", names[s]));
                }
            }
        }
        type Metric = fn(&FanoutReport) -> f64;
        // (name, decimals, whether a Sockyard/node ratio means something, metric)
        let metrics: [(&str, usize, bool, Metric); 12] = [
            ("deliveries/s", 0, true, FanoutReport::delivery_rate),
            ("publishes/s", 0, true, FanoutReport::publish_rate),
            ("window (publications in flight)", 0, false, |r| {
                r.window as f64
            }),
            ("p50 delivery latency, µs", 0, true, |r| {
                r.latency(0.5) as f64
            }),
            ("p99 delivery latency, µs", 0, true, |r| {
                r.latency(0.99) as f64
            }),
            ("lost deliveries", 0, false, |r| r.lost as f64),
            ("server CPU µs/delivery", 2, true, |r| {
                r.server_us_per_delivery().unwrap_or(f64::NAN)
            }),
            ("server core busy, %", 0, false, |r| {
                r.server_busy().unwrap_or(f64::NAN) * 100.0
            }),
            ("client core busy, %", 0, false, |r| r.client_busy() * 100.0),
            ("other processes on server CPU, %", 0, false, |r| {
                r.foreign_load()
                    .map_or(f64::NAN, |(_, server)| server * 100.0)
            }),
            ("other processes on client CPU, %", 0, false, |r| {
                r.foreign_load()
                    .map_or(f64::NAN, |(client, _)| client * 100.0)
            }),
            ("connect + subscribe, s", 1, true, |r| {
                r.connect_time.as_secs_f64()
            }),
        ];
        let mut spreads_of =
            |name: &str, decimals: usize, with_ratio: bool, metric: Metric| -> Vec<Spread> {
                let spreads: Vec<Spread> = ok
                    .iter()
                    .map(|reps| Spread::of(reps.iter().map(|r| metric(r)).collect()))
                    .collect();
                let cells = spreads
                    .iter()
                    .zip(&ok)
                    .map(|(spread, reps)| {
                        if reps.is_empty() {
                            "failed".to_owned()
                        } else {
                            spread.show(decimals)
                        }
                    })
                    .collect();
                let ratio = match (node, sockyard) {
                    (Some(n), Some(s)) if with_ratio && !ok[n].is_empty() && !ok[s].is_empty() => {
                        format!("{:.2}", spreads[s].median / spreads[n].median)
                    }
                    _ => String::new(),
                };
                rows.push(Row {
                    label: format!("{label}: {name}"),
                    cells,
                    ratio,
                    target: String::new(),
                });
                spreads
            };
        let mut by_name = Vec::new();
        for (name, decimals, with_ratio, metric) in metrics {
            by_name.push((name, spreads_of(name, decimals, with_ratio, metric)));
        }
        if let (Some(n), Some(s)) = (node, sockyard) {
            let spread = |name: &str, server: usize| {
                by_name
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map_or(f64::NAN, |(_, spreads)| spreads[server].median)
            };
            let target_row = rows
                .iter_mut()
                .rev()
                .find(|row| row.label == format!("{label}: deliveries/s"))
                .expect("deliveries row");
            target_row.target = if ok[n].is_empty() || ok[s].is_empty() {
                format!("≥ {TARGET_RATIO}× node at p99 ≤ node's: not measured")
            } else {
                let ratio = spread("deliveries/s", s) / spread("deliveries/s", n);
                let p99_ok =
                    spread("p99 delivery latency, µs", s) <= spread("p99 delivery latency, µs", n);
                let lossless = ok[s].iter().all(|r| r.lost == 0 && r.failed == 0);
                format!(
                    "≥ {TARGET_RATIO}× node at p99 ≤ node's: {} ({ratio:.1}×, p99 {}{})",
                    run::verdict(ratio >= TARGET_RATIO && p99_ok && lossless),
                    if p99_ok { "ok" } else { "worse" },
                    if lossless { "" } else { ", deliveries lost" }
                )
            };
        }
    }

    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nFan-out: 1 publisher → N subscribers on one channel; Sockyard vs socketcluster-server \
         20.0.1 (Node {})",
        node_version(&args.node)
    );
    let _ = writeln!(
        out,
        "{} B payloads over 127.0.0.1; {}; Sockyard: TOKIO_WORKER_THREADS=1",
        fanout::PAYLOAD_BYTES,
        if header.taskset {
            format!(
                "load generator on CPU {}, servers on CPU {} (taskset)",
                args.client_cpu, args.server_cpu
            )
        } else {
            "nothing pinned".to_owned()
        }
    );
    let _ = writeln!(
        out,
        "window: {}; {} s warm-up + {} s measured, {} repetition(s); median [min–max]; latency = \
         subscriber read time − send timestamp",
        match args.window {
            WindowChoice::Auto => format!(
                "searched (1, 2, 4, … ≤ {} for {} s each; smallest within {:.0} % of the best)",
                args.max_window,
                args.step,
                (1.0 - fanout::SEARCH_KEEP) * 100.0
            ),
            WindowChoice::Fixed(window) => format!("{window} publications in flight"),
        },
        args.warmup,
        args.duration,
        args.reps
    );
    let _ = writeln!(
        out,
        "loadavg before: {}; after: {}; wall time {:.0} s\n",
        header.load_before,
        header.load_after,
        header.wall.as_secs_f64()
    );

    let head = Row {
        label: "metric".into(),
        cells: names.iter().map(|&n| n.to_owned()).collect(),
        ratio: if node.is_some() && sockyard.is_some() {
            "sockyard/node".into()
        } else {
            String::new()
        },
        target: "target".into(),
    };
    let rows: Vec<Row> = std::iter::once(head).chain(rows).collect();
    let label_width = rows
        .iter()
        .map(|r| r.label.chars().count())
        .max()
        .unwrap_or(0);
    let cell_widths: Vec<usize> = (0..names.len())
        .map(|i| {
            rows.iter()
                .map(|r| r.cells[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let ratio_width = rows
        .iter()
        .map(|r| r.ratio.chars().count())
        .max()
        .unwrap_or(0);
    for (i, row) in rows.iter().enumerate() {
        let mut line = run::pad(&row.label, label_width);
        for (cell, &width) in row.cells.iter().zip(&cell_widths) {
            line.push_str("  ");
            line.push_str(&run::pad(cell, width));
        }
        line.push_str("  ");
        line.push_str(&run::pad(&row.ratio, ratio_width));
        line.push_str("  ");
        line.push_str(&row.target);
        let _ = writeln!(out, "{}", line.trim_end());
        if i == 0 {
            let _ = writeln!(out, "{}", "-".repeat(line.chars().count().max(60)));
        }
    }

    let _ = writeln!(
        out,
        "\nwindow search (window: deliveries/s, p99 µs){}:",
        if node.is_some() && sockyard.is_some() {
            format!(
                "; Sockyard keeps only windows whose p99 is within {:.0} % of node's measured p99",
                BUDGET_MARGIN * 100.0
            )
        } else {
            String::new()
        }
    );
    for (w, &subscribers) in args.subscribers.iter().enumerate() {
        for (s, reps) in outcomes[w].iter().enumerate() {
            for report in reps.iter().filter_map(|o| o.as_ref().ok()) {
                if report.search.is_empty() {
                    continue;
                }
                let steps: Vec<String> = report
                    .search
                    .iter()
                    .map(|step| format!("{}: {:.0}, {}", step.window, step.rate, step.p99_us))
                    .collect();
                let _ = writeln!(
                    out,
                    "  {} 1×{subscribers}: {} → {}",
                    names[s],
                    steps.join(", "),
                    report.window
                );
            }
        }
    }
    let mut remarks = Vec::new();
    for (w, &subscribers) in args.subscribers.iter().enumerate() {
        for (s, reps) in outcomes[w].iter().enumerate() {
            for report in reps.iter().filter_map(|o| o.as_ref().ok()) {
                let mut parts = Vec::new();
                if report.lost > 0 {
                    parts.push(format!(
                        "{} of {} deliveries lost, {} subscriber(s) incomplete",
                        report.lost, report.expected, report.incomplete
                    ));
                }
                if report.duplicates > 0 {
                    parts.push(format!("{} duplicate/reordered", report.duplicates));
                }
                if report.abandoned > 0 {
                    parts.push(format!(
                        "publisher gave up on {} publication(s)",
                        report.abandoned
                    ));
                }
                if report.failed > 0 {
                    parts.push(format!(
                        "{} subscriber(s) failed: {}",
                        report.failed,
                        report.failures.join("; ")
                    ));
                }
                if report.other_frames > 0 {
                    parts.push(format!("{} other frames ignored", report.other_frames));
                }
                if report.pings_answered > 0 {
                    parts.push(format!("{} pings answered", report.pings_answered));
                }
                if report.server_busy().is_some_and(|busy| busy < 0.9) {
                    parts.push(format!(
                        "server at {:.0} % of its core: the window, not the server, may have \
                         set the pace",
                        report.server_busy().unwrap_or_default() * 100.0
                    ));
                }
                if report.remeasured > 0 {
                    parts.push(format!(
                        "measured {} more time(s): other processes disturbed the earlier \
                         attempt(s)",
                        report.remeasured
                    ));
                }
                if let Some((client, server)) = report.foreign_load() {
                    if client.max(server) > DISTURBED {
                        parts.push(format!(
                            "other processes took {:.0} % of the load generator's CPU and {:.0} % \
                             of the server's during the window: figures disturbed",
                            client * 100.0,
                            server * 100.0
                        ));
                    }
                }
                if report.client_busy() > 0.95 {
                    parts.push(
                        "load generator at ~100 % of its core: the figure may be client-bound"
                            .to_owned(),
                    );
                }
                if !parts.is_empty() {
                    remarks.push(format!(
                        "  {} 1×{subscribers}: {}",
                        names[s],
                        parts.join("; ")
                    ));
                }
            }
        }
    }
    if remarks.is_empty() {
        let _ = writeln!(
            out,
            "\nevery subscriber received every measured publication, once and in order"
        );
    } else {
        let _ = writeln!(out, "\nremarks:");
        for remark in remarks {
            let _ = writeln!(out, "{remark}");
        }
    }
    if !failures.is_empty() {
        let _ = writeln!(out, "\nfailed runs:");
        for failure in failures {
            let _ = writeln!(out, "  {failure}");
        }
    }
    out
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
