//! The `run` subcommand: starts the baseline echo server and Sockyard side by side, pins them
//! away from the load generator, measures both with the same client in the same run, and
//! prints each figure with its Sockyard/baseline ratio and the project's targets.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, ChildStdin, Command};

use crate::load::{self, LoadReport, LoadSpec, Mode};
use crate::procfs;

/// Settings of one benchmark run.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct RunArgs {
    /// The sockyard binary; default: `sockyard` next to this executable.
    #[arg(long, value_name = "PATH")]
    pub(crate) sockyard: Option<PathBuf>,
    /// Seconds measured per echo test.
    #[arg(long, default_value_t = 5.0)]
    pub(crate) duration: f64,
    /// Seconds of load before each measured window.
    #[arg(long, default_value_t = 1.0)]
    pub(crate) warmup: f64,
    /// Repetitions of each echo test (interleaved baseline/Sockyard); the table shows medians.
    #[arg(long, default_value_t = 3)]
    pub(crate) reps: usize,
    /// Idle connections opened for the memory test.
    #[arg(long, default_value_t = 5000)]
    pub(crate) idle_connections: usize,
    /// Payload size in bytes.
    #[arg(long, default_value_t = 64)]
    pub(crate) payload_bytes: usize,
    /// CPU for the load generator (this process).
    #[arg(long, default_value_t = 0)]
    pub(crate) client_cpu: usize,
    /// CPU for the servers.
    #[arg(long, default_value_t = 1)]
    pub(crate) server_cpu: usize,
    /// Do not pin anything with taskset.
    #[arg(long)]
    pub(crate) no_pin: bool,
    /// Seconds a connection may wait for replies before the run fails as stalled.
    #[arg(long, default_value_t = 10.0)]
    pub(crate) stall_timeout: f64,
}

/// The echo workloads: (connections, messages in flight per connection).
const WORKLOADS: [(usize, usize); 2] = [(1, 1), (50, 10)];

/// The target for idle memory per handshaken connection, KiB.
const TARGET_IDLE_KIB: f64 = 4.0;
/// The target for Sockyard's echo throughput at 50×10, as a fraction of the baseline's.
const TARGET_ECHO_RATIO: f64 = 0.5;

/// How long a server may take to print its address.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);

/// Pins this process (all its threads) to `args.client_cpu` unless pinning is off, then
/// builds the single-threaded runtime the load generator runs on and runs the benchmark.
pub(crate) fn main(args: &RunArgs) -> anyhow::Result<()> {
    let taskset = pin_self(!args.no_pin, args.client_cpu)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the runtime")?;
    runtime.block_on(async {
        tokio::select! {
            outcome = run(args, taskset) => outcome,
            () = interrupted() => bail!("interrupted; servers stopped"),
        }
    })
}

/// Pins this process (all its threads) to `cpu` with `taskset` when `wanted` and `taskset`
/// exists; returns whether it did.
pub(crate) fn pin_self(wanted: bool, cpu: usize) -> anyhow::Result<bool> {
    if !wanted || !have_taskset() {
        return Ok(false);
    }
    let pinned = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", &cpu.to_string()])
        .arg(std::process::id().to_string())
        .stdout(Stdio::null())
        .status()
        .context("running taskset")?;
    ensure!(pinned.success(), "taskset could not pin the load generator");
    Ok(true)
}

/// Completes on SIGINT or SIGTERM, so the servers (killed on drop) never outlive us.
pub(crate) async fn interrupted() {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn have_taskset() -> bool {
    std::process::Command::new("taskset")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// The sockyard binary to run: `explicit`, or `sockyard` next to this executable.
pub(crate) fn sockyard_binary(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    let path = match explicit {
        Some(path) => path.to_owned(),
        None => std::env::current_exe()?
            .parent()
            .context("executable without a directory")?
            .join("sockyard"),
    };
    ensure!(
        path.is_file(),
        "no sockyard binary at {} (build it with `cargo build --release -p sockyard-cli`, or \
         pass --sockyard PATH)",
        path.display()
    );
    Ok(path)
}

async fn run(args: &RunArgs, taskset: bool) -> anyhow::Result<()> {
    ensure!(args.reps > 0, "--reps must be at least 1");
    let sockyard_bin = sockyard_binary(args.sockyard.as_deref())?;
    let server_cpu = taskset.then_some(args.server_cpu);
    let load_before = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let started = Instant::now();

    let config = TempConfig::write(args.idle_connections)?;
    let mut idle: [Vec<IdleReport>; 2] = [vec![], vec![]];
    let mut echo: Vec<[Vec<LoadReport>; 2]> = WORKLOADS.iter().map(|_| [vec![], vec![]]).collect();
    let mut notes: [Vec<String>; 2] = [vec![], vec![]];
    for rep in 0..args.reps {
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
            let report = idle_rss(&mut servers[which], args.idle_connections).await?;
            idle[which].push(report);
        }
        for (w, &(connections, window)) in WORKLOADS.iter().enumerate() {
            for which in order {
                let server = &mut servers[which];
                let spec = LoadSpec {
                    addr: server.addr,
                    path: server.path.to_owned(),
                    mode: server.mode,
                    schema: None,
                    connections,
                    window,
                    payload_bytes: args.payload_bytes,
                    warmup: Duration::from_secs_f64(args.warmup),
                    duration: Duration::from_secs_f64(args.duration),
                    server_pid: Some(server.pid),
                    pinned: None,
                    stall_timeout: Duration::from_secs_f64(args.stall_timeout),
                };
                let report = load::run(&spec)
                    .await
                    .with_context(|| format!("{} echo {connections}×{window}", server.name));
                server.check_alive()?;
                let report = report?;
                eprintln!(
                    "rep {} {:>8} {connections:>2}×{window:<2}: {:>9.0} msgs/s, p50 {} µs, \
                     p99 {} µs, server {:.2} µs/msg ({:.0}% busy), client {:.0}% busy",
                    rep + 1,
                    server.name,
                    report.rate(),
                    report.latency_us.value_at_quantile(0.5),
                    report.latency_us.value_at_quantile(0.99),
                    report.server_us_per_message().unwrap_or(f64::NAN),
                    report.server_busy().unwrap_or(f64::NAN) * 100.0,
                    report.client_busy() * 100.0,
                );
                echo[w][which].push(report);
            }
        }
        let [baseline, sockyard] = servers;
        notes[0].extend(baseline.stop().await);
        notes[1].extend(sockyard.stop().await);
    }
    let load_after = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();

    let context = Context {
        args,
        taskset,
        load_before: load_before.trim().to_owned(),
        load_after: load_after.trim().to_owned(),
        wall: started.elapsed(),
    };
    print!("{}", render(&context, &echo, &idle));
    for (name, notes) in ["baseline", "sockyard"].into_iter().zip(notes) {
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

/// The Sockyard config used for the benchmark: the defaults with limits out of the way and
/// pings rare; removed again when dropped.
#[derive(Debug)]
pub(crate) struct TempConfig(PathBuf);

impl TempConfig {
    fn write(idle_connections: usize) -> anyhow::Result<Self> {
        let per_ip = (idle_connections + 1000).max(6000);
        Self::create(&sockyard_config("run", per_ip, ""))
    }

    /// Writes `text` to a fresh file in the temp directory.
    pub(crate) fn create(text: &str) -> anyhow::Result<Self> {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("sockyard-bench-{}-{n}.toml", std::process::id()));
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        Ok(Self(path))
    }

    /// Where the file is.
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

/// A Sockyard config for benchmarking: listens on `127.0.0.1:0`, logs JSON (the address is
/// read from it), lifts the message budget, allows `per_ip` connections from one address,
/// pings every 10 minutes; `extra_limits` lines go into `[limits]`.
pub(crate) fn sockyard_config(command: &str, per_ip: usize, extra_limits: &str) -> String {
    format!(
        r#"# Written by sockyard-bench {command}; deleted when the run ends.
[server]
listen = "127.0.0.1:0"
log_level = "info"
log_format = "json"
shutdown_timeout_ms = 1000

[limits]
max_messages_per_second = 100000000
max_connections = {max}
max_connections_per_ip = {per_ip}
handshake_timeout_ms = 60000
{extra_limits}

[[endpoint]]
path = "/socketcluster/"
dialect = "socketcluster"
codec = "json"
protocol_version = "both"
ping_interval_ms = 600000
ping_timeout_ms = 1200000

[demo]
enabled = true
"#,
        max = per_ip * 2,
    )
}

impl Drop for TempConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A server child process under test. Killed when dropped.
#[derive(Debug)]
pub(crate) struct Server {
    /// Short name for tables and messages.
    pub(crate) name: &'static str,
    child: Child,
    /// Process id (CPU time and memory are read from /proc).
    pub(crate) pid: u32,
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    /// The WebSocket path.
    pub(crate) path: &'static str,
    /// What it speaks.
    pub(crate) mode: Mode,
    /// Warning and error lines the server logged.
    notes: Arc<Mutex<Vec<String>>>,
    /// The child's stdin, held open: a server that exits when its stdin closes (the Node one)
    /// then dies with us even if it is not killed.
    _stdin: Option<ChildStdin>,
}

impl Server {
    async fn start_baseline(cpu: Option<usize>) -> anyhow::Result<Self> {
        let exe = std::env::current_exe()?;
        let mut command = pinned(&exe, cpu);
        command.args(["baseline-server", "--listen", "127.0.0.1:0"]);
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn().context("starting the baseline server")?;
        let pid = child.id().context("baseline pid")?;
        let notes = Arc::new(Mutex::new(Vec::new()));
        collect_lines(child.stderr.take(), notes.clone(), |_| true);
        let mut stdout = BufReader::new(child.stdout.take().context("baseline stdout")?).lines();
        let line = tokio::time::timeout(STARTUP_TIMEOUT, stdout.next_line())
            .await
            .context("the baseline server did not start in time")??
            .context("the baseline server exited at startup")?;
        let addr = line
            .strip_prefix("listening on ")
            .and_then(|addr| addr.parse().ok())
            .with_context(|| format!("unexpected baseline output {line:?}"))?;
        Ok(Self {
            name: "baseline",
            child,
            pid,
            addr,
            path: "/",
            mode: Mode::Raw,
            notes,
            _stdin: None,
        })
    }

    /// Starts `node script 0` (the fan-out reference server) and reads its port from
    /// its first line, `listening on port N`.
    pub(crate) async fn start_node(
        node: &Path,
        script: &Path,
        cpu: Option<usize>,
    ) -> anyhow::Result<Self> {
        let mut command = pinned(node, cpu);
        command
            .arg(script)
            .arg("0")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {} {}", node.display(), script.display()))?;
        let pid = child.id().context("node pid")?;
        let stdin = child.stdin.take();
        let notes = Arc::new(Mutex::new(Vec::new()));
        collect_lines(child.stderr.take(), notes.clone(), |_| true);
        let mut stdout = BufReader::new(child.stdout.take().context("node stdout")?).lines();
        let line = tokio::time::timeout(STARTUP_TIMEOUT, stdout.next_line())
            .await
            .context("the node server did not start in time")??
            .context("the node server exited at startup")?;
        let port: u16 = line
            .strip_prefix("listening on port ")
            .and_then(|port| port.trim().parse().ok())
            .with_context(|| format!("unexpected node server output {line:?}"))?;
        collect_lines(Some(stdout.into_inner()), notes.clone(), |_| true);
        Ok(Self {
            name: "node",
            child,
            pid,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            path: "/socketcluster/",
            mode: Mode::Sc,
            notes,
            _stdin: stdin,
        })
    }

    /// Starts `bin serve --config config` with one tokio worker and reads its address from the
    /// JSON log.
    pub(crate) async fn start_sockyard(
        bin: &Path,
        config: &Path,
        cpu: Option<usize>,
    ) -> anyhow::Result<Self> {
        let mut command = pinned(bin, cpu);
        command
            .arg("serve")
            .arg("--config")
            .arg(config)
            // One worker on the one server core, like the single-threaded baseline.
            .env("TOKIO_WORKER_THREADS", "1")
            .env_remove("SOCKYARD_LISTEN")
            .env_remove("SOCKYARD_LOG_LEVEL")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let pid = child.id().context("sockyard pid")?;
        let mut stderr = BufReader::new(child.stderr.take().context("sockyard stderr")?).lines();
        let find_address = async {
            while let Some(line) = stderr.next_line().await? {
                let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                if let Some(local) = entry["fields"]["local"].as_str() {
                    return local
                        .parse::<SocketAddr>()
                        .with_context(|| format!("bad address in {line:?}"));
                }
            }
            bail!("sockyard exited at startup")
        };
        let addr = tokio::time::timeout(STARTUP_TIMEOUT, find_address)
            .await
            .context("sockyard did not report its address in time")??;
        let notes = Arc::new(Mutex::new(Vec::new()));
        let inner = stderr.into_inner();
        collect_lines(Some(inner), notes.clone(), |line| {
            !(line.contains("\"level\":\"INFO\"") || line.contains("\"level\":\"DEBUG\""))
        });
        Ok(Self {
            name: "sockyard",
            child,
            pid,
            addr,
            path: "/socketcluster/",
            mode: Mode::Sc,
            notes,
            _stdin: None,
        })
    }

    /// Fails (with what it logged) if the server has exited.
    pub(crate) fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            let notes = self.notes.lock().expect("notes lock").join("\n  ");
            if notes.is_empty() {
                bail!("{} exited ({status}) and logged no warning", self.name);
            }
            bail!("{} exited ({status}); it logged:\n  {notes}", self.name);
        }
        Ok(())
    }

    /// Kills the server and returns what it logged at warning level or above.
    pub(crate) async fn stop(mut self) -> Vec<String> {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        let notes = self.notes.lock().expect("notes lock");
        notes.clone()
    }
}

/// `program` run under `taskset -c CPU` when `cpu` is set. The child is killed on drop.
fn pinned(program: &Path, cpu: Option<usize>) -> Command {
    let mut command = match cpu {
        Some(cpu) => {
            let mut command = Command::new("taskset");
            command.arg("-c").arg(cpu.to_string()).arg(program);
            command
        }
        None => Command::new(program),
    };
    command.stdin(Stdio::null()).kill_on_drop(true);
    command
}

/// Drains a child's output in the background, keeping (at most 200 of) the lines `keep`
/// accepts.
fn collect_lines<R>(
    from: Option<R>,
    into: Arc<Mutex<Vec<String>>>,
    keep: impl Fn(&str) -> bool + Send + 'static,
) where
    R: AsyncRead + Unpin + Send + 'static,
{
    let Some(from) = from else { return };
    tokio::spawn(async move {
        let mut lines = BufReader::new(from).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if keep(&line) {
                let mut kept = into.lock().expect("notes lock");
                if kept.len() < 200 {
                    kept.push(line);
                }
            }
        }
    });
}

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

/// Opens `count` idle connections (handshaken for SocketCluster servers) and reports how
/// much the server's RSS grew per connection once it stopped changing.
async fn idle_rss(server: &mut Server, count: usize) -> anyhow::Result<IdleReport> {
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
    let streams = load::open_idle(addr, path, mode, count, 64).await?;
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
    let mut last = procfs::rss_kib(pid)?;
    let mut steady = 0;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = procfs::rss_kib(pid)?;
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

/// What the table header says about the run.
#[derive(Debug)]
struct Context<'a> {
    args: &'a RunArgs,
    taskset: bool,
    load_before: String,
    load_after: String,
    wall: Duration,
}

/// Median, minimum and maximum of some figures.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Spread {
    /// The median.
    pub(crate) median: f64,
    /// The smallest.
    pub(crate) min: f64,
    /// The largest.
    pub(crate) max: f64,
}

impl Spread {
    /// The spread of `values` (NaNs left out; all NaN if none is left).
    pub(crate) fn of(mut values: Vec<f64>) -> Self {
        values.retain(|v| v.is_finite());
        if values.is_empty() {
            return Self {
                median: f64::NAN,
                min: f64::NAN,
                max: f64::NAN,
            };
        }
        values.sort_by(f64::total_cmp);
        let mid = values.len() / 2;
        let median = if values.len() % 2 == 1 {
            values[mid]
        } else {
            (values[mid - 1] + values[mid]) / 2.0
        };
        Self {
            median,
            min: values[0],
            max: values[values.len() - 1],
        }
    }

    /// `median [min–max]`, or just the value when they are all equal.
    pub(crate) fn show(&self, decimals: usize) -> String {
        if self.min == self.max {
            format!("{:.*}", decimals, self.median)
        } else {
            format!(
                "{:.*} [{:.*}–{:.*}]",
                decimals, self.median, decimals, self.min, decimals, self.max
            )
        }
    }
}

/// One table row: label, baseline, sockyard, ratio, target verdict.
type Row = (String, String, String, String, String);

fn render(
    context: &Context<'_>,
    echo: &[[Vec<LoadReport>; 2]],
    idle: &[Vec<IdleReport>; 2],
) -> String {
    let args = context.args;
    let mut rows: Vec<Row> = Vec::new();
    let ratio = |b: Spread, s: Spread| format!("{:.2}", s.median / b.median);

    for (w, &(connections, window)) in WORKLOADS.iter().enumerate() {
        let label = format!("echo {connections}×{window}");
        type Metric = fn(&LoadReport) -> f64;
        let metrics: [(&str, usize, Metric); 6] = [
            ("msgs/s", 0, LoadReport::rate),
            ("p50 batch RTT, µs", 0, |r| {
                r.latency_us.value_at_quantile(0.5) as f64
            }),
            ("p99 batch RTT, µs", 0, |r| {
                r.latency_us.value_at_quantile(0.99) as f64
            }),
            ("server CPU µs/msg", 2, |r| {
                r.server_us_per_message().unwrap_or(f64::NAN)
            }),
            ("server core busy, %", 0, |r| {
                r.server_busy().unwrap_or(f64::NAN) * 100.0
            }),
            ("client core busy, %", 0, |r| r.client_busy() * 100.0),
        ];
        for (name, decimals, metric) in metrics {
            let spread = |which: usize| Spread::of(echo[w][which].iter().map(metric).collect());
            let (b, s) = (spread(0), spread(1));
            let target = if name == "msgs/s" && (connections, window) == (50, 10) {
                let pass = s.median / b.median >= TARGET_ECHO_RATIO;
                format!("≥ {TARGET_ECHO_RATIO}× baseline: {}", verdict(pass))
            } else {
                String::new()
            };
            rows.push((
                format!("{label}: {name}"),
                b.show(decimals),
                s.show(decimals),
                ratio(b, s),
                target,
            ));
        }
    }
    let [b, s] = [0, 1].map(|which| {
        Spread::of(
            idle[which]
                .iter()
                .map(IdleReport::kib_per_connection)
                .collect(),
        )
    });
    rows.push((
        format!("idle connection RSS, KB ({} conns)", args.idle_connections),
        b.show(2),
        s.show(2),
        ratio(b, s),
        format!(
            "≤ {TARGET_IDLE_KIB} KB (handshaken): {}",
            verdict(s.median <= TARGET_IDLE_KIB)
        ),
    ));

    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nSockyard vs baseline (hyper + fastwebsockets 0.10 defaults, single-threaded tokio)"
    );
    let _ = writeln!(
        out,
        "{} B payloads over 127.0.0.1; {}; Sockyard: multi-thread runtime with \
         TOKIO_WORKER_THREADS=1",
        args.payload_bytes,
        if context.taskset {
            format!(
                "load generator on CPU {}, both servers on CPU {} (taskset)",
                args.client_cpu, args.server_cpu
            )
        } else {
            "nothing pinned".to_owned()
        }
    );
    let _ = writeln!(
        out,
        "echo: {} s warm-up + {} s measured, {} repetition(s) interleaved; median [min–max]; \
         RTT = one batch (window frames written at once → last reply)",
        args.warmup, args.duration, args.reps
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
        describe(&idle[0]),
        describe(&idle[1]),
    );
    let _ = writeln!(
        out,
        "loadavg before: {}; after: {}; wall time {:.0} s\n",
        context.load_before,
        context.load_after,
        context.wall.as_secs_f64()
    );
    let header: Row = (
        "metric".into(),
        "baseline".into(),
        "sockyard".into(),
        "sockyard/baseline".into(),
        "target".into(),
    );
    let rows: Vec<Row> = std::iter::once(header).chain(rows).collect();
    let width =
        |f: fn(&Row) -> &String| rows.iter().map(|r| f(r).chars().count()).max().unwrap_or(0);
    let widths = [
        width(|r| &r.0),
        width(|r| &r.1),
        width(|r| &r.2),
        width(|r| &r.3),
    ];
    for (i, row) in rows.iter().enumerate() {
        let _ = writeln!(
            out,
            "{}  {}  {}  {}  {}",
            pad(&row.0, widths[0]),
            pad(&row.1, widths[1]),
            pad(&row.2, widths[2]),
            pad(&row.3, widths[3]),
            row.4
        );
        if i == 0 {
            let total = widths.iter().sum::<usize>() + 8 + 24;
            let _ = writeln!(out, "{}", "-".repeat(total));
        }
    }
    let pings: u64 = echo
        .iter()
        .flat_map(|pair| pair[1].iter())
        .map(|r| r.pings_answered)
        .sum();
    let other: u64 = echo
        .iter()
        .flat_map(|pair| pair[1].iter())
        .map(|r| r.other_frames)
        .sum();
    let _ = writeln!(
        out,
        "\nsockyard pings answered during echo tests: {pings}; unexpected events ignored: {other}"
    );
    out
}

/// PASS or FAIL.
pub(crate) fn verdict(pass: bool) -> &'static str {
    if pass {
        "PASS"
    } else {
        "FAIL"
    }
}

/// Left-aligns `text` in `width` characters (counting chars, not bytes, for µ and ×).
pub(crate) fn pad(text: &str, width: usize) -> String {
    let len = text.chars().count();
    format!("{text}{}", " ".repeat(width.saturating_sub(len)))
}
