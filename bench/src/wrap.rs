//! The `wrap` subcommand: `cat` wrapped as a WebSocket server by `sockyard wrap`, ScaleSocket
//! 0.2.4 and websocketd, in the same run: round trips per second, p99 latency, and delivered
//! against sent — one room per client, and one room shared by 100 clients.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::{SinkExt as _, StreamExt as _};
use hdrhistogram::Histogram;
use tokio_tungstenite::tungstenite::Message;

use crate::args::{BenchArgs, Cpus, Pinning};
use crate::cpu::CpuMeter;
use crate::load::new_histogram;
use crate::servers::Server;
use crate::table::{pad, Spread};

/// How long a client waits for an echo before counting what is in flight as lost.
const LOSS_TIMEOUT: Duration = Duration::from_millis(500);

/// Settings of one `wrap` run.
#[derive(Debug, Clone, clap::Args)]
#[command(mut_arg("duration", |arg| arg.default_value("4")))]
pub(crate) struct WrapArgs {
    /// The binary, the measured windows, the repetitions.
    #[command(flatten)]
    pub(crate) bench: BenchArgs,
    /// The ScaleSocket binary (`cargo install scalesocket --version 0.2.4`).
    #[arg(long, default_value = "scalesocket")]
    pub(crate) scalesocket: String,
    /// The websocketd binary (Debian's `websocketd` package).
    #[arg(long, default_value = "websocketd")]
    pub(crate) websocketd: String,
    /// Clients (each in its own room) in the one-room-per-client test.
    #[arg(long, default_value_t = 50)]
    pub(crate) clients: usize,
    /// Messages each client keeps in flight in the one-room-per-client test.
    #[arg(long, default_value_t = 8)]
    pub(crate) window: usize,
    /// Clients in the shared-room test (each with one message in flight).
    #[arg(long, default_value_t = 100)]
    pub(crate) shared_clients: usize,
    /// Where the load generator and the servers (with their `cat` processes) run.
    #[command(flatten)]
    pub(crate) pinning: Pinning,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sockyard,
    ScaleSocket,
    Websocketd,
}

impl Kind {
    const ALL: [Self; 3] = [Self::Sockyard, Self::ScaleSocket, Self::Websocketd];

    fn name(self) -> &'static str {
        match self {
            Self::Sockyard => "sockyard wrap",
            Self::ScaleSocket => "scalesocket 0.2.4",
            Self::Websocketd => "websocketd",
        }
    }

    /// Whether clients can share a program (websocketd runs one per connection).
    fn has_rooms(self) -> bool {
        self != Self::Websocketd
    }
}

/// What one test measured.
#[derive(Debug, Clone, Default)]
struct Measured {
    round_trips_per_second: f64,
    p99_us: u64,
    /// CPU time of the server process alone (not its programs) per round trip.
    server_us_per_round_trip: f64,
    delivered: u64,
    expected: u64,
}

/// A free port on 127.0.0.1 for a wrapper to listen on.
fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Whether `program` is on the `PATH` (or is a path to a program).
fn have(program: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Kind {
    /// Starts this wrapper with `cat` on a free port.
    async fn start(
        self,
        args: &WrapArgs,
        sockyard: &Path,
        cpu: Option<usize>,
    ) -> anyhow::Result<Server> {
        let port = free_port()?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let (program, arguments): (PathBuf, Vec<String>) = match self {
            Self::Sockyard => (
                sockyard.to_owned(),
                vec![
                    "wrap".into(),
                    "--addr".into(),
                    addr.to_string(),
                    "--log".into(),
                    "json".into(),
                    "cat".into(),
                ],
            ),
            Self::ScaleSocket => (
                args.scalesocket.clone().into(),
                vec!["--addr".into(), addr.to_string(), "cat".into()],
            ),
            Self::Websocketd => (
                args.websocketd.clone().into(),
                vec![
                    "--address=127.0.0.1".into(),
                    format!("--port={port}"),
                    "--loglevel=error".into(),
                    "cat".into(),
                ],
            ),
        };
        Server::start_wrapper(self.name(), &program, &arguments, addr, cpu).await
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(url: &str) -> anyhow::Result<Ws> {
    let (ws, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(url),
    )
    .await
    .context("connect timed out")??;
    Ok(ws)
}

/// Shared counters of one test.
#[derive(Default)]
struct Counters {
    measuring: AtomicBool,
    stop: AtomicBool,
    round_trips: AtomicU64,
    sent: AtomicU64,
    delivered: AtomicU64,
}

/// A 32-byte message (no trailing newline); `counted` marks one sent inside the measured
/// window, whose deliveries are counted wherever they arrive.
fn message(client: usize, seq: u64, counted: bool) -> String {
    let flag = if counted { 'm' } else { 'w' };
    format!("c{client:05}-s{seq:012}-{flag}xxxxxxxx")
}

/// Sends message `seq` of `client`, counted if the measured window is open; returns when it
/// went out, or `None` if the connection is gone.
async fn send_message(
    ws: &mut Ws,
    client: usize,
    seq: u64,
    counters: &Counters,
) -> Option<(u64, Instant)> {
    let counted = counters.measuring.load(Ordering::Relaxed);
    ws.send(Message::text(message(client, seq, counted)))
        .await
        .ok()?;
    if counted {
        counters.sent.fetch_add(1, Ordering::Relaxed);
    }
    Some((seq, Instant::now()))
}

/// Sender, sequence number and whether it counts.
fn parse(text: &str) -> Option<(usize, u64, bool)> {
    let (client, rest) = text.strip_prefix('c')?.split_once("-s")?;
    let (seq, flag) = rest.split_once('-')?;
    Some((
        client.parse().ok()?,
        seq.parse().ok()?,
        flag.starts_with('m'),
    ))
}

/// One client in its own room, `window` messages in flight; a gap of LOSS_TIMEOUT counts
/// what is in flight as lost and starts again. After the window it stops sending and waits for
/// the echoes still on their way.
async fn own_room_client(
    mut ws: Ws,
    client: usize,
    window: usize,
    counters: Arc<Counters>,
) -> Histogram<u64> {
    let mut histogram = new_histogram();
    let mut in_flight: VecDeque<(u64, Instant)> = VecDeque::new();
    let mut seq = 0u64;
    loop {
        let stopping = counters.stop.load(Ordering::Relaxed);
        while !stopping && in_flight.len() < window {
            seq += 1;
            let Some(sent) = send_message(&mut ws, client, seq, &counters).await else {
                return histogram;
            };
            in_flight.push_back(sent);
        }
        if stopping && in_flight.is_empty() {
            return histogram;
        }
        match tokio::time::timeout(LOSS_TIMEOUT, ws.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                let Some((_, got, counted)) = parse(text.as_str()) else {
                    continue;
                };
                // Echoes come back in order; anything older than this one is lost.
                while let Some((sent, at)) = in_flight.pop_front() {
                    if sent == got {
                        if counted {
                            counters.round_trips.fetch_add(1, Ordering::Relaxed);
                            counters.delivered.fetch_add(1, Ordering::Relaxed);
                            let _ = histogram.record(at.elapsed().as_micros() as u64);
                        }
                        break;
                    }
                    if sent > got {
                        in_flight.push_front((sent, at));
                        break;
                    }
                }
            }
            Ok(Some(Ok(_))) => {}
            Ok(_) => return histogram,
            Err(_) if stopping => return histogram,
            Err(_) => in_flight.clear(),
        }
    }
}

/// One client of a shared room, one message in flight; every client's echo reaches everyone.
/// After the window it stops sending and keeps reading until the room is quiet.
async fn shared_room_client(mut ws: Ws, client: usize, counters: Arc<Counters>) -> Histogram<u64> {
    let mut histogram = new_histogram();
    let mut seq = 0u64;
    let mut waiting: Option<(u64, Instant)> = None;
    loop {
        let stopping = counters.stop.load(Ordering::Relaxed);
        if waiting.is_none() && !stopping {
            seq += 1;
            waiting = send_message(&mut ws, client, seq, &counters).await;
            if waiting.is_none() {
                return histogram;
            }
        }
        match tokio::time::timeout(LOSS_TIMEOUT, ws.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                let Some((from, got, counted)) = parse(text.as_str()) else {
                    continue;
                };
                if counted {
                    counters.delivered.fetch_add(1, Ordering::Relaxed);
                }
                if from == client && waiting.is_some_and(|(s, _)| s == got) {
                    if let Some((_, at)) = waiting.take() {
                        if counted {
                            counters.round_trips.fetch_add(1, Ordering::Relaxed);
                            let _ = histogram.record(at.elapsed().as_micros() as u64);
                        }
                    }
                }
            }
            Ok(Some(Ok(_))) => {}
            Ok(_) => return histogram,
            Err(_) if stopping => return histogram,
            Err(_) => waiting = None,
        }
    }
}

async fn measure(
    args: &WrapArgs,
    kind: Kind,
    sockyard: &Path,
    shared: bool,
    pinned: Option<Cpus>,
) -> anyhow::Result<Measured> {
    let server = kind
        .start(args, sockyard, pinned.map(|cpus| cpus.server))
        .await?;
    let counters = Arc::new(Counters::default());
    let clients = if shared {
        args.shared_clients
    } else {
        args.clients
    };
    let mut sockets = Vec::new();
    for client in 0..clients {
        let room = if shared {
            "shared".to_owned()
        } else {
            format!("bench-{client}")
        };
        sockets.push(connect(&format!("ws://{}/{room}", server.addr)).await?);
    }
    // Let every program start (and every shared-room client join) before the load.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut tasks = Vec::new();
    for (client, ws) in sockets.into_iter().enumerate() {
        let counters = counters.clone();
        tasks.push(if shared {
            tokio::spawn(shared_room_client(ws, client, counters))
        } else {
            tokio::spawn(own_room_client(ws, client, args.window, counters))
        });
    }
    tokio::time::sleep(args.bench.timing.warmup()).await;
    let meter = CpuMeter::new(Some(server.pid), None);
    let first = meter.sample()?;
    counters.measuring.store(true, Ordering::Relaxed);
    tokio::time::sleep(args.bench.timing.duration()).await;
    counters.measuring.store(false, Ordering::Relaxed);
    let cpu = first.until(&meter.sample()?);
    counters.stop.store(true, Ordering::Relaxed);
    let mut histogram = new_histogram();
    for task in tasks {
        histogram.add(task.await?)?;
    }
    let _ = server.stop().await;
    let round_trips = counters.round_trips.load(Ordering::Relaxed);
    let sent = counters.sent.load(Ordering::Relaxed);
    Ok(Measured {
        round_trips_per_second: cpu.rate(round_trips),
        p99_us: histogram.value_at_quantile(0.99),
        server_us_per_round_trip: cpu.server_us_per(round_trips).unwrap_or(f64::NAN),
        delivered: counters.delivered.load(Ordering::Relaxed),
        // In a shared room every message is echoed to every client.
        expected: if shared { sent * clients as u64 } else { sent },
    })
}

/// Runs the whole benchmark and prints the table.
pub(crate) fn main(args: &WrapArgs) -> anyhow::Result<()> {
    crate::runtime::run_pinned(&args.pinning, "servers", |pinned| async move {
        let sockyard = args.bench.sockyard_path()?;
        let mut kinds = Vec::new();
        for kind in Kind::ALL {
            let available = match kind {
                Kind::Sockyard => sockyard.is_file(),
                Kind::ScaleSocket => have(&args.scalesocket),
                Kind::Websocketd => have(&args.websocketd),
            };
            if available {
                kinds.push(kind);
            } else {
                println!("{} not found: left out of the comparison", kind.name());
            }
        }
        let started = Instant::now();
        let mut results: Vec<(Kind, bool, Vec<Measured>)> = Vec::new();
        for shared in [false, true] {
            for kind in &kinds {
                if shared && !kind.has_rooms() {
                    continue;
                }
                results.push((*kind, shared, Vec::new()));
            }
        }
        for rep in 0..args.bench.reps {
            for entry in &mut results {
                let measured = measure(args, entry.0, &sockyard, entry.1, pinned).await?;
                eprintln!(
                    "rep {}: {:<18} {:<11} {:>9.0} round trips/s, delivered {}/{}",
                    rep + 1,
                    entry.0.name(),
                    if entry.1 { "shared room" } else { "own rooms" },
                    measured.round_trips_per_second,
                    measured.delivered,
                    measured.expected
                );
                entry.2.push(measured);
            }
        }
        println!("{}", render(args, &results, pinned, started.elapsed()));
        Ok(())
    })
}

fn render(
    args: &WrapArgs,
    results: &[(Kind, bool, Vec<Measured>)],
    pinned: Option<Cpus>,
    wall: Duration,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n`cat` wrapped as a WebSocket server: sockyard wrap vs ScaleSocket 0.2.4 vs websocketd"
    );
    let _ = writeln!(
        out,
        "32-byte text messages, no newline; {}; {} s warm-up + {} s measured, {} repetition(s); median [min–max]; wall time {:.0} s",
        match pinned {
            Some(cpus) => format!(
                "servers (and their cat processes) on CPU {}, load generator on CPU {}",
                cpus.server, cpus.client
            ),
            None => "not pinned".to_owned(),
        },
        args.bench.timing.warmup,
        args.bench.timing.duration,
        args.bench.reps,
        wall.as_secs_f64()
    );
    for shared in [false, true] {
        let _ = writeln!(
            out,
            "\n{}",
            if shared {
                format!(
                    "one room shared by {} clients, 1 message in flight each (every echo goes to every client; websocketd has no rooms)",
                    args.shared_clients
                )
            } else {
                format!(
                    "one room per client: {} clients × {} messages in flight",
                    args.clients, args.window
                )
            }
        );
        let _ = writeln!(
            out,
            "{} {} {} {} {} sockyard ÷ this",
            pad("server", 20),
            pad("round trips/s", 26),
            pad("p99 µs", 22),
            pad("server CPU µs/rt", 20),
            pad("delivered / expected", 26),
        );
        let sockyard = results
            .iter()
            .find(|(k, s, _)| *k == Kind::Sockyard && *s == shared)
            .map(|(_, _, m)| Spread::of_each(m, |m| m.round_trips_per_second).median);
        for (kind, _, measured) in results.iter().filter(|(_, s, _)| *s == shared) {
            let rate = Spread::of_each(measured, |m| m.round_trips_per_second);
            let p99 = Spread::of_each(measured, |m| m.p99_us as f64);
            let cpu = Spread::of(
                measured
                    .iter()
                    .map(|m| m.server_us_per_round_trip)
                    .collect(),
            );
            let delivered: u64 = measured.iter().map(|m| m.delivered).sum();
            let expected: u64 = measured.iter().map(|m| m.expected).sum();
            let share = if expected == 0 {
                "-".to_owned()
            } else {
                format!(
                    "{delivered}/{expected} ({:.1} %)",
                    delivered as f64 * 100.0 / expected as f64
                )
            };
            let ratio = match sockyard {
                Some(ours) if *kind != Kind::Sockyard => format!("{:.2}", ours / rate.median),
                _ => String::new(),
            };
            let _ = writeln!(
                out,
                "{} {} {} {} {} {}",
                pad(kind.name(), 20),
                pad(&rate.show(0), 26),
                pad(&p99.show(0), 22),
                pad(&cpu.show(2), 20),
                pad(&share, 26),
                ratio
            );
        }
    }
    out
}
