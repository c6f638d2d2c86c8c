//! The load generator: a closed loop per connection that writes `window` pre-masked frames in
//! one write, then waits until all `window` replies are back, timing each batch.
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
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::frames::{self, ScFrames, Unexpected};
use crate::procfs;
use crate::wire::{self, FrameReader, OpCode};

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
    /// Payload size in bytes (the frame payload in raw mode, the echoed string otherwise).
    pub(crate) payload_bytes: usize,
    /// Load applied before measuring starts.
    pub(crate) warmup: Duration,
    /// Length of the measured window.
    pub(crate) duration: Duration,
    /// Server process whose CPU time is sampled at the window's edges.
    pub(crate) server_pid: Option<u32>,
    /// The CPUs the load generator and the server are pinned to: their busy time is sampled
    /// too, to tell how much other processes took from them.
    pub(crate) pinned: Option<(usize, usize)>,
    /// A connection waiting this long for replies fails the run (the server stalled).
    pub(crate) stall_timeout: Duration,
}

/// What a load run measured inside its window.
#[derive(Debug)]
pub(crate) struct LoadReport {
    /// Replies received.
    pub(crate) messages: u64,
    /// Exact length of the window.
    pub(crate) elapsed: Duration,
    /// Batch round-trip times in microseconds (write of `window` frames to last reply).
    pub(crate) latency_us: Histogram<u64>,
    /// Server CPU time (user + system) spent in the window.
    pub(crate) server_cpu: Option<Duration>,
    /// This process's CPU time in the window.
    pub(crate) client_cpu: Duration,
    /// Busy time of the load generator's and the server's CPUs in the window (if pinned).
    pub(crate) core_busy: Option<(Duration, Duration)>,
    /// Server ping frames answered during the whole run (warm-up included).
    pub(crate) pings_answered: u64,
    /// Server events that were neither replies nor pings (ignored).
    pub(crate) other_frames: u64,
}

impl LoadReport {
    /// Replies per second.
    pub(crate) fn rate(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64()
    }

    /// Server CPU microseconds per reply.
    pub(crate) fn server_us_per_message(&self) -> Option<f64> {
        let cpu = self.server_cpu?;
        (self.messages > 0).then(|| cpu.as_secs_f64() * 1e6 / self.messages as f64)
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

/// How long opening one connection (TCP, upgrade, SocketCluster handshake) may take.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs one load test: connects, warms up, measures, stops. Must run inside a tokio runtime
/// (the benchmark uses a single-threaded one pinned to the client core).
pub(crate) async fn run(spec: &LoadSpec) -> anyhow::Result<LoadReport> {
    ensure!(
        spec.connections > 0 && spec.window > 0,
        "connections and window must be > 0"
    );
    let ticks = procfs::ticks_per_second();
    let shared = Arc::new(Shared::default());
    let encoding = spec.mode.encoding(spec.schema.as_ref())?;
    let template = Arc::new(Template::new(encoding, spec.payload_bytes, spec.window)?);

    let mut opening = JoinSet::new();
    for index in 0..spec.connections {
        let (addr, path, template) = (spec.addr, spec.path.clone(), template.clone());
        opening.spawn(async move {
            open(addr, &path, template.sc.as_ref())
                .await
                .with_context(|| format!("connection {index}"))
        });
    }
    let mut clients = Vec::with_capacity(spec.connections);
    while let Some(joined) = opening.join_next().await {
        clients.push(joined??);
    }

    let mut tasks = JoinSet::new();
    for (index, client) in clients.into_iter().enumerate() {
        let (shared, template) = (shared.clone(), template.clone());
        let stall = spec.stall_timeout;
        tasks.spawn(async move {
            client
                .drive(&template, &shared, stall)
                .await
                .with_context(|| format!("connection {index}"))
        });
    }

    let sample = |shared: &Shared| -> anyhow::Result<Sample> {
        Ok(Sample {
            at: Instant::now(),
            completed: shared.completed.load(Ordering::Relaxed),
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
    // Sleep with an eye on the tasks so a failing connection ends the run at once.
    let measured = async {
        tokio::time::sleep(spec.warmup).await;
        let first = sample(&shared)?;
        shared.measuring.store(true, Ordering::Relaxed);
        tokio::time::sleep(spec.duration).await;
        shared.measuring.store(false, Ordering::Relaxed);
        let last = sample(&shared)?;
        anyhow::Ok((first, last))
    };
    let (first, last) = tokio::select! {
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
        messages: last.completed - first.completed,
        elapsed: last.at - first.at,
        latency_us,
        server_cpu: last.server.zip(first.server).map(|(b, a)| b - a),
        client_cpu: last.client - first.client,
        core_busy: last
            .cores
            .zip(first.cores)
            .map(|((c1, s1), (c0, s0))| (c1 - c0, s1 - s0)),
        pings_answered: shared.pings.load(Ordering::Relaxed),
        other_frames: shared.other.load(Ordering::Relaxed),
    })
}

/// Counters read at one edge of the measured window.
#[derive(Debug)]
struct Sample {
    at: Instant,
    completed: u64,
    server: Option<Duration>,
    client: Duration,
    cores: Option<(Duration, Duration)>,
}

/// An empty latency histogram in microseconds (1 µs to 60 s, 3 significant digits).
pub(crate) fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// Opens `count` connections with at most `parallel` in progress at once and keeps them
/// idle. In the SocketCluster modes each one completes the handshake.
pub(crate) async fn open_idle(
    addr: SocketAddr,
    path: &str,
    mode: Mode,
    count: usize,
    parallel: usize,
) -> anyhow::Result<Vec<TcpStream>> {
    let frames = match mode.encoding(None)? {
        Some(encoding) => Some(Arc::new(ScFrames::new(encoding, "echo", "")?)),
        None => None,
    };
    let mut streams = Vec::with_capacity(count);
    let mut opening = JoinSet::new();
    let mut started = 0;
    while streams.len() < count {
        while started < count && opening.len() < parallel {
            let (path, frames) = (path.to_owned(), frames.clone());
            let index = started;
            opening.spawn(async move {
                open(addr, &path, frames.as_deref())
                    .await
                    .with_context(|| format!("idle connection {index}"))
            });
            started += 1;
        }
        let Some(joined) = opening.join_next().await else {
            break;
        };
        streams.push(joined??.stream);
    }
    Ok(streams)
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
                    wire::push_frame(&mut raw_batch, OpCode::Text, payload.as_bytes(), mask);
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

/// An open connection ready to be driven.
#[derive(Debug)]
pub(crate) struct Client {
    /// The socket.
    pub(crate) stream: TcpStream,
    /// What has been received and not yet parsed.
    pub(crate) reader: FrameReader,
    /// The mask every frame this client sends uses.
    pub(crate) mask: [u8; 4],
    /// Next SocketCluster cid.
    pub(crate) next_cid: u64,
}

/// Connects, upgrades and, given SocketCluster frames, completes the handshake in their codec.
pub(crate) async fn open(
    addr: SocketAddr,
    path: &str,
    sc: Option<&ScFrames>,
) -> anyhow::Result<Client> {
    let (stream, reader) = wire::connect(addr, path, CONNECT_TIMEOUT).await?;
    let mut client = Client {
        stream,
        reader,
        mask: rand::random(),
        next_cid: 1,
    };
    if let Some(sc) = sc {
        tokio::time::timeout(CONNECT_TIMEOUT, client.handshake(sc))
            .await
            .context("no #handshake reply in time")??;
    }
    Ok(client)
}

/// Opens one connection, invokes once and checks the reply both with the codec's own decoder
/// and with the load generator's check; returns the payload sizes of the invoke and the reply.
pub(crate) async fn probe(
    addr: SocketAddr,
    path: &str,
    sc: &ScFrames,
) -> anyhow::Result<(usize, usize)> {
    let mut client = open(addr, path, Some(sc)).await?;
    let cid = client.take_cid();
    let mut invoke = Vec::new();
    sc.push_invoke(&mut invoke, cid);
    let mut out = Vec::new();
    wire::push_frame(&mut out, sc.invoke_opcode(), &invoke, client.mask);
    client.stream.write_all(&out).await?;
    let reply_bytes = tokio::time::timeout(CONNECT_TIMEOUT, async {
        loop {
            let mut pongs = 0;
            while let Some(frame) = client.reader.next_frame()? {
                let payload = client.reader.payload(&frame);
                match frame.opcode {
                    OpCode::Text | OpCode::Binary if sc.is_ping(frame.opcode, payload) => {
                        pongs += 1;
                    }
                    OpCode::Text | OpCode::Binary => {
                        sc.check_reply_fully(frame.opcode, payload, cid)?;
                        ensure!(
                            sc.reply_rid(frame.opcode, payload) == Some(cid),
                            "the load generator's check rejects the reply {}",
                            frames::show_frame(frame.opcode, payload)
                        );
                        return anyhow::Ok(payload.len());
                    }
                    OpCode::Close => {
                        bail!("the server closed the WebSocket: {}", close_reason(payload))
                    }
                    _ => {}
                }
            }
            client.answer_pings(pongs).await?;
            client.reader.fill(&mut client.stream).await?;
        }
    })
    .await
    .context("no reply in time")??;
    let mut close = Vec::new();
    wire::push_frame(
        &mut close,
        OpCode::Close,
        &1000u16.to_be_bytes(),
        client.mask,
    );
    let _ = client.stream.write_all(&close).await;
    Ok((invoke.len(), reply_bytes))
}

/// Connects, upgrades and completes the SocketCluster handshake in JSON.
pub(crate) async fn open_json(addr: SocketAddr, path: &str) -> anyhow::Result<Client> {
    static JSON: std::sync::OnceLock<ScFrames> = std::sync::OnceLock::new();
    let frames = match JSON.get() {
        Some(frames) => frames,
        None => {
            let frames = ScFrames::new(Encoding::Json, "echo", "")?;
            JSON.get_or_init(|| frames)
        }
    };
    open(addr, path, Some(frames)).await
}

impl Client {
    async fn handshake(&mut self, sc: &ScFrames) -> anyhow::Result<()> {
        let mut out = Vec::new();
        let cid = self.take_cid();
        let (opcode, payload) = sc.handshake(cid)?;
        wire::push_frame(&mut out, opcode, &payload, self.mask);
        self.stream.write_all(&out).await?;
        loop {
            let mut pongs = 0;
            while let Some(frame) = self.reader.next_frame()? {
                let payload = self.reader.payload(&frame);
                match frame.opcode {
                    OpCode::Text | OpCode::Binary if sc.is_ping(frame.opcode, payload) => {
                        pongs += 1;
                    }
                    OpCode::Text | OpCode::Binary => {
                        if sc
                            .check_handshake_reply(frame.opcode, payload, cid)
                            .context("bad #handshake reply")?
                        {
                            return Ok(());
                        }
                        bail!(
                            "unexpected frame during the handshake: {}",
                            frames::show_frame(frame.opcode, payload)
                        );
                    }
                    OpCode::Close => {
                        bail!("closed during the handshake: {}", close_reason(payload))
                    }
                    _ => bail!("unexpected frame during the handshake: {}", show(payload)),
                }
            }
            self.answer_pings(pongs).await?;
            self.reader.fill(&mut self.stream).await?;
        }
    }

    /// The next cid, counted as used.
    pub(crate) fn take_cid(&mut self) -> u64 {
        let cid = self.next_cid;
        self.next_cid += 1;
        cid
    }

    /// Answers `count` SocketCluster pings with empty text frames.
    pub(crate) async fn answer_pings(&mut self, count: usize) -> anyhow::Result<()> {
        if count > 0 {
            let mut out = Vec::new();
            for _ in 0..count {
                wire::push_frame(&mut out, OpCode::Text, b"", self.mask);
            }
            self.stream.write_all(&out).await?;
        }
        Ok(())
    }

    /// Sends batches until told to stop; returns the batch round-trip times measured while
    /// the window was open.
    async fn drive(
        mut self,
        template: &Template,
        shared: &Shared,
        stall: Duration,
    ) -> anyhow::Result<Histogram<u64>> {
        let mut latency = new_histogram();
        let mut batch = Vec::with_capacity(template.window * (template.payload_bytes + 64));
        let mut seen = vec![false; template.window];
        let mut invoke = Vec::with_capacity(template.payload_bytes + 64);
        while !shared.stop.load(Ordering::Relaxed) {
            let first_cid = self.next_cid;
            if let Some(sc) = &template.sc {
                batch.clear();
                for _ in 0..template.window {
                    let cid = self.take_cid();
                    invoke.clear();
                    sc.push_invoke(&mut invoke, cid);
                    wire::push_frame(&mut batch, sc.invoke_opcode(), &invoke, self.mask);
                }
                seen.fill(false);
            }
            let out = match template.sc {
                None => &template.raw_batch,
                Some(_) => &batch,
            };
            let started = Instant::now();
            self.stream.write_all(out).await?;

            let mut pending = template.window;
            while pending > 0 {
                let mut pongs = 0;
                while let Some(frame) = self.reader.next_frame()? {
                    let payload = self.reader.payload(&frame);
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
                            wire::push_frame(&mut pong, OpCode::Pong, payload, self.mask);
                            self.stream.write_all(&pong).await?;
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
                    self.answer_pings(pongs).await?;
                }
                if pending > 0 {
                    tokio::time::timeout(stall, self.reader.fill(&mut self.stream))
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
        // Say goodbye properly (1000) and leave without waiting for the answer.
        let mut close = Vec::new();
        wire::push_frame(&mut close, OpCode::Close, &1000u16.to_be_bytes(), self.mask);
        let _ = self.stream.write_all(&close).await;
        Ok(latency)
    }
}

/// SocketCluster pings: an empty text frame (protocol v2) or `#1` (v1).
pub(crate) fn is_sc_ping(payload: &[u8]) -> bool {
    payload.is_empty() || payload == b"#1"
}

/// Appends `n` in decimal.
pub(crate) fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let start = out.len();
    loop {
        out.push(b'0' + (n % 10) as u8);
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out[start..].reverse();
}

/// A frame's text for error messages, cut to a readable length.
pub(crate) fn show(payload: &[u8]) -> String {
    let text = String::from_utf8_lossy(&payload[..payload.len().min(300)]);
    if payload.len() > 300 {
        format!("{text:?}… ({} bytes)", payload.len())
    } else {
        format!("{text:?}")
    }
}

/// The code and reason of a close frame, for error messages.
pub(crate) fn close_reason(payload: &[u8]) -> String {
    match payload {
        [hi, lo, reason @ ..] => format!(
            "code {} {:?}",
            u16::from_be_bytes([*hi, *lo]),
            String::from_utf8_lossy(reason)
        ),
        _ => "no code".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals() {
        let mut out = Vec::new();
        push_decimal(&mut out, 0);
        out.push(b' ');
        push_decimal(&mut out, 9_876_543_210);
        assert_eq!(out, b"0 9876543210");
    }

    #[test]
    fn raw_template_holds_window_frames() {
        let template = Template::new(None, 64, 10).unwrap();
        assert_eq!(template.raw_batch.len(), 10 * (2 + 4 + 64));
    }
}
