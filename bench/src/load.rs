//! The echo load generator: a closed loop per connection that writes `window` pre-masked
//! frames in one write, then waits until all `window` replies are back, timing each batch.
//!
//! It is kept cheaper per message than any server it measures: replies are found by parsing
//! frame headers only (`raw` mode) or headers plus a fixed-shape check of the reply bytes
//! (the SocketCluster modes, see [`crate::frames`]), and nothing is allocated per message.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use hdrhistogram::Histogram;
use sockyard::codec::protobuf::Schema;
use sockyard::codec::Encoding;
use sockyard::ws::OpCode;
use tokio::io::AsyncWriteExt;
use tokio::task::JoinSet;

use crate::args::{Cpus, EchoArgs, Timing};
use crate::client::{self, close_reason, show, Client, CONNECT_TIMEOUT};
use crate::cpu::{CpuMeter, CpuWindow};
use crate::frames::{self, ScFrames, Unexpected};
use crate::table::Metric;

/// The echo workloads of `run` and `codecs`: (connections, messages in flight per connection).
pub(crate) const ECHO_WORKLOADS: [(usize, usize); 2] = [(1, 1), (50, 10)];

/// What each message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Mode {
    /// A text frame whose payload is the test payload, echoed back as-is.
    Raw,
    /// SocketCluster with JSON: `#handshake` first, then `echo` invokes with distinct cids,
    /// each answered by `{"rid":cid,"data":payload}`.
    Sc,
    /// SocketCluster with MessagePack (`sc-codec-min-bin`): the same in binary frames,
    /// `{e:["echo",payload,cid]}` answered by `{r:[rid,nil,payload]}`.
    Msgpack,
    /// SocketCluster with protobuf (`sc-codec-protobuf`): the same in binary frames, `echo`
    /// travelling as the generic `sockyard.protocol.Event` (type 254) and answered by
    /// `sockyard.protocol.Response` (type 253).
    Protobuf,
}

impl Mode {
    /// The SocketCluster encoding of this mode (`None` for raw). Protobuf uses `schema`, or
    /// the default config's protobuf endpoint schema when `None`.
    pub(crate) fn encoding(self, schema: Option<&Arc<Schema>>) -> anyhow::Result<Option<Encoding>> {
        Ok(match self {
            Self::Raw => None,
            Self::Sc => Some(Encoding::Json),
            Self::Msgpack => Some(Encoding::Msgpack),
            Self::Protobuf => Some(Encoding::Protobuf(match schema {
                Some(schema) => schema.clone(),
                None => frames::demo_schema()?,
            })),
        })
    }
}

/// One load run's parameters.
#[derive(Debug, Clone)]
pub(crate) struct LoadSpec {
    /// Server address.
    pub(crate) addr: SocketAddr,
    /// WebSocket path to upgrade on.
    pub(crate) path: String,
    /// Message kind.
    pub(crate) mode: Mode,
    /// The protobuf endpoint's schema (protobuf mode; `None`: the default config's).
    pub(crate) schema: Option<Arc<Schema>>,
    /// Concurrent connections.
    pub(crate) connections: usize,
    /// Messages each connection sends in one write before waiting for all their replies.
    pub(crate) window: usize,
    /// Payload size in bytes (the frame payload in raw mode, the echoed string otherwise), and
    /// how long a connection may wait for replies before the run fails as stalled.
    pub(crate) echo: EchoArgs,
    /// Load applied before measuring starts, and the length of the measured window.
    pub(crate) timing: Timing,
    /// Server process whose CPU time is sampled at the window's edges.
    pub(crate) server_pid: Option<u32>,
    /// The CPUs the load generator and the server are pinned to: their busy time is sampled
    /// too, to tell how much other processes took from them.
    pub(crate) pinned: Option<Cpus>,
}

/// What a load run measured inside its window.
#[derive(Debug)]
pub(crate) struct LoadReport {
    /// Replies received.
    pub(crate) messages: u64,
    /// The window and the CPU time spent in it.
    pub(crate) cpu: CpuWindow,
    /// Batch round-trip times in microseconds (write of `window` frames to last reply).
    pub(crate) latency_us: Histogram<u64>,
    /// Server ping frames answered during the whole run (warm-up included).
    pub(crate) pings_answered: u64,
    /// Server events that were neither replies nor pings (ignored).
    pub(crate) other_frames: u64,
}

impl LoadReport {
    /// Replies per second.
    pub(crate) fn rate(&self) -> f64 {
        self.cpu.rate(self.messages)
    }

    /// Server CPU microseconds per reply.
    pub(crate) fn server_us_per_message(&self) -> Option<f64> {
        self.cpu.server_us_per(self.messages)
    }

    /// The figures the tables show, the share of the pinned CPUs other processes took only
    /// when `pinned`; those and the busy cores have no meaningful ratio.
    pub(crate) fn metrics(pinned: bool) -> Vec<Metric<Self>> {
        let mut metrics = vec![
            Metric::new("msgs/s", 0, true, Self::rate),
            Metric::new("p50 batch RTT, µs", 0, true, |r| {
                r.latency_us.value_at_quantile(0.5) as f64
            }),
            Metric::new("p99 batch RTT, µs", 0, true, |r| {
                r.latency_us.value_at_quantile(0.99) as f64
            }),
            Metric::new("server CPU µs/msg", 2, true, |r| {
                r.server_us_per_message().unwrap_or(f64::NAN)
            }),
            Metric::new("server core busy, %", 0, false, |r| {
                r.cpu.server_busy().unwrap_or(f64::NAN) * 100.0
            }),
            Metric::new("client core busy, %", 0, false, |r| {
                r.cpu.client_busy() * 100.0
            }),
        ];
        if pinned {
            metrics.push(Metric::new("others on server CPU, %", 1, false, |r| {
                r.cpu.foreign_load().map_or(f64::NAN, |(_, s)| s * 100.0)
            }));
            metrics.push(Metric::new("others on client CPU, %", 1, false, |r| {
                r.cpu.foreign_load().map_or(f64::NAN, |(c, _)| c * 100.0)
            }));
        }
        metrics
    }

    /// One progress line: rate, latency, CPU, and other processes' share of the pinned CPUs.
    pub(crate) fn progress(&self) -> String {
        format!(
            "{:>9.0} msgs/s, p50 {} µs, p99 {} µs, server {:.2} µs/msg ({:.0}% busy), client \
             {:.0}% busy{}",
            self.rate(),
            self.latency_us.value_at_quantile(0.5),
            self.latency_us.value_at_quantile(0.99),
            self.server_us_per_message().unwrap_or(f64::NAN),
            self.cpu.server_busy().unwrap_or(f64::NAN) * 100.0,
            self.cpu.client_busy() * 100.0,
            self.cpu
                .foreign_load()
                .map_or(String::new(), |(on_client, on_server)| format!(
                    ", others {:.0}%/{:.0}% of the client/server CPU",
                    on_client * 100.0,
                    on_server * 100.0
                )),
        )
    }

    /// `pings answered during echo tests: N; unexpected events ignored: M` over `reports`.
    pub(crate) fn ping_summary<'a>(reports: impl IntoIterator<Item = &'a Self>) -> String {
        let (pings, other) = reports.into_iter().fold((0, 0), |(p, o), r| {
            (p + r.pings_answered, o + r.other_frames)
        });
        format!("pings answered during echo tests: {pings}; unexpected events ignored: {other}")
    }
}

/// Counters the connection tasks share with the sampler.
#[derive(Debug, Default)]
struct Shared {
    completed: AtomicU64,
    measuring: AtomicBool,
    stop: AtomicBool,
    pings: AtomicU64,
    other: AtomicU64,
}

/// Runs one load test: connects, warms up, measures, stops. Must run inside a tokio runtime
/// (the benchmark uses a single-threaded one pinned to the client core).
pub(crate) async fn run(spec: &LoadSpec) -> anyhow::Result<LoadReport> {
    ensure!(
        spec.connections > 0 && spec.window > 0,
        "connections and window must be > 0"
    );
    let meter = CpuMeter::new(spec.server_pid, spec.pinned);
    let shared = Arc::new(Shared::default());
    let encoding = spec.mode.encoding(spec.schema.as_ref())?;
    let template = Arc::new(Template::new(
        encoding,
        spec.echo.payload_bytes,
        spec.window,
    )?);

    let clients = client::open_many(spec.connections, spec.connections, |index| {
        let (addr, path, template) = (spec.addr, spec.path.clone(), template.clone());
        async move {
            Client::open(addr, &path, template.sc.as_ref())
                .await
                .with_context(|| format!("connection {index}"))
        }
    })
    .await?;

    let mut tasks = JoinSet::new();
    for (index, client) in clients.into_iter().enumerate() {
        let (shared, template) = (shared.clone(), template.clone());
        let stall = spec.echo.stall_timeout();
        tasks.spawn(async move {
            drive(client, &template, &shared, stall)
                .await
                .with_context(|| format!("connection {index}"))
        });
    }

    let sample = || anyhow::Ok((meter.sample()?, shared.completed.load(Ordering::Relaxed)));
    // Sleep with an eye on the tasks so a failing connection ends the run at once.
    let measured = async {
        tokio::time::sleep(spec.timing.warmup()).await;
        let first = sample()?;
        shared.measuring.store(true, Ordering::Relaxed);
        tokio::time::sleep(spec.timing.duration()).await;
        shared.measuring.store(false, Ordering::Relaxed);
        let last = sample()?;
        anyhow::Ok((first, last))
    };
    let ((first, first_completed), (last, last_completed)) = tokio::select! {
        window = measured => window?,
        Some(joined) = tasks.join_next() => {
            shared.stop.store(true, Ordering::Relaxed);
            joined??;
            bail!("a connection stopped before the end of the run");
        }
    };
    shared.stop.store(true, Ordering::Relaxed);

    let mut latency_us = new_histogram();
    while let Some(joined) = tasks.join_next().await {
        latency_us.add(joined??)?;
    }
    Ok(LoadReport {
        messages: last_completed - first_completed,
        cpu: first.until(&last),
        latency_us,
        pings_answered: shared.pings.load(Ordering::Relaxed),
        other_frames: shared.other.load(Ordering::Relaxed),
    })
}

/// An empty latency histogram in microseconds (1 µs to 60 s, 3 significant digits).
pub(crate) fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// The frames a connection sends, built once.
#[derive(Debug)]
struct Template {
    window: usize,
    payload_bytes: usize,
    /// Raw mode: `window` masked frames back to back, sent as they are.
    raw_batch: Vec<u8>,
    /// SocketCluster modes: the invokes and the replies they expect.
    sc: Option<ScFrames>,
}

impl Template {
    /// Frames for `encoding` (`None`: raw frames).
    fn new(
        encoding: Option<Encoding>,
        payload_bytes: usize,
        window: usize,
    ) -> anyhow::Result<Self> {
        let payload = test_payload(payload_bytes);
        let mut raw_batch = Vec::new();
        let sc = match encoding {
            Some(encoding) => Some(ScFrames::new(encoding, "echo", &payload)?),
            None => {
                let mask = rand::random::<[u8; 4]>();
                for _ in 0..window {
                    sockyard::ws::frame::write_masked_frame(
                        &mut raw_batch,
                        OpCode::Text,
                        payload.as_bytes(),
                        mask,
                    );
                }
                None
            }
        };
        Ok(Self {
            window,
            payload_bytes,
            raw_batch,
            sc,
        })
    }
}

/// The test payload: `bytes` printable, JSON-safe characters (so the same bytes serve every
/// mode), which no codec reads as anything but a string.
pub(crate) fn test_payload(bytes: usize) -> String {
    (0..bytes)
        .map(|i| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[i % 36]))
        .collect()
}

/// Opens one connection, invokes once and checks the reply both with the codec's own decoder
/// and with the load generator's check; returns the payload sizes of the invoke and the reply.
pub(crate) async fn probe(
    addr: SocketAddr,
    path: &str,
    sc: &ScFrames,
) -> anyhow::Result<(usize, usize)> {
    let mut client = Client::open(addr, path, Some(sc)).await?;
    let cid = client.take_cid();
    let mut invoke = Vec::new();
    sc.push_invoke(&mut invoke, cid);
    client.send(sc.invoke_opcode(), &invoke).await?;
    let read_reply = client.read_until(
        |opcode, payload| sc.is_ping(opcode, payload),
        |opcode, payload| match opcode {
            OpCode::Text | OpCode::Binary => {
                sc.check_reply_fully(opcode, payload, cid)?;
                ensure!(
                    sc.reply_rid(opcode, payload) == Some(cid),
                    "the load generator's check rejects the reply {}",
                    frames::show_frame(opcode, payload)
                );
                Ok(Some(payload.len()))
            }
            OpCode::Close => bail!("the server closed the WebSocket: {}", close_reason(payload)),
            _ => Ok(None),
        },
    );
    let reply_bytes = tokio::time::timeout(CONNECT_TIMEOUT, read_reply)
        .await
        .context("no reply in time")??;
    client.close().await;
    Ok((invoke.len(), reply_bytes))
}

/// Sends batches until told to stop; returns the batch round-trip times measured while the
/// window was open.
async fn drive(
    mut client: Client,
    template: &Template,
    shared: &Shared,
    stall: Duration,
) -> anyhow::Result<Histogram<u64>> {
    let mut latency = new_histogram();
    let mut batch = Vec::with_capacity(template.window * (template.payload_bytes + 64));
    let mut seen = vec![false; template.window];
    let mut invoke = Vec::with_capacity(template.payload_bytes + 64);
    while !shared.stop.load(Ordering::Relaxed) {
        let first_cid = client.next_cid;
        if let Some(sc) = &template.sc {
            batch.clear();
            for _ in 0..template.window {
                let cid = client.take_cid();
                invoke.clear();
                sc.push_invoke(&mut invoke, cid);
                client.push_frame(&mut batch, sc.invoke_opcode(), &invoke);
            }
            seen.fill(false);
        }
        let out = match template.sc {
            None => &template.raw_batch,
            Some(_) => &batch,
        };
        let started = Instant::now();
        client.stream.write_all(out).await?;

        let mut pending = template.window;
        while pending > 0 {
            let mut pongs = 0;
            while let Some(frame) = client.reader.next_frame()? {
                let payload = client.reader.payload(&frame);
                ensure!(frame.fin, "fragmented frame from the server");
                match (&template.sc, frame.opcode) {
                    (None, OpCode::Text | OpCode::Binary) => {
                        ensure!(
                            payload.len() == template.payload_bytes,
                            "echo of {} bytes, sent {}",
                            payload.len(),
                            template.payload_bytes
                        );
                        pending = pending.checked_sub(1).context("more echoes than sent")?;
                    }
                    (Some(sc), opcode @ (OpCode::Text | OpCode::Binary)) => {
                        if let Some(rid) = sc.reply_rid(opcode, payload) {
                            let slot = rid
                                .checked_sub(first_cid)
                                .and_then(|i| usize::try_from(i).ok())
                                .filter(|&i| i < template.window)
                                .with_context(|| {
                                    format!("reply for cid {rid}, outstanding {first_cid}..")
                                })?;
                            ensure!(!seen[slot], "second reply for cid {rid}");
                            seen[slot] = true;
                            pending -= 1;
                        } else if sc.is_ping(opcode, payload) {
                            pongs += 1;
                        } else {
                            match sc.classify(opcode, payload) {
                                Unexpected::Event => {
                                    shared.other.fetch_add(1, Ordering::Relaxed);
                                }
                                Unexpected::Other(what) => bail!("bad reply: {what}"),
                            }
                        }
                    }
                    (_, OpCode::Ping) => {
                        let mut pong = Vec::new();
                        client.push_frame(&mut pong, OpCode::Pong, payload);
                        client.stream.write_all(&pong).await?;
                    }
                    (_, OpCode::Pong) => {}
                    (_, OpCode::Close) => {
                        bail!("the server closed the WebSocket: {}", close_reason(payload))
                    }
                    (_, opcode) => bail!("unexpected {opcode:?} frame: {}", show(payload)),
                }
            }
            if pongs > 0 {
                shared.pings.fetch_add(pongs as u64, Ordering::Relaxed);
                client.answer_pings(pongs).await?;
            }
            if pending > 0 {
                tokio::time::timeout(stall, client.reader.fill(&mut client.stream))
                    .await
                    .with_context(|| {
                        format!(
                            "stalled: {pending} of {} replies missing after {stall:?}",
                            template.window
                        )
                    })??;
            }
        }
        let rtt = started.elapsed();
        if shared.measuring.load(Ordering::Relaxed) {
            latency.saturating_record(rtt.as_micros().max(1) as u64);
        }
        shared
            .completed
            .fetch_add(template.window as u64, Ordering::Relaxed);
    }
    client.close().await;
    Ok(latency)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_template_holds_window_frames() {
        let template = Template::new(None, 64, 10).unwrap();
        assert_eq!(template.raw_batch.len(), 10 * (2 + 4 + 64));
    }

    #[test]
    fn test_payloads_are_printable() {
        let payload = test_payload(40);
        assert_eq!(payload.len(), 40);
        assert!(payload.starts_with("abcdefghijklmnopqrstuvwxyz0123456789abcd"));
    }
}
