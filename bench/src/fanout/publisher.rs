//! The fan-out publisher: one connection that keeps publications in flight within the window
//! (and the pace, if any), counts their acknowledgements and waits for each to reach every
//! subscriber before letting the window move on.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use sockyard::ws::OpCode;
use tokio::io::AsyncWriteExt;

use super::publication::{digits, publish_text, END_SEQ};
use super::{Shared, RING};
use crate::client::{close_reason, is_sc_ping, show, Client, FrameReader};

/// The publisher: keeps publications in flight within the window (and the pace, if any) until
/// told to stop, waits until every publication reached every subscriber, sends the end
/// publication and closes.
pub(super) async fn publish(
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
                client.push_frame(&mut out, OpCode::Text, &text);
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
    client.push_frame(&mut out, OpCode::Text, &text);
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
    client
        .send(OpCode::Close, &sockyard::ws::frame::close_body(1000, ""))
        .await
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
            OpCode::Text if is_sc_ping(payload) => {
                pongs += 1;
                shared.pings.fetch_add(1, Ordering::Relaxed);
            }
            OpCode::Text => {
                let rid = payload
                    .strip_prefix(b"{\"rid\":")
                    .and_then(|rest| rest.strip_suffix(b"}"))
                    .and_then(digits)
                    .with_context(|| format!("unexpected reply to a publish: {}", show(payload)))?;
                ensure!(
                    (first_cid..first_cid + sent).contains(&rid),
                    "reply for cid {rid}, sent {first_cid}..{}",
                    first_cid + sent
                );
                acks += 1;
            }
            OpCode::Close => bail!("the server closed the WebSocket: {}", close_reason(payload)),
            OpCode::Ping | OpCode::Pong => {}
            opcode => bail!("unexpected {opcode:?} frame: {}", show(payload)),
        }
    }
    Ok((acks, pongs))
}
