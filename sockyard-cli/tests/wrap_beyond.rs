//! The `sockyard wrap` flags ScaleSocket does not have (graceful stop, restarts, idle rooms,
//! client limits and flow control, origin checks, TLS, tokens, message size), checked on the
//! real binary with real clients and programs.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sockyard::auth::Authenticator;
use sockyard_test_support::binary::Sockyard;
use sockyard_test_support::http::{dropped_within, http_get, metric};
use sockyard_test_support::process::{alive, Process};
use sockyard_test_support::programs::python;
use sockyard_test_support::tempdir::TempDir;
use sockyard_test_support::tls::{https_get, self_signed, wss_connect};
use sockyard_test_support::wait::{eventually, file_when, WAIT};
use sockyard_test_support::ws::*;
use tokio::io::AsyncWriteExt as _;
use tokio_tungstenite::tungstenite::Message;

const SOCKYARD: Sockyard = Sockyard::at(env!("CARGO_BIN_EXE_sockyard"));

const SHORT: Duration = Duration::from_millis(200);

/// Wraps a shell program that runs `setup`, prints `ready` and then ignores its input for up
/// to 10 s, with `--grace` and `--kill-after` as given (in seconds).
fn wrap_lingering(grace: &str, kill_after: &str, setup: &str) -> Process {
    let script =
        format!("{setup}; echo ready; i=0; while [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done");
    SOCKYARD.wrap(&[
        "--grace",
        grace,
        "--kill-after",
        kill_after,
        "sh",
        "--",
        "-c",
        &script,
    ])
}

#[tokio::test]
async fn grace_then_sigterm_for_a_program_that_ignores_end_of_input() {
    let dir = TempDir::new("grace");
    let log = dir.arg("log");
    // Never reads its input; exits on SIGTERM after noting it.
    let server = wrap_lingering(
        "0.6",
        "5",
        &format!("trap 'echo TERM >> {log}; exit 0' TERM"),
    );
    let mut ws = connect(&server.url("/g")).await;
    assert_eq!(text(&mut ws).await, "ready");
    leave(ws).await;
    let left = Instant::now();
    file_when(Path::new(&log), |t| t == "TERM\n").await;
    let waited = left.elapsed();
    assert!(
        waited >= Duration::from_millis(500),
        "SIGTERM came {waited:?} after the last client left, before the grace period"
    );
    assert!(
        waited < Duration::from_secs(3),
        "SIGTERM came late: {waited:?}"
    );
    server.wait_log(&["program stopped"]).await;
}

/// A program that never reads its input, with more queued for it than a pipe holds: the
/// input is closed when the grace period is over and SIGTERM follows, whether the last client
/// left or the server shuts down (which then does not wait out its own timeout).
#[tokio::test]
async fn a_program_that_never_reads_its_input_is_stopped_after_the_grace_period() {
    for shutdown in [false, true] {
        let dir = TempDir::new("unread");
        let log = dir.arg("log");
        let mut server = wrap_lingering(
            "0.5",
            "5",
            &format!("trap 'echo TERM >> {log}; exit 0' TERM"),
        );
        let mut ws = connect(&server.url("/u")).await;
        assert_eq!(text(&mut ws).await, "ready");
        // 256 KiB: the pipe to the program is full long before that.
        let chunk = "x".repeat(4096);
        for _ in 0..64 {
            send(&mut ws, &chunk).await;
        }
        tokio::time::sleep(SHORT).await;
        let started = Instant::now();
        if shutdown {
            server.signal("TERM");
        } else {
            leave(ws).await;
        }
        file_when(Path::new(&log), |t| t == "TERM\n").await;
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(400),
            "shutdown {shutdown}: SIGTERM came {waited:?} after, before the grace period"
        );
        assert!(
            waited < Duration::from_secs(2),
            "shutdown {shutdown}: SIGTERM came {waited:?} after, long past the grace period"
        );
        if shutdown {
            let status = server.wait_exit(WAIT).await.expect("the server exits");
            assert!(status.success(), "{status:?}");
            assert!(
                started.elapsed() < Duration::from_secs(3),
                "the server took {:?} to stop",
                started.elapsed()
            );
            assert!(
                !server.log().contains("did not stop within"),
                "{}",
                server.log()
            );
        } else {
            server.wait_log(&["program stopped"]).await;
        }
    }
}

#[tokio::test]
async fn kill_after_sends_sigkill_to_a_program_that_ignores_sigterm() {
    let dir = TempDir::new("kill");
    let pid_file = dir.arg("pid");
    let server = wrap_lingering("0.2", "0.5", &format!("trap '' TERM; echo $$ > {pid_file}"));
    let mut ws = connect(&server.url("/k")).await;
    assert_eq!(text(&mut ws).await, "ready");
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    leave(ws).await;
    let left = Instant::now();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(alive(pid), "killed before grace + kill-after had passed");
    eventually("the program to be killed", || !alive(pid)).await;
    let waited = left.elapsed();
    assert!(waited >= Duration::from_millis(600), "{waited:?}");
    assert!(waited < Duration::from_secs(3), "{waited:?}");
    server.wait_log(&["sending SIGKILL"]).await;
}

#[tokio::test]
async fn restart_on_failure_starts_the_program_again_for_the_same_clients() {
    let script = r#"echo "start $$"; read a; echo "first: $a"; read b; exit 3"#;
    let server = SOCKYARD.wrap(&[
        "--restart",
        "on-failure",
        "--joinmsg",
        "join #ID",
        "--metrics",
        "sh",
        "--",
        "-c",
        script,
    ]);
    let mut ws = connect(&server.url("/r")).await;
    let first = text(&mut ws).await;
    assert!(first.starts_with("start "), "{first}");
    assert_eq!(text(&mut ws).await, "first: join 1");
    send(&mut ws, "fail now").await;
    // A new process, told again who is in the room.
    let second = text(&mut ws).await;
    assert!(second.starts_with("start "), "{second}");
    assert_ne!(second, first);
    assert_eq!(text(&mut ws).await, "first: join 1");
    send(&mut ws, "still connected").await;
    let third = text(&mut ws).await;
    assert!(third.starts_with("start ") && third != second, "{third}");
    assert_eq!(
        metric(
            &server.metrics().await,
            r#"sockyard_room_program_starts_total{room="r"}"#
        ),
        Some(3.0)
    );

    // A clean exit is not a failure: the clients are closed.
    let server = SOCKYARD.wrap(&[
        "--restart",
        "on-failure",
        "sh",
        "--",
        "-c",
        "echo up; read a; exit 0",
    ]);
    let mut ws = connect(&server.url("/r")).await;
    assert_eq!(text(&mut ws).await, "up");
    send(&mut ws, "x").await;
    assert_eq!(
        close_frame(&mut ws).await,
        (1000, "The program exited".to_owned())
    );
}

#[tokio::test]
async fn restart_always_restarts_after_a_clean_exit() {
    let server = SOCKYARD.wrap(&[
        "--restart",
        "always",
        "sh",
        "--",
        "-c",
        r#"echo "start $$"; read a; exit 0"#,
    ]);
    let mut ws = connect(&server.url("/r")).await;
    let first = text(&mut ws).await;
    send(&mut ws, "x").await;
    let second = text(&mut ws).await;
    assert!(second.starts_with("start "), "{second}");
    assert_ne!(first, second);
}

#[tokio::test]
async fn idle_timeout_keeps_the_program_for_a_client_that_comes_back() {
    let script = r#"while read l; do echo "$$ $l"; done"#;
    let server = SOCKYARD.wrap(&["--idle-timeout", "1", "sh", "--", "-c", script]);
    let pid_of = |line: String| line.split_whitespace().next().unwrap().to_owned();
    let mut a = connect(&server.url("/i")).await;
    send(&mut a, "a").await;
    let first = pid_of(text(&mut a).await);
    leave(a).await;
    tokio::time::sleep(SHORT).await;
    let mut b = connect(&server.url("/i")).await;
    send(&mut b, "b").await;
    assert_eq!(
        pid_of(text(&mut b).await),
        first,
        "same process within the timeout"
    );
    leave(b).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut c = connect(&server.url("/i")).await;
    send(&mut c, "c").await;
    assert_ne!(pid_of(text(&mut c).await), first, "a new process after it");

    // Without it the program stops as soon as the room is empty.
    let server = SOCKYARD.wrap(&["--metrics", "sh", "--", "-c", script]);
    let mut a = connect(&server.url("/i")).await;
    send(&mut a, "a").await;
    let first = pid_of(text(&mut a).await);
    leave(a).await;
    server.wait_metric("sockyard_room_open", Some(0.0)).await;
    let mut b = connect(&server.url("/i")).await;
    send(&mut b, "b").await;
    assert_ne!(pid_of(text(&mut b).await), first);
}

#[tokio::test]
async fn max_clients_refuses_one_more_with_429() {
    let server = SOCKYARD.wrap(&["--max-clients", "2", "cat"]);
    let a = connect(&server.url("/m")).await;
    let _b = connect(&server.url("/m")).await;
    assert_eq!(
        refusal(&server.url("/m")).await,
        (429, "Room is full\n".to_owned())
    );
    // Other rooms are not affected, and a seat frees when a client leaves.
    let _other = connect(&server.url("/other")).await;
    leave(a).await;
    let mut c = connect_eventually(&server.url("/m"), "the seat to free").await;
    send(&mut c, "in").await;
    assert_eq!(text(&mut c).await, "in");
}

/// Prints COUNT lines of SIZE bytes (`<n>:xxx…`) when it reads `go`, then keeps reading.
const FLOOD: &str = r#"
import sys
count, size = int(sys.argv[1]), int(sys.argv[2])
for line in sys.stdin:
    if line.strip() == "go":
        out = sys.stdout
        for i in range(count):
            head = "%d:" % i
            out.write(head + "x" * (size - len(head)) + "\n")
        out.flush()
"#;

/// Wraps [`FLOOD`] with `flags`, printing `count` lines of `size` bytes.
fn wrap_flood(flags: &[&str], count: usize, size: usize) -> Process {
    let (count, size) = (count.to_string(), size.to_string());
    let mut args = flags.to_vec();
    args.extend([python(), "--", "-c", FLOOD, &count, &size]);
    SOCKYARD.wrap(&args)
}

#[tokio::test]
async fn drop_when_full_drops_for_a_full_client_and_counts_it() {
    let count = 3000;
    let server = wrap_flood(
        &["--drop-when-full", "--client-queue", "1", "--metrics"],
        count,
        2000,
    );
    let mut ws = connect_small_buffer(&server.url("/d"), 4096).await;
    send(&mut ws, "go").await;
    // Not reading while the program writes everything.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let mut received = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_millis(500), next(&mut ws)).await {
            Ok(Message::Text(line)) => received.push(line.to_string()),
            Ok(other) => panic!("{}", show(&other)),
            Err(_) => break,
        }
    }
    let metrics = server.metrics().await;
    let dropped = metric(
        &metrics,
        r#"sockyard_room_messages_dropped_total{room="d",reason="client_full"}"#,
    )
    .unwrap_or(0.0);
    assert!(dropped > 0.0, "nothing dropped:\n{metrics}");
    assert!(received.len() < count, "{} received", received.len());
    assert_eq!(received.len() + dropped as usize, count, "{metrics}");
    // What arrived is in order.
    let numbers: Vec<usize> = received
        .iter()
        .map(|l| l.split(':').next().unwrap().parse().unwrap())
        .collect();
    assert!(numbers.windows(2).all(|w| w[0] < w[1]));
}

#[tokio::test]
async fn a_client_that_never_reads_is_closed_with_4400_and_the_others_get_everything() {
    let count = 400;
    let server = wrap_flood(
        &[
            "--client-queue",
            "4",
            "--slow-client-timeout",
            "0.5",
            "--metrics",
        ],
        count,
        16000,
    );
    let mut fast = connect(&server.url("/s")).await;
    let mut late_reader = connect_small_buffer(&server.url("/s"), 4096).await;
    let never_reader = connect_small_buffer(&server.url("/s"), 4096).await;
    // The late reader starts reading once the room has given up on both slow clients.
    let addr = server.addr;
    let late = tokio::spawn(async move {
        let deadline = Instant::now() + WAIT;
        loop {
            let text = http_get(addr, "/metrics").await.body;
            if metric(&text, r#"sockyard_room_slow_clients_total{room="s"}"#) == Some(2.0) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the two slow clients were not both found slow:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        until_close(&mut late_reader).await
    });
    send(&mut fast, "go").await;
    let started = Instant::now();
    for i in 0..count {
        let line = text(&mut fast).await;
        assert!(
            line.starts_with(&format!("{i}:")) && line.len() == 16000,
            "message {i}: {}",
            &line[..20.min(line.len())]
        );
        // The room waits for the slow clients once, not once per message.
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "the fast client had {i} messages after {:?}",
            started.elapsed()
        );
    }
    let (messages, code, reason) = late.await.unwrap();
    assert_eq!(code, 4400, "{reason}");
    assert!(messages.len() < count, "{}", messages.len());
    // The client that never reads is dropped soon after, so the room does not keep it.
    server
        .wait_metric(r#"sockyard_room_connections_open{room="s"}"#, Some(1.0))
        .await;
    assert_eq!(
        metric(
            &server.metrics().await,
            r#"sockyard_room_slow_clients_total{room="s"}"#
        ),
        Some(2.0)
    );
    drop(never_reader);
    // The fast client stays.
    send(&mut fast, "after").await;
    silent(&mut fast, SHORT).await;
}

#[tokio::test]
async fn origin_list_refuses_other_origins_with_403() {
    let server = SOCKYARD.wrap(&["--origin", "example.com,http://localhost:8080", "cat"]);
    let url = server.url("/o");
    assert_eq!(
        refusal_with(&url, &[("Origin", "http://evil.example")])
            .await
            .0,
        403
    );
    for origin in ["https://example.com", "http://localhost:8080"] {
        let mut ws = connect_with(&url, &[("Origin", origin)])
            .await
            .unwrap_or_else(|e| panic!("{origin}: {e}"));
        send(&mut ws, origin).await;
        assert_eq!(text(&mut ws).await, origin);
    }
    // Non-browser clients send no Origin.
    let _plain = connect(&url).await;
}

#[tokio::test]
async fn tls_serves_wss_and_https_with_the_given_certificate() {
    let dir = TempDir::new("tls");
    let Some((cert, key)) = self_signed(dir.path()) else {
        return;
    };
    let server = SOCKYARD.wrap(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "cat",
    ]);
    assert!(
        server
            .log()
            .contains(&format!("wss://{}/<room>", server.addr)),
        "{}",
        server.log()
    );
    // HTTPS.
    let reply = https_get(server.addr, &cert, "/health").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["status"], "ok");
    // WSS.
    let mut ws = wss_connect(server.addr, &cert, "/secure").await;
    send(&mut ws, "over tls").await;
    assert_eq!(text(&mut ws).await, "over tls");
    // Plain ws:// on the TLS port does not get a WebSocket.
    assert!(try_connect(&server.url("/secure")).await.is_err());
}

#[tokio::test]
async fn token_key_requires_a_valid_token_that_opens_the_room() {
    let key = "wrap-test-key";
    let server = SOCKYARD.wrap(&["--token-key", key, "cat"]);
    let auth = Authenticator::hs256(key.as_bytes(), Duration::from_secs(60));
    let sign = |claims: Value| auth.sign(claims.as_object().unwrap().clone()).unwrap();
    let url = |path: &str| server.url(path);

    assert_eq!(refusal(&url("/a")).await.0, 401, "no token");
    let other = Authenticator::hs256(b"another key", Duration::from_secs(60));
    let forged = other.sign(json!({}).as_object().unwrap().clone()).unwrap();
    assert_eq!(
        refusal(&url(&format!("/a?token={forged}"))).await.0,
        401,
        "bad signature"
    );
    assert_eq!(refusal(&url("/a?token=not.a.token")).await.0, 401);
    let expired = sign(json!({"exp": 1_000_000}));
    assert_eq!(refusal(&url(&format!("/a?token={expired}"))).await.0, 401);

    let only_a = sign(json!({"rooms": ["a"]}));
    assert_eq!(
        refusal(&url(&format!("/b?token={only_a}"))).await.0,
        403,
        "the token's rooms exclude b"
    );
    let mut ws = connect(&url(&format!("/a?token={only_a}"))).await;
    send(&mut ws, "in a").await;
    assert_eq!(text(&mut ws).await, "in a");

    // As a header, and a `room` claim.
    let only_b = sign(json!({"room": "b"}));
    let bearer = format!("Bearer {only_b}");
    let mut ws = connect_with(&url("/b"), &[("Authorization", &bearer)])
        .await
        .expect("bearer token");
    send(&mut ws, "in b").await;
    assert_eq!(text(&mut ws).await, "in b");
    assert_eq!(
        refusal_with(&url("/a"), &[("Authorization", &bearer)])
            .await
            .0,
        403
    );
    // The scheme's case does not matter.
    let lower = format!("bearer {only_b}");
    let _ws = connect_with(&url("/b"), &[("Authorization", &lower)])
        .await
        .expect("lower-case scheme");
    // No room claim: every room.
    let any = sign(json!({"sub": "ann"}));
    let _ws = connect(&url(&format!("/c?token={any}"))).await;

    // The key can come from the environment instead.
    let server = SOCKYARD
        .wrap_launch(&["cat"])
        .env("SOCKYARD_ROOM_KEY", key)
        .start();
    assert_eq!(refusal(&server.url("/a")).await.0, 401);
    let _ws = connect(&server.url(&format!("/a?token={any}"))).await;
}

#[tokio::test]
async fn max_message_bytes_closes_a_client_with_1009_and_cuts_long_output() {
    // Prints a line of N `y`s for each number N it reads.
    let script = "import sys\nfor l in sys.stdin:\n    print('y' * int(l), flush=True)";
    let server = SOCKYARD.wrap(&["--max-message-bytes", "1000", python(), "--", "-c", script]);
    let mut a = connect(&server.url("/x")).await;
    let mut b = connect(&server.url("/x")).await;
    // Output longer than the limit arrives in pieces, nothing lost.
    send(&mut a, "2500").await;
    let pieces = texts(&mut b, 3).await;
    assert_eq!(
        pieces.iter().map(String::len).collect::<Vec<_>>(),
        [1000, 1000, 500]
    );
    assert_eq!(pieces.concat(), "y".repeat(2500));
    assert_eq!(texts(&mut a, 3).await.concat(), "y".repeat(2500));
    // A message of exactly the limit is fine.
    send(&mut a, &format!("{:0>1000}", 7)).await;
    assert_eq!(text(&mut a).await, "y".repeat(7));
    // A client message over the limit closes that client only.
    send(&mut a, &"z".repeat(1001)).await;
    let (_, code, _) = until_close(&mut a).await;
    assert_eq!(code, 1009);
    assert_eq!(text(&mut b).await, "y".repeat(7));
    send(&mut b, "3").await;
    assert_eq!(text(&mut b).await, "yyy");
}

#[tokio::test]
async fn a_small_input_queue_holds_clients_back_without_losing_messages() {
    // The program reads nothing for half a second; its pipe holds 64 KiB of the 2 MB sent.
    let server = SOCKYARD.wrap(&[
        "--input-queue",
        "1",
        "--metrics",
        "sh",
        "--",
        "-c",
        "sleep 0.5; exec cat",
    ]);
    let ws = connect(&server.url("/q")).await;
    let count = 2000;
    let line = |i: usize| format!("{i:04}{}", "q".repeat(1020));
    let (writer, mut stream) =
        feed_in_background(ws, (0..count).map(move |i| Message::text(line(i))));
    tokio::time::sleep(Duration::from_millis(250)).await;
    let queued = metric(
        &server.metrics().await,
        r#"sockyard_room_messages_in_total{room="q"}"#,
    )
    .unwrap_or(0.0);
    assert!(
        queued < 100.0,
        "{queued} messages taken in while the program read nothing"
    );
    for i in 0..count {
        assert_eq!(next(&mut stream).await, Message::text(line(i)));
    }
    let _sink = writer.await.unwrap();
}

#[tokio::test]
async fn tokens_do_not_reach_the_program() {
    let key = "wrap-test-key";
    let server = SOCKYARD.wrap(&[
        "--token-key",
        key,
        "--joinmsg",
        "join #QUERY_STRING",
        "sh",
        "--",
        "-c",
        "echo \"env $QUERY_STRING\"; cat",
    ]);
    let auth = Authenticator::hs256(key.as_bytes(), Duration::from_secs(60));
    let token = auth.sign(json!({}).as_object().unwrap().clone()).unwrap();
    let mut ws = connect(&server.url(&format!("/t?a=1&token={token}&b=2"))).await;
    let mut lines = texts(&mut ws, 2).await;
    lines.sort();
    assert_eq!(lines, ["env a=1&b=2", "join a=1&b=2"]);
}

#[tokio::test]
async fn header_timeout_drops_connections_that_stall_before_their_request() {
    // Plain: headers begun, never finished.
    let server = SOCKYARD.wrap(&["--header-timeout", "0.3", "cat"]);
    let mut unfinished = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    unfinished
        .write_all(b"GET /room HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let waited = dropped_within(unfinished, WAIT).await;
    assert!(
        waited >= Duration::from_millis(250),
        "dropped after {waited:?}"
    );

    // TLS: no handshake at all.
    let dir = TempDir::new("tls-wait");
    let Some((cert, key)) = self_signed(dir.path()) else {
        return;
    };
    let server = SOCKYARD.wrap(&[
        "--header-timeout",
        "0.3",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "cat",
    ]);
    let silent = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let waited = dropped_within(silent, WAIT).await;
    assert!(
        waited >= Duration::from_millis(250),
        "dropped after {waited:?}"
    );
    let mut ws = wss_connect(server.addr, &cert, "/after").await;
    send(&mut ws, "still served").await;
    assert_eq!(text(&mut ws).await, "still served");
}
