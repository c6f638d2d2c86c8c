//! The `codecs` subcommand: `echo` throughput of each codec Sockyard speaks (JSON, MessagePack
//! in the `sc-codec-min-bin` form, protobuf in the `sc-codec-protobuf` form), measured on one
//! Sockyard process serving its default endpoints, every figure shown with its ratio to JSON.

use std::fmt::Write as _;
use std::sync::Arc;

use anyhow::{bail, ensure, Context as _};
use sockyard::codec::protobuf::Schema;
use sockyard::codec::Codec;
use sockyard::config::{Config, Dialect};

use crate::args::{BenchArgs, Cpus, EchoArgs, Pinning};
use crate::bench_config::{self, TempConfig};
use crate::cpu::DISTURBED;
use crate::frames::ScFrames;
use crate::load::{self, LoadReport, LoadSpec, Mode, ECHO_WORKLOADS};
use crate::pinning;
use crate::servers::{print_notes, Server};
use crate::table::{Spread, Stopwatch, Table};

/// Settings of one `codecs` run.
#[derive(Debug, Clone, clap::Args)]
#[command(
    mut_arg("duration", |arg| arg.default_value("4")),
    mut_arg("reps", |arg| arg.help(
        "Repetitions of each echo test (codecs interleaved, rotating who goes first); the \
         table shows medians"
    )),
    mut_arg("payload_bytes", |arg| arg.help("Length of the echoed string")),
    mut_arg("server_cpu", |arg| arg.help("CPU for the server")),
)]
pub(crate) struct CodecsArgs {
    /// The binary, the measured windows, the repetitions.
    #[command(flatten)]
    pub(crate) bench: BenchArgs,
    /// The echoed string.
    #[command(flatten)]
    pub(crate) echo: EchoArgs,
    /// Where the load generator and the server run.
    #[command(flatten)]
    pub(crate) pinning: Pinning,
    /// Times a test is measured again when other processes took over 5 % of the load
    /// generator's or the server's CPU during it.
    #[arg(long, default_value_t = 1)]
    pub(crate) retries: usize,
}

/// The codecs compared, JSON first (the others are shown as ratios to it).
const CODECS: [Codec; 3] = [Codec::Json, Codec::Msgpack, Codec::Protobuf];

/// Pins this process to the client CPU and runs the comparison on the load generator's
/// single-threaded runtime.
pub(crate) fn main(args: &CodecsArgs) -> anyhow::Result<()> {
    crate::runtime::run_pinned(&args.pinning, "server", |pinned| codecs(args, pinned))
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

/// Every repetition's reports, `echo[workload][codec]`, and how many measurements were
/// thrown away as disturbed, `retried[workload][codec]`.
#[derive(Debug)]
struct Results {
    echo: Vec<Vec<Vec<LoadReport>>>,
    retried: Vec<Vec<usize>>,
}

async fn codecs(args: &CodecsArgs, pinned: Option<Cpus>) -> anyhow::Result<()> {
    args.bench.check_reps()?;
    let bin = args.bench.sockyard_binary()?;
    let server_cpu = pinned.map(|cpus| cpus.server);
    let stopwatch = Stopwatch::start();

    let defaults = bench_config::default_config(&bin).await?;
    let text = bench_config::edit_defaults(&defaults)?;
    let config = Config::from_toml_str(&text, "the benchmark config")
        .context("the benchmark's edit of `sockyard config` does not load")?;
    bench_config::check_edits(&config)?;
    let mut targets = CODECS
        .iter()
        .map(|&codec| target(&config, codec))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let config_file = TempConfig::create(&text)?;

    let mut server = Server::start_sockyard(&bin, config_file.path(), server_cpu).await?;
    eprintln!(
        "{}, endpoints {}",
        server.describe(server_cpu),
        targets
            .iter()
            .map(|t| format!("{} {}", t.name, t.path))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let payload = load::test_payload(args.echo.payload_bytes);
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

    let mut results = Results {
        echo: ECHO_WORKLOADS
            .iter()
            .map(|_| targets.iter().map(|_| Vec::new()).collect())
            .collect(),
        retried: vec![vec![0usize; targets.len()]; ECHO_WORKLOADS.len()],
    };
    for rep in 0..args.bench.reps {
        for (w, &(connections, window)) in ECHO_WORKLOADS.iter().enumerate() {
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
                    echo: args.echo,
                    timing: args.bench.timing,
                    server_pid: Some(server.pid),
                    pinned,
                };
                let label = format!(
                    "rep {} {:>8} {connections:>2}×{window:<2}",
                    rep + 1,
                    target.name
                );
                let (report, attempts) = server
                    .measure(args.retries, &label, || load::run(&spec), |r| &r.cpu)
                    .await?;
                let report = report.with_context(|| {
                    format!(
                        "{} ({}) echo {connections}×{window}",
                        target.name, target.path
                    )
                })?;
                results.retried[w][which] += attempts;
                eprintln!("{label}: {}", report.progress());
                results.echo[w][which].push(report);
            }
        }
    }
    let notes = server.stop().await;

    print!("{}", render(args, pinned, &stopwatch, &targets, &results));
    print_notes("sockyard", &notes);
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

/// What a table's readers should know about one codec's reports in one workload.
fn remarks(
    label: &str,
    window: usize,
    name: &str,
    reports: &[LoadReport],
    retried: usize,
) -> Vec<String> {
    let mut remarks = Vec::new();
    let busy = Spread::of_each(reports, |r| r.cpu.server_busy().unwrap_or(f64::NAN));
    if window > 1 && busy.median < 0.9 {
        remarks.push(format!(
            "{label} {name}: the server core was {:.0} % busy (median): not server-bound, the \
             load generator or the machine limited it",
            busy.median * 100.0
        ));
    }
    let client = Spread::of_each(reports, |r| r.cpu.client_busy());
    if client.max > 0.9 {
        remarks.push(format!(
            "{label} {name}: the load generator's core reached {:.0} % busy",
            client.max * 100.0
        ));
    }
    let disturbed = reports
        .iter()
        .filter(|r| r.cpu.disturbance().is_some())
        .count();
    if retried > 0 || disturbed > 0 {
        remarks.push(format!(
            "{label} {name}: {retried} measurement(s) taken again because other processes took \
             over {:.0} % of a benchmark CPU; {disturbed} kept figure(s) still disturbed",
            DISTURBED * 100.0
        ));
    }
    remarks
}

fn render(
    args: &CodecsArgs,
    pinned: Option<Cpus>,
    stopwatch: &Stopwatch,
    targets: &[Target],
    results: &Results,
) -> String {
    let mut head = vec!["metric".to_owned()];
    head.extend(targets.iter().map(|t| t.name.to_owned()));
    head.extend(targets[1..].iter().map(|t| format!("{}/json", t.name)));
    let mut table = Table::new(head);
    let mut remarks = Vec::new();
    for (w, &(connections, window)) in ECHO_WORKLOADS.iter().enumerate() {
        let label = format!("echo {connections}×{window}");
        for metric in LoadReport::metrics(pinned.is_some()) {
            let spreads: Vec<Spread> = results.echo[w]
                .iter()
                .map(|reports| metric.spread(reports))
                .collect();
            let mut row = vec![format!("{label}: {}", metric.name)];
            row.extend(spreads.iter().map(|s| s.show(metric.decimals)));
            row.extend(spreads[1..].iter().map(|s| {
                if metric.ratio {
                    s.ratio_to(&spreads[0])
                } else {
                    String::new()
                }
            }));
            table.push(row);
        }
        for (which, target) in targets.iter().enumerate() {
            let (reports, retried) = (&results.echo[w][which], results.retried[w][which]);
            remarks.extend(self::remarks(&label, window, target.name, reports, retried));
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
        args.echo.payload_bytes,
        pinning::describe(pinned, "server")
    );
    let _ = writeln!(
        out,
        "{} s warm-up + {} s measured, {} repetition(s), codecs interleaved (first place \
         rotating); median [min–max]; RTT = one batch (window frames written at once → last \
         reply)",
        args.bench.timing.warmup, args.bench.timing.duration, args.bench.reps
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
    let _ = writeln!(out, "{}\n", stopwatch.summary());
    table.render(&mut out);
    let every = results.echo.iter().flatten().flatten();
    let _ = writeln!(out, "\n{}", LoadReport::ping_summary(every));
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
    fn every_codec_has_an_endpoint_in_the_edited_defaults() {
        let text = bench_config::edit_defaults(sockyard::config::DEFAULT_TOML).unwrap();
        let config = Config::from_toml_str(&text, "test").unwrap();
        for codec in CODECS {
            target(&config, codec).unwrap();
        }
    }
}
