//! Clients that stop reading, beside healthy ones, against the real binary: subscribers that
//! read nothing and callers that flood without reading their replies cost a bounded amount of
//! server memory for a bounded time, while healthy subscribers receive every publication in
//! order.

use std::time::{Duration, Instant};

use futures_util::SinkExt as _;
use serde_json::json;
use sockyard::client::{Client, ClientEvent, ClientOptions};
use sockyard_test_support::binary::Sockyard;
use sockyard_test_support::http::metric;
use sockyard_test_support::socketcluster::{handshake, next_json};
use sockyard_test_support::tempdir::TempDir;
use sockyard_test_support::ws::connect_small_buffer;
use tokio_tungstenite::tungstenite::Message;

const SOCKYARD: Sockyard = Sockyard::at(env!("CARGO_BIN_EXE_sockyard"));

/// Publications made, and their size.
const PUBLICATIONS: usize = 100;
const PUBLICATION_BYTES: usize = 256 << 10;
/// Clients that stop reading: subscribers, and callers flooding invokes.
const STALLED_SUBSCRIBERS: usize = 4;
const FLOODERS: usize = 2;
/// What one stalled connection may cost the server, as configured below: its queue budget
/// (16 MiB), its write buffer (256 KiB) and its inbound queue (1 MiB).
const PER_STALLED_BYTES: u64 = (16 << 20) + (256 << 10) + (1 << 20);

/// The server's resident memory, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status");
    kib * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_clients_are_let_go_while_healthy_ones_get_everything() {
    let dir = TempDir::new("slow-clients");
    let config = dir.write(
        "sockyard.toml",
        br#"
        resource = []

        [auth]
        key = "slow-clients-test"

        [[endpoint]]
        path = "/socketcluster/"

        [limits]
        max_message_bytes = 2097152
        max_messages_per_second = 100000
        outbound_queue_bytes = 16777216
        write_stall_timeout_ms = 1000
        close_timeout_ms = 500
        "#,
    );
    let server = SOCKYARD
        .serve_launch(&["--config", config.to_str().unwrap()])
        .start();
    let url = server.url("/socketcluster/");
    let baseline = rss(server.pid());

    // Subscribers that read nothing after subscribing, on sockets with small receive buffers.
    let mut stalled = Vec::new();
    for _ in 0..STALLED_SUBSCRIBERS {
        let mut ws = connect_small_buffer(&url, 4096).await;
        handshake(&mut ws).await;
        let subscribe = json!({"event": "#subscribe", "data": {"channel": "feed"}, "cid": 2});
        ws.send(Message::text(subscribe.to_string())).await.unwrap();
        assert_eq!(next_json(&mut ws).await, json!({"rid": 2}));
        stalled.push(ws);
    }
    // Callers that flood 50 KB invokes and never read a reply.
    let mut flooders = Vec::new();
    for _ in 0..FLOODERS {
        let mut ws = connect_small_buffer(&url, 4096).await;
        handshake(&mut ws).await;
        flooders.push(tokio::spawn(async move {
            let payload = "f".repeat(50_000);
            for cid in 10u64.. {
                let call = json!({"event": "echo", "data": payload, "cid": cid}).to_string();
                if ws.send(Message::text(call)).await.is_err() {
                    break;
                }
            }
        }));
    }
    // Healthy subscribers, reading everything.
    let mut healthy = Vec::new();
    for _ in 0..2 {
        let (client, events) = Client::connect(&url, ClientOptions::default())
            .await
            .unwrap();
        client.subscribe("feed").await.unwrap();
        healthy.push((client, events));
    }
    let (publisher, _events) = Client::connect(&url, ClientOptions::default())
        .await
        .unwrap();

    // The server's resident memory, sampled until the stalled connections are gone.
    let pid = server.pid();
    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = tokio::spawn({
        let sampling = sampling.clone();
        async move {
            let mut peak = 0;
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(rss(pid));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            peak
        }
    });
    let started = Instant::now();
    let pad = "p".repeat(PUBLICATION_BYTES);
    for i in 0..PUBLICATIONS {
        publisher
            .publish("feed", json!({"i": i, "pad": pad}))
            .await
            .unwrap();
    }
    for (_, events) in &mut healthy {
        let mut expected = 0;
        while expected < PUBLICATIONS {
            let event = tokio::time::timeout(Duration::from_secs(10), events.next())
                .await
                .unwrap_or_else(|_| panic!("publication {expected} never arrived"))
                .expect("the healthy subscriber stays connected");
            if let ClientEvent::Publication {
                data: Some(data), ..
            } = event
            {
                assert_eq!(data["i"], json!(expected), "in order, once each");
                assert_eq!(data["pad"].as_str().map(str::len), Some(PUBLICATION_BYTES));
                expected += 1;
            }
        }
    }

    // The stalled connections are closed, then dropped, within the stall and close timeouts.
    let deadline = started + Duration::from_secs(15);
    loop {
        let health = server.get("/health").await.json();
        if health["connections"] == json!(3) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "stalled connections still open: {health}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = server.metrics().await;
    let write_stalls = metric(&metrics, "sockyard_errors_total{kind=\"write_stall\"}").unwrap();
    let overflows = metric(&metrics, "sockyard_errors_total{kind=\"slow_consumer\"}").unwrap();
    assert!(
        write_stalls + overflows >= (STALLED_SUBSCRIBERS + FLOODERS) as f64,
        "every stalled client counted: {write_stalls} stalls, {overflows} overflows"
    );
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let growth = sampler.await.unwrap().saturating_sub(baseline);
    let bound = (STALLED_SUBSCRIBERS + FLOODERS) as u64 * PER_STALLED_BYTES
        + (PUBLICATIONS * PUBLICATION_BYTES) as u64
        + (64 << 20);
    assert!(
        growth <= bound,
        "server memory grew by {} MiB, over the bound of {} MiB",
        growth >> 20,
        bound >> 20
    );
    eprintln!(
        "server RSS: {} MiB at start, grew by at most {} MiB (bound {} MiB); stalled clients let go in {:.1} s",
        baseline >> 20,
        growth >> 20,
        bound >> 20,
        started.elapsed().as_secs_f64()
    );
    drop(stalled);
    for flooder in flooders {
        flooder.abort();
    }
}
