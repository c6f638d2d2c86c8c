//! The fan-out (pub/sub) load generator: N subscriber connections on one channel and one
//! publisher that keeps a bounded number of publications in flight. It measures deliveries per
//! second, delivery latency, and whether every subscriber received every publication.
//!
//! Every connection is a task on the caller's single-threaded runtime. Subscribers find the
//! send timestamp and sequence number at fixed offsets of each frame and allocate nothing per
//! message. The publisher sends the next publication only while fewer than `window` are
//! unacknowledged *and* fewer than `window` have not yet reached every subscriber, so no server
//! is ever more than `window` publications behind on any connection.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use hdrhistogram::Histogram;
use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::load::{self, Client, CONNECT_TIMEOUT};
use crate::procfs;
use crate::wire::{self, FrameReader, OpCode};

/// The channel every subscriber joins and the publisher publishes to.
pub(crate) const CHANNEL: &str = "bench";

/// Length of the published data: a JSON string of this many ASCII characters.
pub(crate) const PAYLOAD_BYTES: usize = 64;

/// Publications the delivery ring tracks at once; windows stay below it.
const RING: u64 = 1024;

/// Largest window the publisher accepts.
pub(crate) const MAX_WINDOW: usize = 512;

/// A subscriber's receive buffer. Deliveries are ~120-byte frames, so this holds a few dozen.
const SUBSCRIBER_BUFFER: usize = 4096;
/// Free space below which a subscriber's buffer is compacted before reading.
const SUBSCRIBER_MIN_READ: usize = 1024;

/// Connections being opened at once.
const OPEN_PARALLEL: usize = 128;

/// The sequence number of the last publication, which tells subscribers to close.
const END_SEQ: u64 = 999_999_999_999;

/// How long the subscribers may take to see the end publication and leave.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a server sends each subscriber, up to the published data.
const DELIVERY_HEAD: &[u8] = b"{\"event\":\"#publish\",\"data\":{\"channel\":\"bench\",\"data\":\"";
/// What follows the published data in a delivery.
const DELIVERY_TAIL: &[u8] = b"\"}}";

/// How the publisher's window is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WindowChoice {
    /// This many publications in flight.
    Fixed(usize),
    /// Doubling from 1 while deliveries/s keeps improving (and p99 stays within the latency
    /// budget, if any); then the smallest window within [`SEARCH_KEEP`] of the best (see
    /// `bench/README.md`).
    Auto,
}

/// One step of the window search.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SearchStep {
    /// Publications in flight.
    pub(crate) window: usize,
    /// Deliveries per second over the step.
    pub(crate) rate: f64,
    /// p99 delivery latency over the step, µs.
    pub(crate) p99_us: u64,
}

/// A window is kept if its deliveries/s is at least this fraction of the best seen.
pub(crate) const SEARCH_KEEP: f64 = 0.95;
/// A doubling counts as an improvement if deliveries/s grew by at least this factor.
pub(crate) const SEARCH_GAIN: f64 = 1.05;
/// The search stops after this many doublings in a row without improvement.
pub(crate) const SEARCH_PATIENCE: usize = 2;

/// One fan-out run's parameters.
#[derive(Debug, Clone)]
pub(crate) struct FanoutSpec {
    /// Server address.
    pub(crate) addr: SocketAddr,
    /// WebSocket path to upgrade on.
    pub(crate) path: String,
    /// Subscriber connections.
    pub(crate) subscribers: usize,
    /// Publications in flight, or how to find the number.
    pub(crate) window: WindowChoice,
    /// Largest window the search tries.
    pub(crate) max_window: usize,
    /// Length of each search step (a quarter of it more is spent settling first).
    pub(crate) step: Duration,
    /// The search only keeps windows whose p99 stays within this many µs.
    pub(crate) latency_budget_us: Option<u64>,
    /// Publications per second, if paced; otherwise as fast as the window allows.
    pub(crate) rate: Option<f64>,
    /// Load applied before the search (at window 2) and again at the chosen window before
    /// measuring starts.
    pub(crate) warmup: Duration,
    /// Length of the measured window.
    pub(crate) duration: Duration,
    /// Server process whose CPU time is sampled at the window's edges.
    pub(crate) server_pid: Option<u32>,
    /// The CPUs the load generator and the server are pinned to: their busy time is sampled
    /// too, to tell how much other processes took from them.
    pub(crate) pinned: Option<(usize, usize)>,
    /// How long the publisher waits for a publication to reach every subscriber (or for an
    /// ack) before giving up on it.
    pub(crate) stall_timeout: Duration,
    /// Prefix of the progress lines printed on stderr.
    pub(crate) label: String,
}

/// What a fan-out run measured.
#[derive(Debug)]
pub(crate) struct FanoutReport {
    /// Subscriber connections.
    pub(crate) subscribers: usize,
    /// Time to open, handshake and subscribe every connection.
    pub(crate) connect_time: Duration,
    /// The window used for the measurement.
    pub(crate) window: usize,
    /// Window search steps.
    pub(crate) search: Vec<SearchStep>,
    /// Publications received by subscribers inside the window (time-based).
    pub(crate) deliveries: u64,
    /// Exact length of the window.
    pub(crate) elapsed: Duration,
    /// Publications sent inside the window.
    pub(crate) publications: u64,
    /// Delivery latency in µs (receive time − send timestamp) of deliveries received inside
    /// the window.
    pub(crate) latency_us: Histogram<u64>,
    /// Deliveries owed for the publications sent inside the window (publications × subscribers).
    pub(crate) expected: u64,
    /// Of those, never received once the run drained.
    pub(crate) lost: u64,
    /// Subscribers that missed at least one of them.
    pub(crate) incomplete: usize,
    /// Publications a subscriber received again or out of order.
    pub(crate) duplicates: u64,
    /// Publications the publisher stopped waiting for (not delivered to everyone in time).
    pub(crate) abandoned: u64,
    /// Why subscribers stopped early (closed by the server, errors); at most 20 kept.
    pub(crate) failures: Vec<String>,
    /// Number of subscribers that stopped early.
    pub(crate) failed: usize,
    /// Server CPU time (user + system) spent in the window.
    pub(crate) server_cpu: Option<Duration>,
    /// This process's CPU time in the window.
    pub(crate) client_cpu: Duration,
    /// Busy time of the load generator's and the server's CPUs in the window (if pinned).
    pub(crate) core_busy: Option<(Duration, Duration)>,
    /// Server pings answered during the whole run.
    pub(crate) pings_answered: u64,
    /// Frames that were neither deliveries, replies nor pings (ignored).
    pub(crate) other_frames: u64,
    /// Earlier attempts thrown away because other processes disturbed them (set by the
    /// caller).
    pub(crate) remeasured: usize,
}

impl FanoutReport {
    /// Deliveries per second.
    pub(crate) fn delivery_rate(&self) -> f64 {
        self.deliveries as f64 / self.elapsed.as_secs_f64()
    }

    /// Publications per second.
    pub(crate) fn publish_rate(&self) -> f64 {
        self.publications as f64 / self.elapsed.as_secs_f64()
    }

    /// Server CPU microseconds per delivery.
    pub(crate) fn server_us_per_delivery(&self) -> Option<f64> {
        let cpu = self.server_cpu?;
        (self.deliveries > 0).then(|| cpu.as_secs_f64() * 1e6 / self.deliveries as f64)
    }

    /// Fraction of one core the server used.
    pub(crate) fn server_busy(&self) -> Option<f64> {
        Some(self.server_cpu?.as_secs_f64() / self.elapsed.as_secs_f64())
    }

    /// Fraction of one core the load generator used.
    pub(crate) fn client_busy(&self) -> f64 {
        self.client_cpu.as_secs_f64() / self.elapsed.as_secs_f64()
    }

    /// Fractions of the load generator's and the server's CPUs that other processes used in
    /// the window (the CPU's busy time minus ours), if pinned.
    pub(crate) fn foreign_load(&self) -> Option<(f64, f64)> {
        let (client_core, server_core) = self.core_busy?;
        let window = self.elapsed.as_secs_f64();
        let foreign = |core: Duration, own: Duration| {
            (core.as_secs_f64() - own.as_secs_f64()).max(0.0) / window
        };
        Some((
            foreign(client_core, self.client_cpu),
            foreign(server_core, self.server_cpu.unwrap_or_default()),
        ))
    }

    /// Latency quantile in µs.
    pub(crate) fn latency(&self, quantile: f64) -> u64 {
        self.latency_us.value_at_quantile(quantile)
    }
}

/// State the subscriber tasks, the publisher task and the sampler share. Everything runs on
/// one thread, so the atomics are never contended; they only make the tasks `Send`.
#[derive(Debug)]
struct Shared {
    /// Time zero of the timestamps in publications.
    base: Instant,
    /// Subscribers still connected.
    live: AtomicU64,
    /// Deliveries received so far.
    deliveries: AtomicU64,
    /// For publication `s`, `ring[s % RING]` counts the subscribers that received it.
    ring: Box<[AtomicU64]>,
    /// Publications below this are delivered everywhere (or given up): the ring ignores them.
    released: AtomicU64,
    /// Publications sent so far (the next sequence number).
    sent: AtomicU64,
    /// The measured publications are `range_start..range_end`.
    range_start: AtomicU64,
    range_end: AtomicU64,
    /// Per subscriber: measured publications received.
    in_range: Box<[AtomicU64]>,
    /// Deliveries whose sequence number was not above the previous one.
    duplicates: AtomicU64,
    /// Record latencies (inside the measured window).
    measuring: AtomicBool,
    latency: Mutex<Histogram<u64>>,
    /// Wakes the publisher when a publication has reached every subscriber or one left.
    progress: Notify,
    /// Publications in flight allowed now.
    window: AtomicUsize,
    /// Stop publishing, drain, then send the end publication.
    stop: AtomicBool,
    /// Publications the publisher gave up waiting for.
    abandoned: AtomicU64,
    pings: AtomicU64,
    other: AtomicU64,
    failures: Mutex<Vec<String>>,
}

impl Shared {
    fn new(subscribers: usize) -> Self {
        Self {
            base: Instant::now(),
            live: AtomicU64::new(subscribers as u64),
            deliveries: AtomicU64::new(0),
            ring: (0..RING).map(|_| AtomicU64::new(0)).collect(),
            released: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            range_start: AtomicU64::new(u64::MAX),
            range_end: AtomicU64::new(u64::MAX),
            in_range: (0..subscribers).map(|_| AtomicU64::new(0)).collect(),
            duplicates: AtomicU64::new(0),
            measuring: AtomicBool::new(false),
            latency: Mutex::new(load::new_histogram()),
            progress: Notify::new(),
            window: AtomicUsize::new(1),
            stop: AtomicBool::new(false),
            abandoned: AtomicU64::new(0),
            pings: AtomicU64::new(0),
            other: AtomicU64::new(0),
            failures: Mutex::new(Vec::new()),
        }
    }

    /// Microseconds since `base`: the clock of the timestamps in publications.
    fn now_us(&self) -> u64 {
        self.base.elapsed().as_micros() as u64
    }
}

/// Runs one fan-out test: connects and subscribes everyone, finds the window (if asked),
/// warms up, measures, drains, checks that every subscriber got every measured publication.
/// Must run inside a single-threaded tokio runtime.
pub(crate) async fn run(spec: &FanoutSpec) -> anyhow::Result<FanoutReport> {
    ensure!(spec.subscribers > 0, "no subscribers");
    let max_window = spec.max_window.clamp(1, MAX_WINDOW);
    if let WindowChoice::Fixed(window) = spec.window {
        ensure!(
            (1..=MAX_WINDOW).contains(&window),
            "the window must be 1..={MAX_WINDOW}"
        );
    }
    let ticks = procfs::ticks_per_second();
    let shared = Arc::new(Shared::new(spec.subscribers));

    let connecting = Instant::now();
    let subscribers = open_subscribers(spec.addr, &spec.path, spec.subscribers).await?;
    let publisher = load::open_json(spec.addr, &spec.path)
        .await
        .context("publisher")?;
    let connect_time = connecting.elapsed();
    eprintln!(
        "{}: {} subscribers connected and subscribed in {:.1} s",
        spec.label,
        spec.subscribers,
        connect_time.as_secs_f64()
    );

    let mut subscriber_tasks = JoinSet::new();
    for (index, client) in subscribers.into_iter().enumerate() {
        let shared = shared.clone();
        subscriber_tasks.spawn(async move {
            if let Err(err) = receive(client, index, &shared).await {
                shared.live.fetch_sub(1, Ordering::Relaxed);
                let mut failures = shared.failures.lock().expect("failures lock");
                if failures.len() < 20 {
                    failures.push(format!("subscriber {index}: {err:#}"));
                }
                drop(failures);
                // The publisher may be waiting for this one.
                shared.progress.notify_one();
            }
        });
    }
    let mut publisher_task = JoinSet::new();
    {
        let (shared, rate, stall) = (shared.clone(), spec.rate, spec.stall_timeout);
        publisher_task.spawn(async move {
            publish(publisher, &shared, rate, stall)
                .await
                .context("publisher")
        });
    }

    let sample = |shared: &Shared| -> anyhow::Result<Sample> {
        Ok(Sample {
            at: Instant::now(),
            deliveries: shared.deliveries.load(Ordering::Relaxed),
            server: spec
                .server_pid
                .map(|pid| procfs::cpu_time(pid, ticks))
                .transpose()?,
            client: procfs::cpu_time(std::process::id(), ticks)?,
            cores: spec
                .pinned
                .map(|(client, server)| {
                    anyhow::Ok((
                        procfs::cpu_busy(client, ticks)?,
                        procfs::cpu_busy(server, ticks)?,
                    ))
                })
                .transpose()?,
        })
    };

    let mut search = Vec::new();
    let measured = async {
        let window = match spec.window {
            WindowChoice::Fixed(window) => window,
            WindowChoice::Auto => {
                // Warm the server up (JIT, allocator) so the first steps are not penalised.
                shared.window.store(2, Ordering::Relaxed);
                shared.progress.notify_one();
                tokio::time::sleep(spec.warmup).await;
                let window = search_window(&shared, spec, max_window, &mut search).await;
                eprintln!(
                    "{}: window search {} → {window}",
                    spec.label,
                    search
                        .iter()
                        .map(|step| format!(
                            "{}: {:.0}/s p99 {} µs",
                            step.window, step.rate, step.p99_us
                        ))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                window
            }
        };
        if spec.window == WindowChoice::Auto {
            // The search ends at a larger window than it chooses, and publications still queued
            // from it would delay the next ones: pause until they have all been delivered.
            shared.window.store(0, Ordering::Relaxed);
            let draining = Instant::now();
            while shared.sent.load(Ordering::Relaxed) > shared.released.load(Ordering::Relaxed)
                && draining.elapsed() < spec.stall_timeout * 2
            {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        shared.window.store(window, Ordering::Relaxed);
        shared.progress.notify_one();
        tokio::time::sleep(spec.warmup).await;
        shared.latency.lock().expect("latency lock").reset();
        let first = sample(&shared)?;
        let range_start = shared.sent.load(Ordering::Relaxed);
        shared.range_start.store(range_start, Ordering::Relaxed);
        shared.measuring.store(true, Ordering::Relaxed);
        tokio::time::sleep(spec.duration).await;
        shared.measuring.store(false, Ordering::Relaxed);
        let range_end = shared.sent.load(Ordering::Relaxed);
        shared.range_end.store(range_end, Ordering::Relaxed);
        shared.stop.store(true, Ordering::Relaxed);
        shared.progress.notify_one();
        let last = sample(&shared)?;
        anyhow::Ok((window, first, last, range_start, range_end))
    };
    let (window, first, last, range_start, range_end) = tokio::select! {
        measured = measured => measured?,
        Some(joined) = publisher_task.join_next() => {
            joined??;
            bail!("the publisher stopped before the end of the run");
        }
    };

    // Drain: the publisher waits until every publication reached every subscriber (giving up
    // after the stall timeout), then sends the end publication and leaves.
    let drain_limit = spec.stall_timeout * 2 + Duration::from_secs(5);
    match tokio::time::timeout(drain_limit, publisher_task.join_next()).await {
        Ok(Some(joined)) => joined??,
        Ok(None) => {}
        Err(_) => bail!("the publisher did not drain within {drain_limit:?}"),
    }
    // Subscribers leave on the end publication; the ones that do not are cut off.
    let _ = tokio::time::timeout(GOODBYE_TIMEOUT, async {
        while subscriber_tasks.join_next().await.is_some() {}
    })
    .await;
    let stragglers = subscriber_tasks.len();
    subscriber_tasks.shutdown().await;
    if stragglers > 0 {
        eprintln!(
            "{}: {stragglers} subscriber(s) did not receive the end publication",
            spec.label
        );
    }

    let per_subscriber = range_end - range_start;
    let mut lost = 0;
    let mut incomplete = 0;
    for received in shared.in_range.iter() {
        let missing = per_subscriber.saturating_sub(received.load(Ordering::Relaxed));
        lost += missing;
        incomplete += usize::from(missing > 0);
    }
    let latency_us = std::mem::replace(
        &mut *shared.latency.lock().expect("latency lock"),
        load::new_histogram(),
    );
    let failures = std::mem::take(&mut *shared.failures.lock().expect("failures lock"));
    Ok(FanoutReport {
        subscribers: spec.subscribers,
        connect_time,
        window,
        search,
        deliveries: last.deliveries - first.deliveries,
        elapsed: last.at - first.at,
        publications: per_subscriber,
        latency_us,
        expected: per_subscriber * spec.subscribers as u64,
        lost,
        incomplete,
        duplicates: shared.duplicates.load(Ordering::Relaxed),
        abandoned: shared.abandoned.load(Ordering::Relaxed),
        failed: spec.subscribers - shared.live.load(Ordering::Relaxed) as usize,
        failures,
        server_cpu: last.server.zip(first.server).map(|(b, a)| b - a),
        client_cpu: last.client - first.client,
        core_busy: last
            .cores
            .zip(first.cores)
            .map(|((c1, s1), (c0, s0))| (c1 - c0, s1 - s0)),
        pings_answered: shared.pings.load(Ordering::Relaxed),
        other_frames: shared.other.load(Ordering::Relaxed),
        remeasured: 0,
    })
}

/// Counters read at one edge of a measured interval.
#[derive(Debug)]
struct Sample {
    at: Instant,
    deliveries: u64,
    server: Option<Duration>,
    client: Duration,
    /// Busy time of the client's and the server's CPUs.
    cores: Option<(Duration, Duration)>,
}

/// Tries windows 1, 2, 4, …, recording deliveries/s and p99 for each, and returns the
/// smallest window within [`SEARCH_KEEP`] of the best deliveries/s among the windows whose p99
/// kept within `spec.latency_budget_us`. Doubling stops at `max_window`, or after
/// [`SEARCH_PATIENCE`] steps in a row without a [`SEARCH_GAIN`] improvement, or as many in a
/// row over the budget (one noisy step does not end the search).
async fn search_window(
    shared: &Shared,
    spec: &FanoutSpec,
    max_window: usize,
    steps: &mut Vec<SearchStep>,
) -> usize {
    let budget = spec.latency_budget_us.unwrap_or(u64::MAX);
    let mut best = 0.0_f64;
    let mut without_gain = 0;
    let mut over_budget = 0;
    let mut window = 1;
    loop {
        shared.window.store(window, Ordering::Relaxed);
        shared.progress.notify_one();
        tokio::time::sleep(spec.step / 4).await;
        let (rate, p99_us) = measure_step(shared, spec.step).await;
        steps.push(SearchStep {
            window,
            rate,
            p99_us,
        });
        if rate >= best * SEARCH_GAIN {
            without_gain = 0;
        } else {
            without_gain += 1;
        }
        best = best.max(rate);
        over_budget = if p99_us > budget { over_budget + 1 } else { 0 };
        if without_gain >= SEARCH_PATIENCE || over_budget >= SEARCH_PATIENCE || window >= max_window
        {
            break;
        }
        window = (window * 2).min(max_window);
    }
    choose_window(steps, budget)
}

/// Publications that must complete within a search step, so that a step is not decided by
/// where its edges fall in the bursts of a slow fan-out.
const STEP_PUBLICATIONS: u64 = 10;

/// Deliveries/s and p99 (µs) over at least `step` and at least [`STEP_PUBLICATIONS`]
/// completed publications (at most 5 × `step`).
async fn measure_step(shared: &Shared, step: Duration) -> (f64, u64) {
    shared.latency.lock().expect("latency lock").reset();
    shared.measuring.store(true, Ordering::Relaxed);
    let at = Instant::now();
    let deliveries = shared.deliveries.load(Ordering::Relaxed);
    let released = shared.released.load(Ordering::Relaxed);
    tokio::time::sleep(step).await;
    while shared.released.load(Ordering::Relaxed) - released < STEP_PUBLICATIONS
        && at.elapsed() < step * 5
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rate = (shared.deliveries.load(Ordering::Relaxed) - deliveries) as f64
        / at.elapsed().as_secs_f64();
    shared.measuring.store(false, Ordering::Relaxed);
    let p99_us = shared
        .latency
        .lock()
        .expect("latency lock")
        .value_at_quantile(0.99);
    (rate, p99_us)
}

/// The smallest window within [`SEARCH_KEEP`] of the best deliveries/s among the steps whose
/// p99 is within `budget`; 1 if none is.
fn choose_window(steps: &[SearchStep], budget: u64) -> usize {
    let within = || steps.iter().filter(|step| step.p99_us <= budget);
    let best = within().map(|step| step.rate).fold(0.0, f64::max);
    within()
        .find(|step| step.rate >= best * SEARCH_KEEP)
        .map_or(1, |step| step.window)
}

/// Opens `count` subscribers, at most [`OPEN_PARALLEL`] at a time.
async fn open_subscribers(
    addr: SocketAddr,
    path: &str,
    count: usize,
) -> anyhow::Result<Vec<Client>> {
    let mut clients = Vec::with_capacity(count);
    let mut opening = JoinSet::new();
    let mut started = 0;
    while clients.len() < count {
        while started < count && opening.len() < OPEN_PARALLEL {
            let path = path.to_owned();
            let index = started;
            opening.spawn(async move {
                open_subscriber(addr, &path)
                    .await
                    .with_context(|| format!("subscriber {index}"))
            });
            started += 1;
        }
        let Some(joined) = opening.join_next().await else {
            break;
        };
        clients.push(joined??);
    }
    Ok(clients)
}

/// Connects, handshakes and subscribes to [`CHANNEL`].
async fn open_subscriber(addr: SocketAddr, path: &str) -> anyhow::Result<Client> {
    let mut client = load::open_json(addr, path).await?;
    let cid = client.take_cid();
    let text = format!(
        "{{\"event\":\"#subscribe\",\"data\":{{\"channel\":\"{CHANNEL}\"}},\"cid\":{cid}}}"
    );
    let mut out = Vec::new();
    wire::push_frame(&mut out, OpCode::Text, text.as_bytes(), client.mask);
    client.stream.write_all(&out).await?;
    let expected = format!("{{\"rid\":{cid}}}");
    tokio::time::timeout(CONNECT_TIMEOUT, async {
        loop {
            let mut pongs = 0;
            while let Some(frame) = client.reader.next_frame()? {
                let payload = client.reader.payload(&frame);
                match frame.opcode {
                    OpCode::Text if load::is_sc_ping(payload) => pongs += 1,
                    OpCode::Text if payload == expected.as_bytes() => return Ok(()),
                    OpCode::Text => bail!("#subscribe answered with {}", load::show(payload)),
                    OpCode::Close => {
                        bail!("closed while subscribing: {}", load::close_reason(payload))
                    }
                    _ => bail!(
                        "unexpected frame while subscribing: {}",
                        load::show(payload)
                    ),
                }
            }
            client.answer_pings(pongs).await?;
            client.reader.fill(&mut client.stream).await?;
        }
    })
    .await
    .context("no #subscribe reply in time")??;
    client.reader.resize(SUBSCRIBER_BUFFER, SUBSCRIBER_MIN_READ);
    Ok(client)
}

/// A subscriber's life: read, account for every delivery, answer pings; returns when the end
/// publication arrives (after saying goodbye) and fails when the connection does.
async fn receive(mut client: Client, index: usize, shared: &Shared) -> anyhow::Result<()> {
    let mut next_seq = 0;
    let mut out = Vec::new();
    loop {
        let now_us = shared.now_us();
        let ended = take_deliveries(
            &mut client.reader,
            client.mask,
            index,
            shared,
            now_us,
            &mut next_seq,
            &mut out,
        )?;
        if ended {
            // Say goodbye properly (1000) and leave without waiting for the answer.
            wire::push_frame(&mut out, OpCode::Close, &1000u16.to_be_bytes(), client.mask);
        }
        if !out.is_empty() {
            client.stream.write_all(&out).await?;
            out.clear();
        }
        if ended {
            return Ok(());
        }
        client.reader.fill(&mut client.stream).await?;
    }
}

/// Accounts for every frame buffered in `reader`; answers go into `out`. Returns whether the
/// end publication was among them. Synchronous, so nothing else runs in between.
fn take_deliveries(
    reader: &mut FrameReader,
    mask: [u8; 4],
    index: usize,
    shared: &Shared,
    now_us: u64,
    next_seq: &mut u64,
    out: &mut Vec<u8>,
) -> anyhow::Result<bool> {
    let range_start = shared.range_start.load(Ordering::Relaxed);
    let range_end = shared.range_end.load(Ordering::Relaxed);
    let released = shared.released.load(Ordering::Relaxed);
    let live = shared.live.load(Ordering::Relaxed);
    let mut latency = shared
        .measuring
        .load(Ordering::Relaxed)
        .then(|| shared.latency.lock().expect("latency lock"));
    let (mut delivered, mut in_range, mut duplicates, mut other, mut pings) = (0, 0, 0, 0, 0);
    let mut ended = false;
    while let Some(frame) = reader.next_frame()? {
        let payload = reader.payload(&frame);
        ensure!(frame.fin, "fragmented frame from the server");
        match frame.opcode {
            OpCode::Text if load::is_sc_ping(payload) => {
                pings += 1;
                wire::push_frame(out, OpCode::Text, b"", mask);
            }
            OpCode::Text => {
                let Some((sent_us, seq)) = parse_delivery(payload) else {
                    other += 1;
                    continue;
                };
                if seq == END_SEQ {
                    ended = true;
                    continue;
                }
                delivered += 1;
                if seq < *next_seq {
                    duplicates += 1;
                    continue;
                }
                *next_seq = seq + 1;
                if let Some(histogram) = latency.as_mut() {
                    histogram.saturating_record(now_us.saturating_sub(sent_us).max(1));
                }
                if (range_start..range_end).contains(&seq) {
                    in_range += 1;
                }
                if seq >= released {
                    let reached =
                        shared.ring[(seq % RING) as usize].fetch_add(1, Ordering::Relaxed);
                    if reached + 1 >= live {
                        shared.progress.notify_one();
                    }
                }
            }
            OpCode::Ping => wire::push_frame(out, OpCode::Pong, payload, mask),
            OpCode::Pong => {}
            OpCode::Close => bail!(
                "the server closed the WebSocket: {}",
                load::close_reason(payload)
            ),
            opcode => bail!("unexpected {opcode:?} frame: {}", load::show(payload)),
        }
    }
    drop(latency);
    if delivered > 0 {
        shared.deliveries.fetch_add(delivered, Ordering::Relaxed);
    }
    if in_range > 0 {
        shared.in_range[index].fetch_add(in_range, Ordering::Relaxed);
    }
    if duplicates > 0 {
        shared.duplicates.fetch_add(duplicates, Ordering::Relaxed);
    }
    if other > 0 {
        shared.other.fetch_add(other, Ordering::Relaxed);
    }
    if pings > 0 {
        shared.pings.fetch_add(pings, Ordering::Relaxed);
    }
    Ok(ended)
}

/// The published data: `~T` + 16-digit send time in µs + `~S` + 12-digit sequence number +
/// `~`, padded with `x` to [`PAYLOAD_BYTES`].
const STAMP_BYTES: usize = 33;

/// Appends the published data for `seq` sent at `sent_us`.
fn push_payload(out: &mut Vec<u8>, sent_us: u64, seq: u64) {
    let start = out.len();
    out.extend_from_slice(b"~T");
    push_fixed(out, sent_us, 16);
    out.extend_from_slice(b"~S");
    push_fixed(out, seq, 12);
    out.push(b'~');
    out.resize(start + PAYLOAD_BYTES, b'x');
}

/// Appends the last `width` decimal digits of `n`, zero-padded.
fn push_fixed(out: &mut Vec<u8>, mut n: u64, width: usize) {
    let start = out.len();
    out.resize(start + width, b'0');
    for digit in out[start..].iter_mut().rev() {
        *digit = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// The send time and sequence number of a delivery. The data is found at its usual offset
/// when the frame has the usual length, and searched for otherwise (a server may order the
/// keys differently); `None` if the frame carries no publication of ours.
fn parse_delivery(frame: &[u8]) -> Option<(u64, u64)> {
    let usual = DELIVERY_HEAD.len() + PAYLOAD_BYTES + DELIVERY_TAIL.len();
    let start = if frame.len() == usual && frame[DELIVERY_HEAD.len()..].starts_with(b"~T") {
        DELIVERY_HEAD.len()
    } else {
        frame.windows(3).position(|w| w == b"\"~T")? + 1
    };
    let stamp = frame.get(start..start + STAMP_BYTES)?;
    if &stamp[18..20] != b"~S" || stamp[32] != b'~' {
        return None;
    }
    Some((digits(&stamp[2..18])?, digits(&stamp[20..32])?))
}

/// The decimal number `text` spells, if it is all digits.
fn digits(text: &[u8]) -> Option<u64> {
    text.iter().try_fold(0u64, |n, &d| {
        d.is_ascii_digit().then(|| n * 10 + u64::from(d - b'0'))
    })
}

/// The publisher: keeps publications in flight within the window (and the pace, if any) until
/// told to stop, waits until every publication reached every subscriber, sends the end
/// publication and closes.
async fn publish(
    mut client: Client,
    shared: &Shared,
    rate: Option<f64>,
    stall: Duration,
) -> anyhow::Result<()> {
    let first_cid = client.next_cid;
    let mut sent: u64 = 0;
    let mut acks: u64 = 0;
    let mut released: u64 = 0;
    let mut waiting_since = Instant::now();
    let mut last_ack = Instant::now();
    let mut out = Vec::with_capacity(64 * 1024);
    let mut text = Vec::with_capacity(256);
    let started = Instant::now();
    loop {
        let stopping = shared.stop.load(Ordering::Relaxed);
        let live = shared.live.load(Ordering::Relaxed);
        while released < sent
            && shared.ring[(released % RING) as usize].load(Ordering::Relaxed) >= live
        {
            released += 1;
            waiting_since = Instant::now();
        }
        if released == sent {
            waiting_since = Instant::now();
        }
        if sent == acks {
            last_ack = Instant::now();
        }
        shared.released.store(released, Ordering::Relaxed);
        if stopping && released == sent && acks == sent {
            break;
        }

        let mut next_due = None;
        if !stopping {
            let window = shared.window.load(Ordering::Relaxed) as u64;
            let due = rate.map(|rate| (started.elapsed().as_secs_f64() * rate) as u64 + 1);
            out.clear();
            let now_us = shared.now_us();
            while sent - released < window && sent - acks < window {
                if due.is_some_and(|due| sent >= due) {
                    next_due =
                        rate.map(|rate| started + Duration::from_secs_f64(sent as f64 / rate));
                    break;
                }
                shared.ring[(sent % RING) as usize].store(0, Ordering::Relaxed);
                publish_text(&mut text, now_us, sent, first_cid + sent);
                wire::push_frame(&mut out, OpCode::Text, &text, client.mask);
                sent += 1;
            }
            if !out.is_empty() {
                shared.sent.store(sent, Ordering::Relaxed);
                client.stream.write_all(&out).await?;
            }
        }

        let tick = next_due.map_or(stall / 4, |due| {
            due.saturating_duration_since(Instant::now()).min(stall / 4)
        });
        tokio::select! {
            filled = client.reader.fill(&mut client.stream) => {
                filled?;
                let (acked, pongs) = take_acks(&mut client.reader, first_cid, sent, shared)?;
                if acked > 0 {
                    acks += acked;
                    last_ack = Instant::now();
                }
                client.answer_pings(pongs).await?;
            }
            () = shared.progress.notified() => {}
            () = tokio::time::sleep(tick) => {}
        }

        if sent > acks && last_ack.elapsed() >= stall {
            bail!(
                "no reply to publication {} after {stall:?} ({} unanswered)",
                acks,
                sent - acks
            );
        }
        if released < sent && waiting_since.elapsed() >= stall {
            // Some subscriber never got these; give up on them (the loss is counted at the end).
            shared
                .abandoned
                .fetch_add(sent - released, Ordering::Relaxed);
            released = sent;
            shared.released.store(released, Ordering::Relaxed);
        }
    }

    // The end publication, acknowledged like the others (so it is not cut short by our close),
    // then goodbye.
    out.clear();
    publish_text(&mut text, shared.now_us(), END_SEQ, first_cid + sent);
    wire::push_frame(&mut out, OpCode::Text, &text, client.mask);
    client.stream.write_all(&out).await?;
    tokio::time::timeout(stall, async {
        while acks <= sent {
            client.reader.fill(&mut client.stream).await?;
            let (acked, pongs) = take_acks(&mut client.reader, first_cid, sent + 1, shared)?;
            acks += acked;
            client.answer_pings(pongs).await?;
        }
        anyhow::Ok(())
    })
    .await
    .context("no reply to the end publication in time")??;
    out.clear();
    wire::push_frame(&mut out, OpCode::Close, &1000u16.to_be_bytes(), client.mask);
    client.stream.write_all(&out).await?;
    Ok(())
}

/// Replaces `text` with the `#publish` invoke of publication `seq` sent at `sent_us`.
fn publish_text(text: &mut Vec<u8>, sent_us: u64, seq: u64, cid: u64) {
    text.clear();
    text.extend_from_slice(b"{\"event\":\"#publish\",\"data\":{\"channel\":\"");
    text.extend_from_slice(CHANNEL.as_bytes());
    text.extend_from_slice(b"\",\"data\":\"");
    push_payload(text, sent_us, seq);
    text.extend_from_slice(b"\"},\"cid\":");
    load::push_decimal(text, cid);
    text.push(b'}');
}

/// Counts the publish acknowledgements (`{"rid":N}`) buffered in `reader` and the pings to
/// answer; fails on anything else a publisher should not get.
fn take_acks(
    reader: &mut FrameReader,
    first_cid: u64,
    sent: u64,
    shared: &Shared,
) -> anyhow::Result<(u64, usize)> {
    let (mut acks, mut pongs) = (0, 0);
    while let Some(frame) = reader.next_frame()? {
        let payload = reader.payload(&frame);
        match frame.opcode {
            OpCode::Text if load::is_sc_ping(payload) => {
                pongs += 1;
                shared.pings.fetch_add(1, Ordering::Relaxed);
            }
            OpCode::Text => {
                let rid = payload
                    .strip_prefix(b"{\"rid\":")
                    .and_then(|rest| rest.strip_suffix(b"}"))
                    .and_then(digits)
                    .with_context(|| {
                        format!("unexpected reply to a publish: {}", load::show(payload))
                    })?;
                ensure!(
                    (first_cid..first_cid + sent).contains(&rid),
                    "reply for cid {rid}, sent {first_cid}..{}",
                    first_cid + sent
                );
                acks += 1;
            }
            OpCode::Close => bail!(
                "the server closed the WebSocket: {}",
                load::close_reason(payload)
            ),
            OpCode::Ping | OpCode::Pong => {}
            opcode => bail!("unexpected {opcode:?} frame: {}", load::show(payload)),
        }
    }
    Ok((acks, pongs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(sent_us: u64, seq: u64) -> Vec<u8> {
        let mut frame = DELIVERY_HEAD.to_vec();
        push_payload(&mut frame, sent_us, seq);
        frame.extend_from_slice(DELIVERY_TAIL);
        frame
    }

    #[test]
    fn payload_is_fixed_size_and_parses_back() {
        let mut payload = Vec::new();
        push_payload(&mut payload, 1_234_567, 42);
        assert_eq!(payload.len(), PAYLOAD_BYTES);
        assert!(payload.starts_with(b"~T0000000001234567~S000000000042~x"));
        assert_eq!(
            parse_delivery(&delivery(1_234_567, 42)),
            Some((1_234_567, 42))
        );
        assert_eq!(parse_delivery(&delivery(7, END_SEQ)), Some((7, END_SEQ)));
    }

    #[test]
    fn publish_invoke_is_valid_json() {
        let mut text = Vec::new();
        publish_text(&mut text, 5, 6, 8);
        let value: serde_json::Value = serde_json::from_slice(&text).unwrap();
        assert_eq!(value["event"], "#publish");
        assert_eq!(value["data"]["channel"], CHANNEL);
        assert_eq!(value["cid"], 8);
        let data = value["data"]["data"].as_str().unwrap();
        assert_eq!(data.len(), PAYLOAD_BYTES);
        // What a server sends on is found again.
        let mut delivery = DELIVERY_HEAD.to_vec();
        delivery.extend_from_slice(data.as_bytes());
        delivery.extend_from_slice(DELIVERY_TAIL);
        assert_eq!(parse_delivery(&delivery), Some((5, 6)));
    }

    #[test]
    fn other_key_orders_are_searched() {
        let mut frame = b"{\"data\":{\"data\":\"".to_vec();
        push_payload(&mut frame, 99, 3);
        frame.extend_from_slice(b"\",\"channel\":\"bench\"},\"event\":\"#publish\"}");
        assert_eq!(parse_delivery(&frame), Some((99, 3)));
        assert_eq!(parse_delivery(b"{\"event\":\"other\",\"data\":1}"), None);
        assert_eq!(parse_delivery(b"\"~T12\""), None);
    }

    /// An unmasked server text frame (payloads under 126 bytes).
    fn server_frame(out: &mut Vec<u8>, payload: &[u8]) {
        out.push(0x81);
        out.push(u8::try_from(payload.len()).unwrap());
        out.extend_from_slice(payload);
    }

    #[test]
    fn deliveries_are_accounted_for() {
        let shared = Shared::new(2);
        shared.range_start.store(1, Ordering::Relaxed);
        shared.range_end.store(4, Ordering::Relaxed);
        shared.live.store(1, Ordering::Relaxed);
        let mut bytes = Vec::new();
        for seq in [0, 1, 3, 3] {
            server_frame(&mut bytes, &delivery(10, seq));
        }
        server_frame(&mut bytes, b"");
        server_frame(&mut bytes, b"{\"event\":\"#kickOut\"}");
        server_frame(&mut bytes, &delivery(10, END_SEQ));
        let mut reader = FrameReader::new(&bytes);
        let mut next_seq = 0;
        let mut out = Vec::new();
        let ended =
            take_deliveries(&mut reader, [0; 4], 1, &shared, 25, &mut next_seq, &mut out).unwrap();
        assert!(ended);
        assert_eq!(next_seq, 4);
        assert_eq!(shared.deliveries.load(Ordering::Relaxed), 4);
        assert_eq!(shared.in_range[1].load(Ordering::Relaxed), 2);
        assert_eq!(shared.in_range[0].load(Ordering::Relaxed), 0);
        assert_eq!(shared.duplicates.load(Ordering::Relaxed), 1);
        assert_eq!(shared.other.load(Ordering::Relaxed), 1);
        assert_eq!(shared.pings.load(Ordering::Relaxed), 1);
        // One masked empty text frame answers the ping.
        assert_eq!(out, [0x81, 0x80, 0, 0, 0, 0]);
        // Seq 2 never came: its ring slot shows no subscriber reached it.
        assert_eq!(shared.ring[2].load(Ordering::Relaxed), 0);
        assert_eq!(shared.ring[3].load(Ordering::Relaxed), 1);
    }

    #[test]
    fn window_choice_honours_the_budget() {
        let step = |window, rate, p99_us| SearchStep {
            window,
            rate,
            p99_us,
        };
        let steps = [
            step(1, 100.0, 10),
            step(2, 190.0, 20),
            step(4, 200.0, 40),
            step(8, 400.0, 80),
        ];
        assert_eq!(choose_window(&steps, u64::MAX), 8);
        assert_eq!(choose_window(&steps, 50), 2);
        assert_eq!(choose_window(&steps, 5), 1);
        assert_eq!(choose_window(&steps[..2], u64::MAX), 2);
    }

    #[test]
    fn digits_reject_non_digits() {
        assert_eq!(digits(b"0012"), Some(12));
        assert_eq!(digits(b"12a"), None);
    }
}
