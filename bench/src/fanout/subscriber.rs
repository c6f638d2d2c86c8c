//! The fan-out subscribers: connections subscribed to the channel that account for every
//! delivery (latency, sequence, the delivery ring the publisher waits on) without allocating
//! per message, answer pings, and leave on the end publication.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use anyhow::{bail, ensure, Context as _};
use sockyard::ws::OpCode;
use tokio::io::AsyncWriteExt;

use super::publication::{parse_delivery, END_SEQ};
use super::{Shared, CHANNEL, RING};
use crate::client::{self, close_reason, is_sc_ping, show, Client, FrameReader, CONNECT_TIMEOUT};

/// A subscriber's receive buffer. Deliveries are ~120-byte frames, so this holds a few dozen.
const SUBSCRIBER_BUFFER: usize = 4096;
/// Free space below which a subscriber's buffer is compacted before reading.
const SUBSCRIBER_MIN_READ: usize = 1024;

/// Connections being opened at once.
const OPEN_PARALLEL: usize = 128;

/// Opens `count` subscribers, at most [`OPEN_PARALLEL`] at a time.
pub(super) async fn open_subscribers(
    addr: SocketAddr,
    path: &str,
    count: usize,
) -> anyhow::Result<Vec<Client>> {
    client::open_many(count, OPEN_PARALLEL, |index| {
        let path = path.to_owned();
        async move {
            open_subscriber(addr, &path)
                .await
                .with_context(|| format!("subscriber {index}"))
        }
    })
    .await
}

/// Connects, handshakes and subscribes to [`CHANNEL`].
async fn open_subscriber(addr: SocketAddr, path: &str) -> anyhow::Result<Client> {
    let mut client = Client::open_json(addr, path).await?;
    let cid = client.take_cid();
    let text = format!(
        "{{\"event\":\"#subscribe\",\"data\":{{\"channel\":\"{CHANNEL}\"}},\"cid\":{cid}}}"
    );
    client.send(OpCode::Text, text.as_bytes()).await?;
    let expected = format!("{{\"rid\":{cid}}}");
    let subscribed = client.read_until(
        |opcode, payload| opcode == OpCode::Text && is_sc_ping(payload),
        |opcode, payload| match opcode {
            OpCode::Text if payload == expected.as_bytes() => Ok(Some(())),
            OpCode::Text => bail!("#subscribe answered with {}", show(payload)),
            OpCode::Close => bail!("closed while subscribing: {}", close_reason(payload)),
            _ => bail!("unexpected frame while subscribing: {}", show(payload)),
        },
    );
    tokio::time::timeout(CONNECT_TIMEOUT, subscribed)
        .await
        .context("no #subscribe reply in time")??;
    client.reader.resize(SUBSCRIBER_BUFFER, SUBSCRIBER_MIN_READ);
    Ok(client)
}

/// A subscriber's life: read, account for every delivery, answer pings; returns when the end
/// publication arrives (after saying goodbye) and fails when the connection does.
pub(super) async fn receive(
    mut client: Client,
    index: usize,
    shared: &Shared,
) -> anyhow::Result<()> {
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
            client.push_frame(
                &mut out,
                OpCode::Close,
                &sockyard::ws::frame::close_body(1000, ""),
            );
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
            OpCode::Text if is_sc_ping(payload) => {
                pings += 1;
                sockyard::ws::frame::write_masked_frame(out, OpCode::Text, b"", mask);
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
            OpCode::Ping => {
                sockyard::ws::frame::write_masked_frame(out, OpCode::Pong, payload, mask)
            }
            OpCode::Pong => {}
            OpCode::Close => bail!("the server closed the WebSocket: {}", close_reason(payload)),
            opcode => bail!("unexpected {opcode:?} frame: {}", show(payload)),
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::super::publication::delivery;
    use super::*;

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
}
