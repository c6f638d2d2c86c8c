//! The `resources` subcommand: declared-resource throughput over WebSocket — `creature/create`
//! and `creature/get` per second on SQLite and on PostgreSQL — beside `echo` on the same server
//! in the same run, so each figure comes with its ratio to the protocol's own ceiling.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hdrhistogram::Histogram;
use serde_json::json;
use sockyard::client::{Client, ClientOptions};

use crate::args::BenchArgs;
use crate::bench_config::{sockyard_config, TempConfig};
use crate::cpu::CpuMeter;
use crate::load::new_histogram;
use crate::servers::Server;
use crate::table::{pad, Spread, Stopwatch};

/// Settings of one `resources` run.
#[derive(Debug, Clone, clap::Args)]
#[command(mut_arg("duration", |arg| arg.default_value("4")))]
pub(crate) struct ResourcesArgs {
    /// The binary, the measured windows, the repetitions.
    #[command(flatten)]
    pub(crate) bench: BenchArgs,
    /// Connections, each with one call in flight.
    #[arg(long, default_value_t = 16)]
    pub(crate) connections: usize,
    /// PostgreSQL server (a schema of its own is made and dropped); skipped when unreachable.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    pub(crate) postgres: String,
}

/// What one test measured.
#[derive(Debug, Clone)]
struct Measured {
    calls_per_second: f64,
    p50_us: u64,
    p99_us: u64,
    server_us_per_call: f64,
    errors: u64,
}

/// One backend's results: each operation with its repetitions.
type BackendResults = Vec<(Operation, Vec<Measured>)>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    Echo,
    Create,
    Get,
}

impl Operation {
    const ALL: [Self; 3] = [Self::Echo, Self::Create, Self::Get];

    fn label(self) -> &'static str {
        match self {
            Self::Echo => "echo",
            Self::Create => "creature/create",
            Self::Get => "creature/get",
        }
    }
}

/// Runs the whole benchmark and prints the table.
pub(crate) fn main(args: &ResourcesArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

async fn run(args: &ResourcesArgs) -> anyhow::Result<()> {
    let bin = args.bench.sockyard_binary()?;
    let stopwatch = Stopwatch::start();
    let mut sections = Vec::new();
    let sqlite_file =
        std::env::temp_dir().join(format!("sockyard-bench-{}.db", std::process::id()));
    let sqlite = backend(
        args,
        &bin,
        "SQLite",
        &format!("sqlite://{}", sqlite_file.display()),
    )
    .await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", sqlite_file.display()));
    }
    sections.push(("SQLite (file, WAL)", sqlite?));
    match postgres_schema(&args.postgres).await {
        Ok(schema) => {
            let url = format!("{}?options=-c%20search_path%3D{schema}", args.postgres);
            let measured = backend(args, &bin, "PostgreSQL", &url).await;
            drop_schema(&args.postgres, &schema).await;
            sections.push(("PostgreSQL", measured?));
        }
        Err(err) => println!("PostgreSQL skipped: {err:#}"),
    }
    println!("{}", render(args, &sections, stopwatch.elapsed()));
    Ok(())
}

async fn postgres_schema(url: &str) -> anyhow::Result<String> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(3))
        .connect(url)
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    let schema = format!("sockyard_bench_{}", std::process::id());
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
    )))
    .execute(&pool)
    .await?;
    pool.close().await;
    Ok(schema)
}

async fn drop_schema(url: &str, schema: &str) {
    if let Ok(pool) = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
    {
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE"
        )))
        .execute(&pool)
        .await;
        pool.close().await;
    }
}

/// Every test on one backend: a fresh server, `reps` rounds of echo, create, get.
async fn backend(
    args: &ResourcesArgs,
    bin: &Path,
    name: &str,
    storage: &str,
) -> anyhow::Result<BackendResults> {
    let config = format!(
        "{}\n[storage]\nurl = \"{storage}\"\nmax_connections = 8\n",
        sockyard_config("resources", 6000, "")
    );
    let config = TempConfig::create(&config)?;
    let mut server = Server::start_sockyard(bin, config.path(), Some(1)).await?;
    let url = format!("ws://{}/socketcluster/", server.addr);
    let meter = CpuMeter::new(Some(server.pid), None);
    let mut clients = Vec::new();
    for _ in 0..args.connections {
        let (client, _events) = Client::connect(&url, ClientOptions::default())
            .await
            .with_context(|| format!("connecting to {url}"))?;
        clients.push(client);
    }
    // Records for `get` to read: created before any measurement.
    let seeded = Arc::new(AtomicU64::new(0));
    for n in 0..1000u64 {
        clients[0]
            .invoke(
                "creature/create",
                json!({"name": format!("seed-{n}"), "age": n % 100}),
            )
            .await
            .context("seeding creatures")?;
        seeded.fetch_add(1, Ordering::Relaxed);
    }
    let mut results: Vec<(Operation, Vec<Measured>)> =
        Operation::ALL.iter().map(|op| (*op, Vec::new())).collect();
    for rep in 0..args.bench.reps {
        for (i, operation) in Operation::ALL.iter().enumerate() {
            let measured = measure(args, &clients, *operation, &meter, &seeded).await?;
            eprintln!(
                "{name} rep {}: {:<16} {:>8.0} calls/s",
                rep + 1,
                operation.label(),
                measured.calls_per_second
            );
            results[i].1.push(measured);
        }
        server.check_alive()?;
    }
    for client in &clients {
        client.close(1000, "done").await;
    }
    let notes = server.stop().await;
    for note in notes.iter().take(5) {
        eprintln!("{name} server: {note}");
    }
    Ok(results)
}

/// Closed-loop load: every connection calls, waits for the answer, calls again.
async fn measure(
    args: &ResourcesArgs,
    clients: &[Client],
    operation: Operation,
    meter: &CpuMeter,
    seeded: &Arc<AtomicU64>,
) -> anyhow::Result<Measured> {
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let counter = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for (c, client) in clients.iter().enumerate() {
        let client = client.clone();
        let (measuring, stop, counter, errors, seeded) = (
            measuring.clone(),
            stop.clone(),
            counter.clone(),
            errors.clone(),
            seeded.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut histogram = new_histogram();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let (event, data) = match operation {
                    Operation::Echo => ("echo", json!({"name": "echo", "age": n % 100})),
                    Operation::Create => (
                        "creature/create",
                        json!({"name": format!("c{c}-{n}"), "age": n % 100}),
                    ),
                    Operation::Get => {
                        let id = 1 + rand::random::<u64>() % seeded.load(Ordering::Relaxed).max(1);
                        ("creature/get", json!({ "id": id }))
                    }
                };
                let start = Instant::now();
                let ok = client.invoke(event, data).await.is_ok();
                if measuring.load(Ordering::Relaxed) {
                    if ok {
                        counter.fetch_add(1, Ordering::Relaxed);
                        let _ = histogram.record(start.elapsed().as_micros() as u64);
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            histogram
        }));
    }
    tokio::time::sleep(args.bench.timing.warmup()).await;
    let first = meter.sample()?;
    measuring.store(true, Ordering::Relaxed);
    tokio::time::sleep(args.bench.timing.duration()).await;
    measuring.store(false, Ordering::Relaxed);
    let cpu = first.until(&meter.sample()?);
    stop.store(true, Ordering::Relaxed);
    let mut histogram: Histogram<u64> = new_histogram();
    for task in tasks {
        histogram.add(task.await?)?;
    }
    let calls = counter.load(Ordering::Relaxed);
    Ok(Measured {
        calls_per_second: cpu.rate(calls),
        p50_us: histogram.value_at_quantile(0.5),
        p99_us: histogram.value_at_quantile(0.99),
        server_us_per_call: cpu.server_us_per(calls).unwrap_or(f64::NAN),
        errors: errors.load(Ordering::Relaxed),
    })
}

fn render(args: &ResourcesArgs, sections: &[(&str, BackendResults)], wall: Duration) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nSockyard resources over WebSocket: creature/create and creature/get beside echo on the same server"
    );
    let _ = writeln!(
        out,
        "{} connections × 1 call in flight (Rust client, JSON); server on CPU 1 with one worker; {} s warm-up + {} s measured, {} repetition(s); median [min–max]; wall time {:.0} s",
        args.connections,
        args.bench.timing.warmup,
        args.bench.timing.duration,
        args.bench.reps,
        wall.as_secs_f64()
    );
    for (name, rows) in sections {
        let _ = writeln!(out, "\n{name}");
        let _ = writeln!(
            out,
            "{} {} {} {} {} calls/s ÷ echo",
            pad("operation", 18),
            pad("calls/s", 26),
            pad("p50 µs", 18),
            pad("p99 µs", 18),
            pad("server CPU µs/call", 22),
        );
        let echo = rows
            .iter()
            .find(|(op, _)| *op == Operation::Echo)
            .map(|(_, m)| Spread::of_each(m, |m| m.calls_per_second).median)
            .unwrap_or(f64::NAN);
        for (operation, measured) in rows {
            let rate = Spread::of_each(measured, |m| m.calls_per_second);
            let p50 = Spread::of_each(measured, |m| m.p50_us as f64);
            let p99 = Spread::of_each(measured, |m| m.p99_us as f64);
            let cpu = Spread::of_each(measured, |m| m.server_us_per_call);
            let errors: u64 = measured.iter().map(|m| m.errors).sum();
            let _ = writeln!(
                out,
                "{} {} {} {} {} {:.3}{}",
                pad(operation.label(), 18),
                pad(&rate.show(0), 26),
                pad(&p50.show(0), 18),
                pad(&p99.show(0), 18),
                pad(&cpu.show(1), 22),
                rate.median / echo,
                if errors > 0 {
                    format!("  ({errors} errors)")
                } else {
                    String::new()
                }
            );
        }
    }
    out
}
