//! The `codecs` subcommand: `echo` throughput of each codec Sockyard speaks (JSON, MessagePack
//! in the `sc-codec-min-bin` form, protobuf in the `sc-codec-protobuf` form), measured on one
//! Sockyard process serving its default endpoints, every figure shown with its ratio to JSON.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use sockyard::codec::protobuf::Schema;
use sockyard::codec::Codec;
use sockyard::config::{Config, Dialect, LogFormat};
use tokio::process::Command;

use crate::fanout_run::settle;
use crate::frames::ScFrames;
use crate::load::{self, LoadReport, LoadSpec, Mode};
use crate::run::{self, pad, Server, Spread, TempConfig};

/// Settings of one `codecs` run.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct CodecsArgs {
    /// The sockyard binary; default: `sockyard` next to this executable.
    #[arg(long, value_name = "PATH")]
    pub(crate) sockyard: Option<std::path::PathBuf>,
    /// Seconds measured per echo test.
    #[arg(long, default_value_t = 4.0)]
    pub(crate) duration: f64,
    /// Seconds of load before each measured window.
    #[arg(long, default_value_t = 1.0)]
    pub(crate) warmup: f64,
    /// Repetitions of each echo test (codecs interleaved, rotating who goes first); the table
    /// shows medians.
    #[arg(long, default_value_t = 3)]
    pub(crate) reps: usize,
    /// Length of the echoed string.
    #[arg(long, default_value_t = 64)]
    pub(crate) payload_bytes: usize,
    /// CPU for the load generator (this process).
    #[arg(long, default_value_t = 0)]
    pub(crate) client_cpu: usize,
    /// CPU for the server.
    #[arg(long, default_value_t = 1)]
    pub(crate) server_cpu: usize,
    /// Do not pin anything with taskset.
    #[arg(long)]
    pub(crate) no_pin: bool,
    /// Seconds a connection may wait for replies before the run fails as stalled.
    #[arg(long, default_value_t = 10.0)]
    pub(crate) stall_timeout: f64,
    /// Times a test is measured again when other processes took over 5 % of the load
    /// generator's or the server's CPU during it.
    #[arg(long, default_value_t = 1)]
    pub(crate) retries: usize,
}

/// The echo workloads: (connections, messages in flight per connection).
const WORKLOADS: [(usize, usize); 2] = [(1, 1), (50, 10)];

/// The codecs compared, JSON first (the others are shown as ratios to it).
const CODECS: [Codec; 3] = [Codec::Json, Codec::Msgpack, Codec::Protobuf];

/// Share of a pinned CPU that other processes may take before a test counts as disturbed.
const DISTURBED: f64 = 0.05;

/// Pins this process to the client CPU, builds the single-threaded runtime the load
/// generator runs on, and runs the comparison.
pub(crate) fn main(args: &CodecsArgs) -> anyhow::Result<()> {
    let taskset = run::pin_self(!args.no_pin, args.client_cpu)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the runtime")?;
    runtime.block_on(async {
        tokio::select! {
            outcome = codecs(args, taskset) => outcome,
            () = run::interrupted() => bail!("interrupted; server stopped"),
        }
    })
}

/// One codec's endpoint, as the config under test defines it.
#[derive(Debug)]
struct Target {
    /// `json`, `msgpack` or `protobuf`.
    name: &'static str,
    /// The endpoint's path.
    path: String,
    /// The load generator's mode for it.
    mode: Mode,
    /// The endpoint's protobuf schema (protobuf only).
    schema: Option<Arc<Schema>>,
    /// Payload bytes of one invoke and of its reply (measured by the probe).
    invoke_bytes: usize,
    reply_bytes: usize,
}

async fn codecs(args: &CodecsArgs, taskset: bool) -> anyhow::Result<()> {
    ensure!(args.reps > 0, "--reps must be at least 1");
    let bin = run::sockyard_binary(args.sockyard.as_deref())?;
    let server_cpu = taskset.then_some(args.server_cpu);
    let pinned = taskset.then_some((args.client_cpu, args.server_cpu));
    let load_before = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let started = Instant::now();

    let defaults = default_config(&bin).await?;
    let text = bench_config(&defaults)?;
    let config = Config::from_toml_str(&text, "the benchmark config")
        .context("the benchmark's edit of `sockyard config` does not load")?;
    check_edits(&config)?;
    let mut targets = CODECS
        .iter()
        .map(|&codec| target(&config, codec))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let config_file = TempConfig::create(&text)?;

    let mut server = Server::start_sockyard(&bin, config_file.path(), server_cpu).await?;
    eprintln!(
        "sockyard pid {} on {}{}, endpoints {}",
        server.pid,
        server.addr,
        server_cpu.map_or(String::new(), |cpu| format!(" (CPU {cpu})")),
        targets
            .iter()
            .map(|t| format!("{} {}", t.name, t.path))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let payload = load::test_payload(args.payload_bytes);
    for target in &mut targets {
        let encoding = target.mode.encoding(target.schema.as_ref())?;
        let frames = ScFrames::new(encoding.context("a SocketCluster mode")?, "echo", &payload)?;
        let probed = load::probe(server.addr, &target.path, &frames).await;
        server.check_alive()?;
        (target.invoke_bytes, target.reply_bytes) =
            probed.with_context(|| format!("{} {}: first echo", target.name, target.path))?;
        eprintln!(
            "{}: echo invoke {} B, reply {} B, reply checked with the codec's decoder",
            target.name, target.invoke_bytes, target.reply_bytes
        );
    }

    // echo[workload][codec] holds one report per repetition; retried[workload][codec] counts
    // measurements thrown away as disturbed.
    let mut echo: Vec<Vec<Vec<LoadReport>>> = WORKLOADS
        .iter()
        .map(|_| targets.iter().map(|_| Vec::new()).collect())
        .collect();
    let mut retried = vec![vec![0usize; targets.len()]; WORKLOADS.len()];
    for rep in 0..args.reps {
        for (w, &(connections, window)) in WORKLOADS.iter().enumerate() {
            // Rotate who goes first, so that over three repetitions each codec takes each
            // place once and drift evens out.
            for k in 0..targets.len() {
                let which = (rep + k) % targets.len();
                let target = &targets[which];
                let spec = LoadSpec {
                    addr: server.addr,
                    path: target.path.clone(),
                    mode: target.mode,
                    schema: target.schema.clone(),
                    connections,
                    window,
                    payload_bytes: args.payload_bytes,
                    warmup: Duration::from_secs_f64(args.warmup),
                    duration: Duration::from_secs_f64(args.duration),
                    server_pid: Some(server.pid),
                    pinned,
                    stall_timeout: Duration::from_secs_f64(args.stall_timeout),
                };
                let label = format!(
                    "rep {} {:>8} {connections:>2}×{window:<2}",
                    rep + 1,
                    target.name
                );
                let mut attempt = 0;
                let report = loop {
                    let report = load::run(&spec).await.with_context(|| {
                        format!(
                            "{} ({}) echo {connections}×{window}",
                            target.name, target.path
                        )
                    });
                    server.check_alive()?;
                    let report = report?;
                    // Let the server tear the connections down before the next test.
                    settle(server.pid).await;
                    match report.foreign_load() {
                        Some((on_client, on_server))
                            if on_client.max(on_server) > DISTURBED && attempt < args.retries =>
                        {
                            attempt += 1;
                            eprintln!(
                                "{label}: other processes took {:.0} % of the load generator's \
                                 CPU and {:.0} % of the server's; measuring again",
                                on_client * 100.0,
                                on_server * 100.0
                            );
                        }
                        _ => break report,
                    }
                };
                retried[w][which] += attempt;
                eprintln!(
                    "{label}: {:>9.0} msgs/s, p50 {} µs, p99 {} µs, server {:.2} µs/msg \
                     ({:.0}% busy), client {:.0}% busy{}",
                    report.rate(),
                    report.latency_us.value_at_quantile(0.5),
                    report.latency_us.value_at_quantile(0.99),
                    report.server_us_per_message().unwrap_or(f64::NAN),
                    report.server_busy().unwrap_or(f64::NAN) * 100.0,
                    report.client_busy() * 100.0,
                    report
                        .foreign_load()
                        .map_or(String::new(), |(on_client, on_server)| format!(
                            ", others {:.0}%/{:.0}% of the client/server CPU",
                            on_client * 100.0,
                            on_server * 100.0
                        )),
                );
                echo[w][which].push(report);
            }
        }
    }
    let notes = server.stop().await;
    let load_after = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();

    let header = Header {
        args,
        taskset,
        load_before: load_before.trim().to_owned(),
        load_after: load_after.trim().to_owned(),
        wall: started.elapsed(),
    };
    print!("{}", render(&header, &targets, &echo, &retried));
    if !notes.is_empty() {
        println!(
            "\nsockyard logged {} warning/error line(s), first ones:",
            notes.len()
        );
        for line in notes.iter().take(10) {
            println!("  {line}");
        }
    }
    Ok(())
}

/// The output of `sockyard config`: the binary's own default configuration, every key.
async fn default_config(bin: &Path) -> anyhow::Result<String> {
    let output = Command::new(bin)
        .arg("config")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(15), output)
        .await
        .context("`sockyard config` took longer than 15 s")?
        .with_context(|| format!("running {} config", bin.display()))?;
    ensure!(
        output.status.success(),
        "`sockyard config` failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).context("`sockyard config` printed something not UTF-8")
}

/// Most connections the tests open at once (50), with room to spare.
const PER_IP: usize = 6000;

/// Keys the benchmark changes in the default config, by table: what `run` changes (address
/// and JSON log for finding it, the message budget and connection limits out of the way) and,
/// in every endpoint, pings every 10 minutes.
fn edits() -> [(&'static str, &'static str, String); 10] {
    [
        ("server", "listen", "\"127.0.0.1:0\"".to_owned()),
        ("server", "log_level", "\"info\"".to_owned()),
        ("server", "log_format", "\"json\"".to_owned()),
        ("server", "shutdown_timeout_ms", "1000".to_owned()),
        ("limits", "max_messages_per_second", "100000000".to_owned()),
        ("limits", "max_connections", (PER_IP * 2).to_string()),
        ("limits", "max_connections_per_ip", PER_IP.to_string()),
        ("limits", "handshake_timeout_ms", "60000".to_owned()),
        ("endpoint", "ping_interval_ms", "600000".to_owned()),
        ("endpoint", "ping_timeout_ms", "1200000".to_owned()),
    ]
}

/// The default config with [`edits`] applied, every other key as printed (so the endpoints
/// are exactly the default ones). Fails if a key to change is missing.
fn bench_config(defaults: &str) -> anyhow::Result<String> {
    let edits = edits();
    let mut applied = vec![0usize; edits.len()];
    let mut section = String::new();
    let mut in_string = false;
    let mut out = String::from("# Written by sockyard-bench codecs: `sockyard config` with the limits lifted and\n# pings rare; deleted when the run ends.\n");
    for line in defaults.lines() {
        let trimmed = line.trim();
        let was_in_string = in_string;
        if trimmed.matches("\"\"\"").count() % 2 == 1 {
            in_string = !in_string;
        }
        if was_in_string || trimmed.starts_with('#') {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        if trimmed.starts_with('[') {
            section = trimmed.trim_matches(|c| c == '[' || c == ']').to_owned();
        }
        let key = trimmed.split('=').next().unwrap_or_default().trim();
        match edits
            .iter()
            .position(|(table, name, _)| *table == section && *name == key)
        {
            Some(i) if trimmed.contains('=') => {
                applied[i] += 1;
                let _ = writeln!(out, "{key} = {}", edits[i].2);
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    let missing: Vec<String> = edits
        .iter()
        .zip(&applied)
        .filter(|(_, &count)| count == 0)
        .map(|((table, key, _), _)| format!("{table}.{key}"))
        .collect();
    ensure!(
        missing.is_empty(),
        "`sockyard config` does not print {}",
        missing.join(", ")
    );
    Ok(out)
}

/// Checks that the edits took effect in the loaded config.
fn check_edits(config: &Config) -> anyhow::Result<()> {
    ensure!(
        config.server.listen.port() == 0 && config.server.log_format == LogFormat::Json,
        "the benchmark config does not listen on port 0 with JSON logs"
    );
    ensure!(
        config.limits.max_messages_per_second == 100_000_000
            && config.limits.max_connections_per_ip == PER_IP,
        "the benchmark config did not lift the limits"
    );
    for endpoint in &config.endpoints {
        ensure!(
            endpoint.ping_interval_ms == 600_000,
            "endpoint {} still pings every {} ms",
            endpoint.path,
            endpoint.ping_interval_ms
        );
    }
    Ok(())
}

/// The first SocketCluster endpoint of `config` with `codec`.
fn target(config: &Config, codec: Codec) -> anyhow::Result<Target> {
    let endpoint = config
        .endpoints
        .iter()
        .find(|e| e.dialect == Dialect::SocketCluster && e.codec == codec)
        .with_context(|| {
            format!("the default config has no SocketCluster endpoint with {codec:?}")
        })?;
    let (name, mode, schema) = match codec {
        Codec::Json => ("json", Mode::Sc, None),
        Codec::Msgpack => ("msgpack", Mode::Msgpack, None),
        Codec::Protobuf => {
            let settings = &endpoint.protobuf;
            ensure!(
                settings.files.is_empty(),
                "the protobuf endpoint {} reads .proto files; the benchmark only compiles \
                 inline ones",
                endpoint.path
            );
            // Compiled as the server compiles it, so the ids match.
            let sources: Vec<(String, String)> = settings
                .inline
                .iter()
                .enumerate()
                .map(|(i, text)| (format!("inline[{i}].proto"), text.clone()))
                .collect();
            let schema = Schema::compile(&sources, settings.api, &settings.events)
                .with_context(|| format!("compiling the schema of {}", endpoint.path))?;
            ("protobuf", Mode::Protobuf, Some(Arc::new(schema)))
        }
        other => bail!("no load generator mode for {other:?}"),
    };
    Ok(Target {
        name,
        path: endpoint.path.clone(),
        mode,
        schema,
        invoke_bytes: 0,
        reply_bytes: 0,
    })
}

/// What the table header says about the run.
#[derive(Debug)]
struct Header<'a> {
    args: &'a CodecsArgs,
    taskset: bool,
    load_before: String,
    load_after: String,
    wall: Duration,
}

/// One metric: its name, decimals, whether a ratio to JSON means something, and how to read
/// it from a report.
type Metric = (&'static str, usize, bool, fn(&LoadReport) -> f64);

fn metrics(pinned: bool) -> Vec<Metric> {
    let mut metrics: Vec<Metric> = vec![
        ("msgs/s", 0, true, LoadReport::rate),
        ("p50 batch RTT, µs", 0, true, |r| {
            r.latency_us.value_at_quantile(0.5) as f64
        }),
        ("p99 batch RTT, µs", 0, true, |r| {
            r.latency_us.value_at_quantile(0.99) as f64
        }),
        ("server CPU µs/msg", 2, true, |r| {
            r.server_us_per_message().unwrap_or(f64::NAN)
        }),
        ("server core busy, %", 0, false, |r| {
            r.server_busy().unwrap_or(f64::NAN) * 100.0
        }),
        ("client core busy, %", 0, false, |r| r.client_busy() * 100.0),
    ];
    if pinned {
        metrics.push(("others on server CPU, %", 1, false, |r| {
            r.foreign_load().map_or(f64::NAN, |(_, s)| s * 100.0)
        }));
        metrics.push(("others on client CPU, %", 1, false, |r| {
            r.foreign_load().map_or(f64::NAN, |(c, _)| c * 100.0)
        }));
    }
    metrics
}

fn render(
    header: &Header<'_>,
    targets: &[Target],
    echo: &[Vec<Vec<LoadReport>>],
    retried: &[Vec<usize>],
) -> String {
    let args = header.args;
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut head = vec!["metric".to_owned()];
    head.extend(targets.iter().map(|t| t.name.to_owned()));
    head.extend(targets[1..].iter().map(|t| format!("{}/json", t.name)));
    rows.push(head);
    let mut remarks = Vec::new();
    for (w, &(connections, window)) in WORKLOADS.iter().enumerate() {
        let label = format!("echo {connections}×{window}");
        for (name, decimals, ratio, metric) in metrics(header.taskset) {
            let spreads: Vec<Spread> = echo[w]
                .iter()
                .map(|reports| Spread::of(reports.iter().map(metric).collect()))
                .collect();
            let mut row = vec![format!("{label}: {name}")];
            row.extend(spreads.iter().map(|s| s.show(decimals)));
            row.extend(spreads[1..].iter().map(|s| {
                if ratio {
                    format!("{:.2}", s.median / spreads[0].median)
                } else {
                    String::new()
                }
            }));
            rows.push(row);
        }
        for (which, target) in targets.iter().enumerate() {
            let reports = &echo[w][which];
            let busy = Spread::of(
                reports
                    .iter()
                    .map(|r| r.server_busy().unwrap_or(f64::NAN))
                    .collect(),
            );
            if window > 1 && busy.median < 0.9 {
                remarks.push(format!(
                    "{label} {}: the server core was {:.0} % busy (median): not server-bound, \
                     the load generator or the machine limited it",
                    target.name,
                    busy.median * 100.0
                ));
            }
            let client = Spread::of(reports.iter().map(LoadReport::client_busy).collect());
            if client.max > 0.9 {
                remarks.push(format!(
                    "{label} {}: the load generator's core reached {:.0} % busy",
                    target.name,
                    client.max * 100.0
                ));
            }
            let disturbed = reports
                .iter()
                .filter_map(LoadReport::foreign_load)
                .filter(|&(c, s)| c.max(s) > DISTURBED)
                .count();
            if retried[w][which] > 0 || disturbed > 0 {
                remarks.push(format!(
                    "{label} {}: {} measurement(s) taken again because other processes took \
                     over {:.0} % of a benchmark CPU; {disturbed} kept figure(s) still disturbed",
                    target.name,
                    retried[w][which],
                    DISTURBED * 100.0
                ));
            }
        }
    }

    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nSockyard echo by codec: JSON vs MessagePack (sc-codec-min-bin) vs protobuf \
         (sc-codec-protobuf), one server, default endpoints"
    );
    let _ = writeln!(
        out,
        "`echo` invoke with a {} B string over 127.0.0.1; {}; Sockyard: multi-thread runtime \
         with TOKIO_WORKER_THREADS=1",
        args.payload_bytes,
        if header.taskset {
            format!(
                "load generator on CPU {}, server on CPU {} (taskset)",
                args.client_cpu, args.server_cpu
            )
        } else {
            "nothing pinned".to_owned()
        }
    );
    let _ = writeln!(
        out,
        "{} s warm-up + {} s measured, {} repetition(s), codecs interleaved (first place \
         rotating); median [min–max]; RTT = one batch (window frames written at once → last \
         reply)",
        args.warmup, args.duration, args.reps
    );
    let _ = writeln!(
        out,
        "frames (WebSocket payload, invoke / reply): {}",
        targets
            .iter()
            .map(|t| format!(
                "{} {} {} B / {} B",
                t.name, t.path, t.invoke_bytes, t.reply_bytes
            ))
            .collect::<Vec<_>>()
            .join("; ")
    );
    let _ = writeln!(
        out,
        "loadavg before: {}; after: {}; wall time {:.0} s\n",
        header.load_before,
        header.load_after,
        header.wall.as_secs_f64()
    );
    let columns = rows[0].len();
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for (i, row) in rows.iter().enumerate() {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, &width)| pad(cell, width))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
        if i == 0 {
            let total = widths.iter().sum::<usize>() + 2 * (columns - 1);
            let _ = writeln!(out, "{}", "-".repeat(total));
        }
    }
    let pings: u64 = echo
        .iter()
        .flatten()
        .flatten()
        .map(|r| r.pings_answered)
        .sum();
    let other: u64 = echo
        .iter()
        .flatten()
        .flatten()
        .map(|r| r.other_frames)
        .sum();
    let _ = writeln!(
        out,
        "\npings answered during echo tests: {pings}; unexpected events ignored: {other}"
    );
    if !remarks.is_empty() {
        let _ = writeln!(out, "\nremarks:");
        for remark in remarks {
            let _ = writeln!(out, "- {remark}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_config_is_edited_and_still_loads() {
        let text = bench_config(sockyard::config::DEFAULT_TOML).unwrap();
        let config = Config::from_toml_str(&text, "test").unwrap();
        check_edits(&config).unwrap();
        let defaults = Config::from_toml_str(sockyard::config::DEFAULT_TOML, "defaults").unwrap();
        assert_eq!(config.endpoints.len(), defaults.endpoints.len());
        for (ours, theirs) in config.endpoints.iter().zip(&defaults.endpoints) {
            assert_eq!(
                (&ours.path, ours.codec, &ours.protobuf),
                (&theirs.path, theirs.codec, &theirs.protobuf)
            );
        }
        for codec in CODECS {
            target(&config, codec).unwrap();
        }
    }

    #[test]
    fn a_missing_key_is_an_error() {
        let err = bench_config("[server]\nlisten = \"127.0.0.1:8000\"\n").unwrap_err();
        assert!(err.to_string().contains("server.log_format"), "{err}");
    }
}
