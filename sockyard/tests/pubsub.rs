//! Channels over real sockets: subscribe, publish, unsubscribe and kick-out with exact frames,
//! fan-out to many subscribers, slow subscribers, limits and malformed requests.

use std::time::{Duration, Instant};

use futures_util::SinkExt as _;
use serde_json::json;
use sockyard::client::{Client, ClientEvent, ClientOptions};
use sockyard::metrics::ErrorKind;
use sockyard::Config;
use sockyard_test_support::client::{next_event, next_publication};
use sockyard_test_support::server::{start, start_with};
use sockyard_test_support::socketcluster::*;
use sockyard_test_support::wait::eventually;
use sockyard_test_support::ws::*;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn subscribers_including_the_publisher_receive_publications() {
    let server = start().await;
    let mut alice = handshaken(&server.url()).await;
    let mut bob = handshaken(&server.url()).await;
    send(&mut alice, &subscribe(2, "ch1")).await;
    assert_eq!(next_json(&mut alice).await, json!({"rid": 2}));
    // Subscription data is accepted (and seen by the subscribe stage).
    send(
        &mut bob,
        r##"{"event":"#subscribe","data":{"channel":"ch1","data":{"hi":1}},"cid":2}"##,
    )
    .await;
    assert_eq!(next_json(&mut bob).await, json!({"rid": 2}));
    assert_eq!(server.handle.subscriber_count("ch1"), 2);

    // Invoke form: the publisher gets the publication and the acknowledgement.
    send(&mut alice, &publish(Some(3), "ch1", json!({"x": 1}))).await;
    let delivery = json!({"event": "#publish", "data": {"channel": "ch1", "data": {"x": 1}}});
    assert_eq!(
        next_n(&mut alice, 2).await,
        vec![delivery.clone(), json!({"rid": 3})]
    );
    assert_eq!(next_json(&mut bob).await, delivery);

    // Transmit form: no acknowledgement.
    send(&mut bob, &publish(None, "ch1", json!("two"))).await;
    let delivery = json!({"event": "#publish", "data": {"channel": "ch1", "data": "two"}});
    assert_eq!(next_json(&mut alice).await, delivery);
    assert_eq!(next_json(&mut bob).await, delivery);
    assert_quiet(&mut bob, Duration::from_millis(100)).await;

    // Publications from Rust code reach clients too.
    server
        .handle
        .publish("ch1", json!({"from": "server"}))
        .await
        .unwrap();
    let delivery =
        json!({"event": "#publish", "data": {"channel": "ch1", "data": {"from": "server"}}});
    assert_eq!(next_json(&mut alice).await, delivery);
    assert_eq!(next_json(&mut bob).await, delivery);
}

#[tokio::test]
async fn unsubscribe_stops_deliveries_and_reports_unknown_channels() {
    let server = start().await;
    let mut ws = handshaken(&server.url()).await;
    send(&mut ws, &subscribe(2, "ch")).await;
    next_json(&mut ws).await;
    // The official client's form: a transmit with the bare channel name.
    send(&mut ws, r##"{"event":"#unsubscribe","data":"ch"}"##).await;
    send(&mut ws, &publish(Some(3), "ch", json!(1))).await;
    assert_eq!(next_json(&mut ws).await, json!({"rid": 3}));
    assert_quiet(&mut ws, Duration::from_millis(100)).await;
    assert_eq!(server.handle.subscriber_count("ch"), 0);
    // The invoke form replies, and names the problem when there is no such subscription.
    send(&mut ws, r##"{"event":"#unsubscribe","data":"ch","cid":4}"##).await;
    let reply = next_json(&mut ws).await;
    assert_eq!(reply["rid"], 4);
    assert_eq!(reply["error"]["name"], "BrokerError");
    let message = reply["error"]["message"].as_str().unwrap();
    assert!(
        message
            .starts_with("Failed to unsubscribe socket from the ch channel - InvalidActionError"),
        "{message}"
    );
}

#[tokio::test]
async fn a_transmitted_subscribe_subscribes_nobody() {
    let server = start().await;
    let mut ws = handshaken(&server.url()).await;
    send(
        &mut ws,
        r##"{"event":"#subscribe","data":{"channel":"ch"}}"##,
    )
    .await;
    send(&mut ws, &echo(2, json!(1))).await;
    next_json(&mut ws).await;
    assert_eq!(server.handle.subscriber_count("ch"), 0);
}

#[tokio::test]
async fn kick_out_removes_the_subscription_and_tells_the_client() {
    let server = start().await;
    let mut ws = handshaken(&server.url()).await;
    send(&mut ws, &subscribe(2, "room")).await;
    next_json(&mut ws).await;
    send(
        &mut ws,
        r#"{"event":"kickMe","data":{"channel":"room","message":"bye"},"cid":3}"#,
    )
    .await;
    assert_eq!(
        next_n(&mut ws, 2).await,
        vec![
            json!({"event": "#kickOut", "data": {"channel": "room", "message": "bye"}}),
            json!({"rid": 3})
        ]
    );
    let deadline = Instant::now() + Duration::from_secs(2);
    while server.handle.subscriber_count("room") != 0 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.handle.publish("room", 1).await.unwrap();
    assert_quiet(&mut ws, Duration::from_millis(100)).await;
}

#[tokio::test]
async fn malformed_requests_get_socketcluster_errors() {
    let server = start().await;
    let mut ws = handshaken(&server.url()).await;
    for (frame, message) in [
        (
            r##"{"event":"#subscribe","data":{"channel":42},"cid":2}"##,
            "Subscribe channel name was malformatted",
        ),
        (
            r##"{"event":"#subscribe","cid":2}"##,
            "Subscribe channel name was malformatted",
        ),
        (
            r##"{"event":"#publish","data":"ch","cid":2}"##,
            "Publish channel name was malformatted",
        ),
        (
            r##"{"event":"#publish","data":{"data":1},"cid":2}"##,
            "Publish channel name was malformatted",
        ),
        (
            r##"{"event":"#unsubscribe","data":["ch"],"cid":2}"##,
            "Unsubscribe channel name was malformatted",
        ),
    ] {
        send(&mut ws, frame).await;
        assert_eq!(
            next_json(&mut ws).await,
            json!({"rid": 2, "error": {"name": "InvalidActionError", "message": message}}),
            "{frame}"
        );
    }
    let long = "c".repeat(300);
    send(&mut ws, &subscribe(3, &long)).await;
    assert_eq!(
        next_json(&mut ws).await["error"]["name"],
        "InvalidActionError"
    );
    send(&mut ws, &subscribe(4, "")).await;
    assert_eq!(
        next_json(&mut ws).await["error"]["name"],
        "InvalidActionError"
    );
    assert_alive(&mut ws, 99).await;
    assert!(
        server
            .handle
            .metrics()
            .error_count(ErrorKind::invalid_request)
            >= 5
    );
}

#[tokio::test]
async fn a_hundred_thousand_subscriptions_stop_at_the_limit() {
    let server = start().await;
    let ws = handshaken(&server.url()).await;
    let (writer, mut stream) = feed_in_background(
        ws,
        (0..100_000u64).map(|i| Message::text(subscribe(i + 2, &format!("ch{i}")))),
    );
    let mut refused = 0;
    let mut accepted = 0;
    while accepted + refused < 100_000 {
        let reply = next_json_within(&mut stream, Duration::from_secs(30)).await;
        match reply.get("error") {
            None => accepted += 1,
            Some(error) => {
                assert_eq!(error["name"], "BrokerError");
                let message = error["message"].as_str().unwrap();
                assert!(message.contains("limit of 1000 subscriptions"), "{message}");
                refused += 1;
            }
        }
    }
    assert_eq!(accepted, 1000);
    let mut ws = writer.await.unwrap().reunite(stream).unwrap();
    assert_alive(&mut ws, 99).await;
    drop(ws);
    // Closing the connection releases every subscription.
    eventually("the subscriptions to be released", || {
        server.handle.subscriber_count("ch0") == 0
    })
    .await;
}

#[tokio::test]
async fn a_10_mb_publish_is_refused_by_the_message_limit() {
    let server = start().await;
    let mut subscriber = handshaken(&server.url()).await;
    send(&mut subscriber, &subscribe(2, "big")).await;
    next_json(&mut subscriber).await;
    let mut ws = connect_unlimited(&server.url()).await;
    handshake(&mut ws).await;
    let _ = ws
        .send(Message::text(publish(
            Some(2),
            "big",
            json!("x".repeat(10 << 20)),
        )))
        .await;
    assert_eq!(expect_close(&mut ws).await.0, 1009);
    assert_quiet(&mut subscriber, Duration::from_millis(200)).await;
    assert_alive(&mut subscriber, 99).await;
}

#[tokio::test]
async fn client_publish_can_be_disabled() {
    let mut config = Config::default();
    config.channels.allow_client_publish = false;
    let server = start_with(config).await;
    let mut ws = handshaken(&server.url()).await;
    send(&mut ws, &publish(Some(2), "ch", json!(1))).await;
    assert_eq!(
        next_json(&mut ws).await,
        json!({"rid": 2, "error": {"name": "InvalidActionError", "message": "Client publish feature is disabled"}})
    );
}

#[tokio::test]
async fn a_slow_subscriber_is_cut_off_without_slowing_the_others() {
    let mut config = Config::default();
    config.limits.outbound_queue_length = 32;
    config.limits.write_buffer_bytes = 16 * 1024;
    let server = start_with(config).await;
    let mut fast = handshaken(&server.url()).await;
    let mut slow = handshaken(&server.url()).await;
    for ws in [&mut fast, &mut slow] {
        send(ws, &subscribe(2, "firehose")).await;
        assert_eq!(next_json(ws).await, json!({"rid": 2}));
    }
    // The slow subscriber never reads; the fast one reads everything as it comes.
    // Enough data to fill the slow one's socket buffers, write buffer and queue many times over.
    let payload = "p".repeat(4000);
    let publisher = server.handle.clone();
    let publishing = tokio::spawn(async move {
        let started = Instant::now();
        for i in 0..5000u64 {
            publisher
                .publish("firehose", json!({"i": i, "pad": payload}))
                .await
                .unwrap();
            tokio::task::yield_now().await;
        }
        started.elapsed()
    });
    let mut received = 0;
    while received < 5000 {
        let frame = next_json(&mut fast).await;
        assert_eq!(frame["data"]["data"]["i"], received);
        received += 1;
    }
    let publish_time = publishing.await.unwrap();
    assert!(
        publish_time < Duration::from_secs(10),
        "publisher was slowed: {publish_time:?}"
    );
    assert_eq!(expect_close(&mut slow).await.0, 4400);
    assert_eq!(
        server
            .handle
            .metrics()
            .error_count(ErrorKind::slow_consumer),
        1
    );
}

#[tokio::test]
async fn fan_out_reaches_every_subscriber_in_order() {
    let server = start().await;
    let mut clients = Vec::new();
    for _ in 0..200 {
        let (client, events) = Client::connect(&server.url(), ClientOptions::default())
            .await
            .unwrap();
        client.subscribe("news").await.unwrap();
        clients.push((client, events));
    }
    assert_eq!(server.handle.subscriber_count("news"), 200);
    for i in 0..20 {
        server.handle.publish("news", i).await.unwrap();
    }
    for (_, events) in &mut clients {
        let mut expected = 0;
        while expected < 20 {
            let (channel, data) = next_publication(events).await;
            assert_eq!(channel, "news");
            assert_eq!(data, Some(json!(expected)));
            expected += 1;
        }
    }
    let metrics = server.handle.metrics().render();
    assert!(
        metrics.contains("sockyard_deliveries_total 4000"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sockyard_publications_total 20"),
        "{metrics}"
    );
    assert!(metrics.contains("sockyard_subscriptions 200"), "{metrics}");
}

#[tokio::test]
async fn the_client_subscribes_again_after_reconnecting() {
    let server = start().await;
    let mut backoff = sockyard::client::Backoff::default();
    backoff.initial = Duration::from_millis(20);
    let (client, mut events) =
        Client::connect(&server.url(), ClientOptions::default().backoff(backoff))
            .await
            .unwrap();
    let first = client.id().unwrap();
    client.subscribe("again").await.unwrap();
    client
        .invoke("closeMe", json!({"code": 4001, "reason": "bye"}))
        .await
        .ok();
    loop {
        let event = next_event(&mut events).await;
        if matches!(&event, ClientEvent::Connected { id, .. } if *id != first) {
            break;
        }
    }
    eventually("the subscription again", || {
        server.handle.subscriber_count("again") == 1
    })
    .await;
    server.handle.publish("again", "back").await.unwrap();
    let (channel, data) = next_publication(&mut events).await;
    assert_eq!((channel.as_str(), data), ("again", Some(json!("back"))));
    assert_eq!(client.subscriptions(), ["again"]);
}

#[tokio::test]
async fn messages_sent_just_before_a_close_frame_are_still_processed() {
    let server = start().await;
    let mut subscriber = handshaken(&server.url()).await;
    send(&mut subscriber, &subscribe(2, "last")).await;
    next_json(&mut subscriber).await;
    let mut publisher = handshaken(&server.url()).await;
    // The publication and the close frame leave in one write, so they arrive in one read.
    publisher
        .feed(Message::text(publish(None, "last", json!("goodbye"))))
        .await
        .unwrap();
    publisher.feed(Message::Close(None)).await.unwrap();
    publisher.flush().await.unwrap();
    assert_eq!(
        next_json(&mut subscriber).await,
        json!({"event": "#publish", "data": {"channel": "last", "data": "goodbye"}})
    );
    assert_eq!(expect_close(&mut publisher).await.0, 1005);
}

/// Publishers that burst large publications (seven transmitted, then one invoked and awaited,
/// per size) while other publishers do the same: every subscriber gets every publication once,
/// whole, and in each publisher's order — however far the bytes queued for a subscriber run
/// past its write buffer.
#[tokio::test]
async fn bursts_of_large_publications_all_arrive_once_and_in_order() {
    const SIZES: [usize; 4] = [1 << 10, 64 << 10, 256 << 10, 1000 << 10];
    const PER_SIZE: usize = 8;
    const PUBLISHERS: usize = 3;
    let server = start().await;
    let mut subscribers = Vec::new();
    for _ in 0..3 {
        let (client, events) = Client::connect(&server.url(), ClientOptions::default())
            .await
            .unwrap();
        client.subscribe("big").await.unwrap();
        subscribers.push((client, events));
    }
    let mut publishers = Vec::new();
    for who in 0..PUBLISHERS {
        let (client, _events) = Client::connect(&server.url(), ClientOptions::default())
            .await
            .unwrap();
        publishers.push(tokio::spawn(async move {
            for size in SIZES {
                let pad = "x".repeat(size);
                for k in 0..PER_SIZE {
                    let data = json!({"who": who, "size": size, "k": k, "pad": pad});
                    if k + 1 < PER_SIZE {
                        client.transmit_publish("big", data).unwrap();
                    } else {
                        client.publish("big", data).await.unwrap();
                    }
                }
            }
            client
        }));
    }
    let mut keep = Vec::new();
    for publisher in publishers {
        keep.push(publisher.await.unwrap());
    }
    let total = PUBLISHERS * SIZES.len() * PER_SIZE;
    // A stalled delivery waits for the next ping interval (8 s) to be written: each
    // publication must come well before that.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    for (_, events) in &mut subscribers {
        let mut next = [(0usize, 0usize); PUBLISHERS];
        let mut received = 0;
        while received < total {
            let wait = deadline.min(tokio::time::Instant::now() + Duration::from_secs(5));
            let event = tokio::time::timeout_at(wait, events.next())
                .await
                .unwrap_or_else(|_| panic!("only {received} of {total} publications arrived"))
                .unwrap();
            let ClientEvent::Publication {
                data: Some(data), ..
            } = event
            else {
                continue;
            };
            let who = data["who"].as_u64().unwrap() as usize;
            let (size_index, k) = next[who];
            assert_eq!(
                data["size"],
                json!(SIZES[size_index]),
                "publisher {who}'s order"
            );
            assert_eq!(data["k"], json!(k), "publisher {who}'s order");
            assert_eq!(data["pad"].as_str().unwrap().len(), SIZES[size_index]);
            next[who] = if k + 1 == PER_SIZE {
                (size_index + 1, 0)
            } else {
                (size_index, k + 1)
            };
            received += 1;
        }
        assert!(next.iter().all(|&(size, _)| size == SIZES.len()));
    }
    let metrics = server.handle.metrics().render();
    assert!(
        metrics.contains(&format!("sockyard_deliveries_total {}", total * 3)),
        "each publication delivered once to each subscriber: {metrics}"
    );
    drop(keep);
}
