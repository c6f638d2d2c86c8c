//! The fan-out (pub/sub) load generator: N subscriber connections on one channel and one
//! publisher that keeps a bounded number of publications in flight. It measures deliveries per
//! second, delivery latency, and whether every subscriber received every publication.
//!
//! Every connection is a task on the caller's single-threaded runtime. Subscribers find the
//! send timestamp and sequence number at fixed offsets of each frame and allocate nothing per
//! message. The publisher sends the next publication only while fewer than `window` are
//! unacknowledged *and* fewer than `window` have not yet reached every subscriber, so no server
//! is ever more than `window` publications behind on any connection.

pub(crate) mod command;
mod publication;
mod publisher;
mod search;
mod subscriber;
mod table;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use hdrhistogram::Histogram;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::args::{Cpus, PublisherArgs, Timing};
use crate::client::Client;
use crate::cpu::{CpuMeter, CpuSample, CpuWindow};
use crate::load;
pub(crate) use search::{SearchStep, SEARCH_KEEP};

/// The channel every subscriber joins and the publisher publishes to.
pub(crate) const CHANNEL: &str = "bench";

/// Length of the published data: a JSON string of this many ASCII characters.
pub(crate) const PAYLOAD_BYTES: usize = 64;

/// Publications the delivery ring tracks at once; windows stay below it.
const RING: u64 = 1024;

/// Largest window the publisher accepts.
pub(crate) const MAX_WINDOW: usize = 512;

/// How long the subscribers may take to see the end publication and leave.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(10);

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

/// `auto` or a window size.
pub(crate) fn parse_window(text: &str) -> Result<WindowChoice, String> {
    if text == "auto" {
        return Ok(WindowChoice::Auto);
    }
    match text.parse::<usize>() {
        Ok(window) if (1..=MAX_WINDOW).contains(&window) => Ok(WindowChoice::Fixed(window)),
        _ => Err(format!("expected `auto` or 1..={MAX_WINDOW}")),
    }
}

/// One fan-out run's parameters.
#[derive(Debug, Clone)]
pub(crate) struct FanoutSpec {
    /// Server address.
    pub(crate) addr: SocketAddr,
    /// WebSocket path to upgrade on.
    pub(crate) path: String,
    /// Subscriber connections.
    pub(crate) subscribers: usize,
    /// Publications in flight (or how to find the number), the largest window the search
    /// tries, the length of each search step (a quarter of it more is spent settling first),
    /// and how long the publisher waits for a publication to reach every subscriber (or for
    /// an ack) before giving up on it.
    pub(crate) publisher: PublisherArgs,
    /// The search only keeps windows whose p99 stays within this many µs.
    pub(crate) latency_budget_us: Option<u64>,
    /// Publications per second, if paced; otherwise as fast as the window allows.
    pub(crate) rate: Option<f64>,
    /// Load applied before the search (at window 2) and again at the chosen window before
    /// measuring starts, and the length of the measured window.
    pub(crate) timing: Timing,
    /// Server process whose CPU time is sampled at the window's edges.
    pub(crate) server_pid: Option<u32>,
    /// The CPUs the load generator and the server are pinned to: their busy time is sampled
    /// too, to tell how much other processes took from them.
    pub(crate) pinned: Option<Cpus>,
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
    /// The window and the CPU time spent in it.
    pub(crate) cpu: CpuWindow,
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
        self.cpu.rate(self.deliveries)
    }

    /// Publications per second.
    pub(crate) fn publish_rate(&self) -> f64 {
        self.cpu.rate(self.publications)
    }

    /// Server CPU microseconds per delivery.
    pub(crate) fn server_us_per_delivery(&self) -> Option<f64> {
        self.cpu.server_us_per(self.deliveries)
    }

    /// Latency quantile in µs.
    pub(crate) fn latency(&self, quantile: f64) -> u64 {
        self.latency_us.value_at_quantile(quantile)
    }

    /// One line about this report.
    pub(crate) fn summary(&self) -> String {
        let mut line = format!(
            "{:.0} deliveries/s ({:.0} publishes/s, window {}), latency p50 {} µs, p99 {} µs, \
             max {} µs; lost {} of {}",
            self.delivery_rate(),
            self.publish_rate(),
            self.window,
            self.latency(0.5),
            self.latency(0.99),
            self.latency_us.max(),
            self.lost,
            self.expected,
        );
        if let (Some(us), Some(busy)) = (self.server_us_per_delivery(), self.cpu.server_busy()) {
            let _ = write!(
                line,
                "; server {us:.2} µs/delivery ({:.0}% busy)",
                busy * 100.0
            );
        }
        let _ = write!(line, "; client {:.0}% busy", self.cpu.client_busy() * 100.0);
        if self.incomplete > 0 {
            let _ = write!(
                line,
                "; {} subscriber(s) missed publications",
                self.incomplete
            );
        }
        if self.duplicates > 0 {
            let _ = write!(line, "; {} duplicate/reordered", self.duplicates);
        }
        if self.abandoned > 0 {
            let _ = write!(
                line,
                "; publisher gave up on {} publication(s)",
                self.abandoned
            );
        }
        if self.failed > 0 {
            let _ = write!(
                line,
                "; {} subscriber(s) failed, first: {}",
                self.failed,
                self.failures.first().map_or("?", String::as_str)
            );
        }
        if self.other_frames > 0 {
            let _ = write!(line, "; {} other frames ignored", self.other_frames);
        }
        if self.pings_answered > 0 {
            let _ = write!(line, "; {} pings answered", self.pings_answered);
        }
        line
    }
}

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
    let max_window = spec.publisher.max_window.clamp(1, MAX_WINDOW);
    if let WindowChoice::Fixed(window) = spec.publisher.window {
        ensure!(
            (1..=MAX_WINDOW).contains(&window),
            "the window must be 1..={MAX_WINDOW}"
        );
    }
    let meter = CpuMeter::new(spec.server_pid, spec.pinned);
    let shared = Arc::new(Shared::new(spec.subscribers));

    let connecting = Instant::now();
    let subscribers = subscriber::open_subscribers(spec.addr, &spec.path, spec.subscribers).await?;
    let publisher = Client::open_json(spec.addr, &spec.path)
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
            if let Err(err) = subscriber::receive(client, index, &shared).await {
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
        let (shared, rate) = (shared.clone(), spec.rate);
        let stall = spec.publisher.stall_timeout();
        publisher_task.spawn(async move {
            publisher::publish(publisher, &shared, rate, stall)
                .await
                .context("publisher")
        });
    }

    let sample = |shared: &Shared| -> anyhow::Result<(CpuSample, u64)> {
        Ok((meter.sample()?, shared.deliveries.load(Ordering::Relaxed)))
    };

    let mut search = Vec::new();
    let measured = async {
        let window = match spec.publisher.window {
            WindowChoice::Fixed(window) => window,
            WindowChoice::Auto => {
                // Warm the server up (JIT, allocator) so the first steps are not penalised.
                shared.window.store(2, Ordering::Relaxed);
                shared.progress.notify_one();
                tokio::time::sleep(spec.timing.warmup()).await;
                let window = search::search_window(&shared, spec, max_window, &mut search).await;
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
        if spec.publisher.window == WindowChoice::Auto {
            // The search ends at a larger window than it chooses, and publications still queued
            // from it would delay the next ones: pause until they have all been delivered.
            shared.window.store(0, Ordering::Relaxed);
            let draining = Instant::now();
            while shared.sent.load(Ordering::Relaxed) > shared.released.load(Ordering::Relaxed)
                && draining.elapsed() < spec.publisher.stall_timeout() * 2
            {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        shared.window.store(window, Ordering::Relaxed);
        shared.progress.notify_one();
        tokio::time::sleep(spec.timing.warmup()).await;
        shared.latency.lock().expect("latency lock").reset();
        let first = sample(&shared)?;
        let range_start = shared.sent.load(Ordering::Relaxed);
        shared.range_start.store(range_start, Ordering::Relaxed);
        shared.measuring.store(true, Ordering::Relaxed);
        tokio::time::sleep(spec.timing.duration()).await;
        shared.measuring.store(false, Ordering::Relaxed);
        let range_end = shared.sent.load(Ordering::Relaxed);
        shared.range_end.store(range_end, Ordering::Relaxed);
        shared.stop.store(true, Ordering::Relaxed);
        shared.progress.notify_one();
        let last = sample(&shared)?;
        anyhow::Ok((window, first, last, range_start, range_end))
    };
    let (window, (first, first_deliveries), (last, last_deliveries), range_start, range_end) = tokio::select! {
        measured = measured => measured?,
        Some(joined) = publisher_task.join_next() => {
            joined??;
            bail!("the publisher stopped before the end of the run");
        }
    };

    // Drain: the publisher waits until every publication reached every subscriber (giving up
    // after the stall timeout), then sends the end publication and leaves.
    let drain_limit = spec.publisher.stall_timeout() * 2 + Duration::from_secs(5);
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
        deliveries: last_deliveries - first_deliveries,
        cpu: first.until(&last),
        publications: per_subscriber,
        latency_us,
        expected: per_subscriber * spec.subscribers as u64,
        lost,
        incomplete,
        duplicates: shared.duplicates.load(Ordering::Relaxed),
        abandoned: shared.abandoned.load(Ordering::Relaxed),
        failed: spec.subscribers - shared.live.load(Ordering::Relaxed) as usize,
        failures,
        pings_answered: shared.pings.load(Ordering::Relaxed),
        other_frames: shared.other.load(Ordering::Relaxed),
        remeasured: 0,
    })
}
