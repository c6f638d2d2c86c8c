//! The `fanout` table: per workload and server the medians of every figure, the
//! Sockyard/node ratios and the target verdict, then every window search and the remarks.

use std::fmt::Write as _;

use super::command::{FanoutArgs, Outcome, BUDGET_MARGIN};
use super::{FanoutReport, WindowChoice, PAYLOAD_BYTES, SEARCH_KEEP};
use crate::args::Cpus;
use crate::pinning;
use crate::table::{verdict, Metric, Spread, Stopwatch, Table};

/// The target: Sockyard's deliveries/s at least this multiple of node's, at a p99 latency no
/// worse than node's.
const TARGET_RATIO: f64 = 10.0;

/// What the table header says about the run.
#[derive(Debug)]
pub(super) struct Header<'a> {
    /// The run's settings.
    pub(super) args: &'a FanoutArgs,
    /// Where the load generator and the servers ran, if pinned.
    pub(super) pinned: Option<Cpus>,
    /// The run's wall time and load averages.
    pub(super) stopwatch: &'a Stopwatch,
    /// `node --version`.
    pub(super) node_version: String,
}

/// The figures of the table, the ratio flag saying whether a Sockyard/node ratio means
/// something.
fn metrics() -> [Metric<FanoutReport>; 12] {
    [
        Metric::new("deliveries/s", 0, true, FanoutReport::delivery_rate),
        Metric::new("publishes/s", 0, true, FanoutReport::publish_rate),
        Metric::new("window (publications in flight)", 0, false, |r| {
            r.window as f64
        }),
        Metric::new("p50 delivery latency, µs", 0, true, |r| {
            r.latency(0.5) as f64
        }),
        Metric::new("p99 delivery latency, µs", 0, true, |r| {
            r.latency(0.99) as f64
        }),
        Metric::new("lost deliveries", 0, false, |r| r.lost as f64),
        Metric::new("server CPU µs/delivery", 2, true, |r| {
            r.server_us_per_delivery().unwrap_or(f64::NAN)
        }),
        Metric::new("server core busy, %", 0, false, |r| {
            r.cpu.server_busy().unwrap_or(f64::NAN) * 100.0
        }),
        Metric::new("client core busy, %", 0, false, |r| {
            r.cpu.client_busy() * 100.0
        }),
        Metric::new("other processes on server CPU, %", 0, false, |r| {
            r.cpu
                .foreign_load()
                .map_or(f64::NAN, |(_, server)| server * 100.0)
        }),
        Metric::new("other processes on client CPU, %", 0, false, |r| {
            r.cpu
                .foreign_load()
                .map_or(f64::NAN, |(client, _)| client * 100.0)
        }),
        Metric::new("connect + subscribe, s", 1, true, |r| {
            r.connect_time.as_secs_f64()
        }),
    ]
}

/// The table, the window searches and the remarks.
pub(super) fn render(
    header: &Header<'_>,
    names: &[&str],
    outcomes: &[Vec<Vec<Outcome>>],
) -> String {
    let args = header.args;
    let node = names.iter().position(|&n| n == "node");
    let sockyard = names.iter().position(|&n| n == "sockyard");
    let mut head = vec!["metric".to_owned()];
    head.extend(names.iter().map(|&n| n.to_owned()));
    head.push(if node.is_some() && sockyard.is_some() {
        "sockyard/node".into()
    } else {
        String::new()
    });
    head.push("target".into());
    let mut table = Table::new(head);
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
        let mut medians = Vec::new();
        for metric in metrics() {
            let spreads: Vec<Spread> = ok
                .iter()
                .map(|reps| metric.spread(reps.iter().copied()))
                .collect();
            let mut row = vec![format!("{label}: {}", metric.name)];
            row.extend(spreads.iter().zip(&ok).map(|(spread, reps)| {
                if reps.is_empty() {
                    "failed".to_owned()
                } else {
                    spread.show(metric.decimals)
                }
            }));
            row.push(match (node, sockyard) {
                (Some(n), Some(s)) if metric.ratio && !ok[n].is_empty() && !ok[s].is_empty() => {
                    spreads[s].ratio_to(&spreads[n])
                }
                _ => String::new(),
            });
            row.push(String::new());
            table.push(row);
            medians.push((metric.name, spreads));
        }
        if let (Some(n), Some(s)) = (node, sockyard) {
            let median = |name: &str, server: usize| {
                medians
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map_or(f64::NAN, |(_, spreads)| spreads[server].median)
            };
            let target = if ok[n].is_empty() || ok[s].is_empty() {
                format!("≥ {TARGET_RATIO}× node at p99 ≤ node's: not measured")
            } else {
                let ratio = median("deliveries/s", s) / median("deliveries/s", n);
                let p99_ok =
                    median("p99 delivery latency, µs", s) <= median("p99 delivery latency, µs", n);
                let lossless = ok[s].iter().all(|r| r.lost == 0 && r.failed == 0);
                format!(
                    "≥ {TARGET_RATIO}× node at p99 ≤ node's: {} ({ratio:.1}×, p99 {}{})",
                    verdict(ratio >= TARGET_RATIO && p99_ok && lossless),
                    if p99_ok { "ok" } else { "worse" },
                    if lossless { "" } else { ", deliveries lost" }
                )
            };
            let row = table
                .row_mut(&format!("{label}: deliveries/s"))
                .expect("deliveries row");
            *row.last_mut().expect("target cell") = target;
        }
    }

    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nFan-out: 1 publisher → N subscribers on one channel; Sockyard vs socketcluster-server \
         20.0.1 (Node {})",
        header.node_version
    );
    let _ = writeln!(
        out,
        "{PAYLOAD_BYTES} B payloads over 127.0.0.1; {}; Sockyard: TOKIO_WORKER_THREADS=1",
        pinning::describe(header.pinned, "servers")
    );
    let _ = writeln!(
        out,
        "window: {}; {} s warm-up + {} s measured, {} repetition(s); median [min–max]; latency = \
         subscriber read time − send timestamp",
        match args.publisher.window {
            WindowChoice::Auto => format!(
                "searched (1, 2, 4, … ≤ {} for {} s each; smallest within {:.0} % of the best)",
                args.publisher.max_window,
                args.publisher.step,
                (1.0 - SEARCH_KEEP) * 100.0
            ),
            WindowChoice::Fixed(window) => format!("{window} publications in flight"),
        },
        args.bench.timing.warmup,
        args.bench.timing.duration,
        args.bench.reps
    );
    let _ = writeln!(out, "{}\n", header.stopwatch.summary());
    table.render(&mut out);

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
    let mut remarks = Vec::new();
    for (w, &subscribers) in args.subscribers.iter().enumerate() {
        for (s, reps) in outcomes[w].iter().enumerate() {
            for report in reps.iter().filter_map(|o| o.as_ref().ok()) {
                if !report.search.is_empty() {
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
                let parts = self::remarks(report);
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

/// What a table's readers should know about one report.
fn remarks(report: &FanoutReport) -> Vec<String> {
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
    if let Some(busy) = report.cpu.server_busy().filter(|&busy| busy < 0.9) {
        parts.push(format!(
            "server at {:.0} % of its core: the window, not the server, may have set the pace",
            busy * 100.0
        ));
    }
    if report.remeasured > 0 {
        parts.push(format!(
            "measured {} more time(s): other processes disturbed the earlier attempt(s)",
            report.remeasured
        ));
    }
    if let Some((client, server)) = report.cpu.disturbance() {
        parts.push(format!(
            "other processes took {:.0} % of the load generator's CPU and {:.0} % of the \
             server's during the window: figures disturbed",
            client * 100.0,
            server * 100.0
        ));
    }
    if report.cpu.client_busy() > 0.95 {
        parts.push(
            "load generator at ~100 % of its core: the figure may be client-bound".to_owned(),
        );
    }
    parts
}
