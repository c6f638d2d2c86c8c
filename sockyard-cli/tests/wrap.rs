//! Every ScaleSocket 0.2.4 flag of `sockyard wrap`, checked on the real binary with real
//! WebSocket clients and real wrapped programs (cat, sh, printf, python3).

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sockyard_test_support::binary::{free_ports, Sockyard};
use sockyard_test_support::http::metric;
use sockyard_test_support::process::Process;
use sockyard_test_support::programs::*;
use sockyard_test_support::tempdir::TempDir;
use sockyard_test_support::wait::WAIT;
use sockyard_test_support::ws::*;
use tokio_tungstenite::tungstenite::Message;

const SOCKYARD: Sockyard = Sockyard::at(env!("CARGO_BIN_EXE_sockyard"));

const SHORT: Duration = Duration::from_millis(200);

#[tokio::test]
async fn addr_binds_where_asked_and_health_answers() {
    let port = free_ports(1);
    let addr = format!("127.0.0.1:{port}");
    let server = SOCKYARD.wrap(&["--addr", &addr, "cat"]);
    assert_eq!(server.addr.to_string(), addr);
    assert!(
        server
            .log()
            .contains(&format!("rooms at ws://{addr}/<room>")),
        "{}",
        server.log()
    );
    let health = server.get("/health").await;
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "ok");
    assert!(health
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    let mut ws = connect(&server.url("/r")).await;
    send(&mut ws, "hi").await;
    assert_eq!(text(&mut ws).await, "hi");
    // A plain GET of a room is not an upgrade; disabled features are not found.
    assert_eq!(server.get("/r").await.status, 404);
    assert_eq!(server.get("/api/rooms").await.status, 404);
    assert_eq!(server.get("/metrics").await.status, 404);
}

#[tokio::test]
async fn binary_mode_passes_raw_bytes_both_ways() {
    let server = SOCKYARD.wrap(&["-b", "cat"]);
    let mut ws = connect(&server.url("/b")).await;
    // A text message is written without a newline and comes back in binary frames.
    send(&mut ws, "go").await;
    assert_eq!(binary_bytes(&mut ws, 2).await, b"go");
    let payload = [0u8, 0x0a, 0xff, 0x0d, 0x0a, 0x80, 0x00];
    send_binary(&mut ws, &payload).await;
    assert_eq!(binary_bytes(&mut ws, payload.len()).await, payload);
    silent(&mut ws, SHORT).await;
}

#[tokio::test]
async fn cache_all_replays_the_last_messages_to_a_late_joiner() {
    let server = SOCKYARD.wrap(&[
        "--cache",
        "all:3",
        "sh",
        "--",
        "-c",
        "for i in 1 2 3 4 5; do echo m$i; done; exec cat",
    ]);
    let mut a = connect(&server.url("/c")).await;
    assert_eq!(texts(&mut a, 5).await, ["m1", "m2", "m3", "m4", "m5"]);
    let mut b = connect(&server.url("/c")).await;
    assert_eq!(texts(&mut b, 3).await, ["m3", "m4", "m5"]);
    silent(&mut b, SHORT).await;
    send(&mut a, "live").await;
    assert_eq!(text(&mut a).await, "live");
    assert_eq!(text(&mut b).await, "live");
}

#[tokio::test]
async fn cache_with_a_bare_size_is_accepted() {
    // ScaleSocket documents `--cache SIZE` but refuses it.
    let server = SOCKYARD.wrap(&[
        "--cache",
        "2",
        "sh",
        "--",
        "-c",
        "for i in 1 2 3 4 5; do echo m$i; done; exec cat",
    ]);
    let mut a = connect(&server.url("/c")).await;
    assert_eq!(texts(&mut a, 5).await.len(), 5);
    let mut b = connect(&server.url("/c")).await;
    assert_eq!(texts(&mut b, 2).await, ["m4", "m5"]);
    silent(&mut b, SHORT).await;
}

#[tokio::test]
async fn cache_tagged_keeps_only_messages_marked_cache() {
    let script = r#"printf '%s\n' '{"_cache":true,"n":1}' '{"n":2}' '{"_cache":true,"n":3}' '{"_cache":true,"n":4}' '{"n":5}'; exec cat"#;
    let server = SOCKYARD.wrap(&[
        "--frame=json",
        "--cache",
        "tagged:2",
        "sh",
        "--",
        "-c",
        script,
    ]);
    let mut a = connect(&server.url("/t")).await;
    assert_eq!(texts(&mut a, 5).await.len(), 5);
    let mut b = connect(&server.url("/t")).await;
    assert_eq!(
        texts(&mut b, 2).await,
        [r#"{"_cache":true,"n":3}"#, r#"{"_cache":true,"n":4}"#]
    );
    silent(&mut b, SHORT).await;
}

#[tokio::test]
async fn cachepersist_keeps_history_across_a_program_restart() {
    for persist in [true, false] {
        let mut args = vec!["--cache", "all:2", "--metrics"];
        if persist {
            args.push("--cachepersist");
        }
        args.extend(["sh", "--", "-c", r#"echo "run $$"; exec cat"#]);
        let server = SOCKYARD.wrap(&args);
        let mut a = connect(&server.url("/p")).await;
        let first_run = text(&mut a).await;
        assert!(first_run.starts_with("run "), "{first_run}");
        send(&mut a, "x").await;
        send(&mut a, "y").await;
        assert_eq!(texts(&mut a, 2).await, ["x", "y"]);
        leave(a).await;
        // The room's program is gone once no room is open.
        server.wait_metric("sockyard_room_open", Some(0.0)).await;
        let mut b = connect(&server.url("/p")).await;
        if persist {
            assert_eq!(texts(&mut b, 2).await, ["x", "y"]);
        }
        let second_run = text(&mut b).await;
        assert!(
            second_run.starts_with("run "),
            "persist={persist}: {second_run}"
        );
        assert_ne!(second_run, first_run, "a new process runs the room");
        silent(&mut b, SHORT).await;
    }
}

#[tokio::test]
async fn cachepersist_history_reaches_a_client_that_comes_straight_back() {
    // The program takes a second to exit once its input closes; the client is back before.
    let script = r#"echo "run $$"; while read l; do echo "$l"; done; sleep 1"#;
    let server = SOCKYARD.wrap(&[
        "--cache",
        "all:4",
        "--cachepersist",
        "--metrics",
        "sh",
        "--",
        "-c",
        script,
    ]);
    let mut a = connect(&server.url("/p")).await;
    let first_run = text(&mut a).await;
    send(&mut a, "x").await;
    assert_eq!(text(&mut a).await, "x");
    leave(a).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut b = connect(&server.url("/p")).await;
    let seen = texts(&mut b, 3).await;
    assert_eq!(seen[..2], [first_run.clone(), "x".to_owned()]);
    assert!(
        seen[2].starts_with("run ") && seen[2] != first_run,
        "{seen:?}"
    );
    // The first room ending later leaves the second room's series alone.
    server.wait_metric("sockyard_room_open", Some(1.0)).await;
    let series = r#"sockyard_room_connections_open{room="p"}"#;
    assert_eq!(metric(&server.metrics().await, series), Some(1.0));
    leave(b).await;
    server.wait_metric("sockyard_room_open", Some(0.0)).await;
    assert_eq!(metric(&server.metrics().await, series), None);
}

#[tokio::test]
async fn cachepersist_keeps_what_the_program_prints_after_the_last_client_left() {
    // The program answers the leave message and the end of its input.
    let script = r#"while read l; do echo "got $l"; done; echo "input closed""#;
    let server = SOCKYARD.wrap(&[
        "--cache",
        "all:8",
        "--cachepersist",
        "--metrics",
        "--leavemsg",
        "leave #ID",
        "sh",
        "--",
        "-c",
        script,
    ]);
    let mut a = connect(&server.url("/late")).await;
    send(&mut a, "x").await;
    assert_eq!(text(&mut a).await, "got x");
    leave(a).await;
    server.wait_metric("sockyard_room_open", Some(0.0)).await;
    let mut b = connect(&server.url("/late")).await;
    assert_eq!(
        texts(&mut b, 3).await,
        ["got x", "got leave 1", "input closed"]
    );
    silent(&mut b, SHORT).await;
}

#[tokio::test]
async fn delay_holds_messages_sent_meanwhile_then_delivers_them() {
    let server = SOCKYARD.wrap(&["--delay", "1", "cat"]);
    let started = Instant::now();
    let mut ws = connect(&server.url("/d")).await;
    send(&mut ws, "early").await;
    send(&mut ws, "early too").await;
    assert_eq!(texts(&mut ws, 2).await, ["early", "early too"]);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "delivered after {:?}, before the delay",
        started.elapsed()
    );
    send(&mut ws, "later").await;
    assert_eq!(text(&mut ws).await, "later");
}

#[tokio::test]
async fn delimiters_split_output_at_any_given_byte() {
    let server = SOCKYARD.wrap(&[
        "--delimiters=,;",
        "sh",
        "--",
        "-c",
        r"printf 'a,b\nc\0d;e\na,'; exec cat",
    ]);
    let mut ws = connect(&server.url("/d")).await;
    assert_eq!(texts(&mut ws, 3).await, ["a", "b\nc\0d", "e\na"]);
    silent(&mut ws, SHORT).await;
}

#[tokio::test]
async fn delimiters_accept_escapes() {
    let server = SOCKYARD.wrap(&[
        r"--delimiters=\t\\",
        "sh",
        "--",
        "-c",
        r"printf 'x\ty\\z\nw\t'; exec cat",
    ]);
    let mut ws = connect(&server.url("/d")).await;
    assert_eq!(texts(&mut ws, 3).await, ["x", "y", "z\nw"]);
}

#[tokio::test]
async fn null_ends_messages_at_nul_alone_or_with_delimiters() {
    let script = r"printf 'a\nb\0c,d\0'; exec cat";
    let alone = SOCKYARD.wrap(&["--null", "sh", "--", "-c", script]);
    let both = SOCKYARD.wrap(&["--null", "--delimiters=,", "sh", "--", "-c", script]);
    let mut ws = connect(&alone.url("/n")).await;
    assert_eq!(texts(&mut ws, 2).await, ["a\nb", "c,d"]);
    let mut ws = connect(&both.url("/n")).await;
    assert_eq!(texts(&mut ws, 3).await, ["a\nb", "c", "d"]);
}

#[tokio::test]
async fn join_and_leave_messages_fill_every_placeholder_without_injection() {
    let server = SOCKYARD.wrap(&[
        "--joinmsg",
        "join id=#ID room=#ROOM addr=#REMOTE_ADDR qs=#QUERY_STRING name=#QUERY_NAME x=#QUERY_X missing=#QUERY_NOPE",
        "--leavemsg",
        "leave id=#ID name=#QUERY_NAME",
        "cat",
    ]);
    // The room name holds `#ID`: it is shown as written, never expanded again.
    let mut a = connect(&server.url("/e%23ID?name=bob%20smith&x=%23ID")).await;
    let addr_a = local_addr(&a);
    assert_eq!(
        text(&mut a).await,
        format!(
            "join id=1 room=e#ID addr={addr_a} qs=name=bob%20smith&x=%23ID name=bob%20smith x=%23ID missing=#QUERY_NOPE"
        )
    );
    // A value holding a quote, a newline and a placeholder is re-encoded: one line, no
    // expansion.
    let evil = "name=%22%0Aleave%20id%3D1%23ROOM";
    let mut b = connect(&server.url(&format!("/e%23ID?{evil}"))).await;
    let addr_b = local_addr(&b);
    let expected = format!(
        "join id=2 room=e#ID addr={addr_b} qs={evil} name=%22%0Aleave%20id%3D1%23ROOM x=#QUERY_X missing=#QUERY_NOPE"
    );
    assert_eq!(text(&mut a).await, expected);
    assert_eq!(text(&mut b).await, expected);
    leave(b).await;
    assert_eq!(
        text(&mut a).await,
        "leave id=2 name=%22%0Aleave%20id%3D1%23ROOM"
    );
    silent(&mut a, SHORT).await;
}

#[tokio::test]
async fn json_mode_adds_from_routes_to_and_announces_joins() {
    let server = SOCKYARD.wrap(&["--json", "cat"]);
    let mut a = connect(&server.url("/j")).await;
    assert_eq!(text(&mut a).await, r#"{"t":"Join","_from":1}"#);
    let mut b = connect(&server.url("/j")).await;
    assert_eq!(text(&mut a).await, r#"{"t":"Join","_from":2}"#);
    assert_eq!(text(&mut b).await, r#"{"t":"Join","_from":2}"#);
    // `_from` is the sender's id, whatever the client claimed.
    send(&mut a, r#"{"msg":"hi","_from":99}"#).await;
    assert_eq!(text(&mut a).await, r#"{"_from":1,"msg":"hi"}"#);
    assert_eq!(text(&mut b).await, r#"{"_from":1,"msg":"hi"}"#);
    // `_to` reaches that connection only.
    send(&mut a, r#"{"_to":2,"secret":"s"}"#).await;
    assert_eq!(text(&mut b).await, r#"{"_from":1,"_to":2,"secret":"s"}"#);
    send(&mut a, r#"{"m":"after"}"#).await;
    assert_eq!(text(&mut a).await, r#"{"_from":1,"m":"after"}"#);
    assert_eq!(text(&mut b).await, r#"{"_from":1,"m":"after"}"#);
    leave(b).await;
    assert_eq!(text(&mut a).await, r#"{"t":"Leave","_from":2}"#);
}

#[tokio::test]
async fn log_json_writes_one_json_object_per_line() {
    let server = SOCKYARD.wrap(&[
        "--log",
        "json",
        "sh",
        "--",
        "-c",
        "echo oops-on-stderr >&2; exec cat",
    ]);
    let mut ws = connect(&server.url("/lj")).await;
    send(&mut ws, "x").await;
    assert_eq!(text(&mut ws).await, "x");
    server.wait_log(&["oops-on-stderr"]).await;
    let lines = server.log_lines();
    assert!(lines.len() >= 3, "{lines:?}");
    for line in &lines {
        let value = parse_json(line);
        assert!(value["level"].is_string(), "{line}");
        assert!(value["fields"].is_object(), "{line}");
    }
    // The program's stderr is logged with its room.
    let stderr_line = lines
        .iter()
        .map(|l| parse_json(l))
        .find(|v| v["fields"]["message"] == "oops-on-stderr")
        .unwrap();
    assert_eq!(stderr_line["fields"]["room"], "lj");
    assert_eq!(stderr_line["fields"]["stream"], "stderr");
}

#[tokio::test]
async fn metrics_expose_room_series_with_room_labels() {
    let server = SOCKYARD.wrap(&["--metrics", "cat"]);
    let mut a = connect(&server.url("/m1")).await;
    let mut b = connect(&server.url("/m1")).await;
    send(&mut a, "one").await;
    assert_eq!(text(&mut a).await, "one");
    assert_eq!(text(&mut b).await, "one");
    let reply = server.get("/metrics").await;
    assert_eq!(reply.status, 200);
    assert!(reply
        .header("content-type")
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let text = reply.body;
    for (series, value) in [
        (r#"sockyard_room_connections_total{room="m1"}"#, 2.0),
        (r#"sockyard_room_connections_open{room="m1"}"#, 2.0),
        (r#"sockyard_room_messages_in_total{room="m1"}"#, 1.0),
        (r#"sockyard_room_messages_out_total{room="m1"}"#, 2.0),
        (r#"sockyard_room_program_starts_total{room="m1"}"#, 1.0),
        ("sockyard_room_open", 1.0),
    ] {
        assert_eq!(metric(&text, series), Some(value), "{series} in\n{text}");
    }
    assert!(
        text.contains("# TYPE sockyard_room_connections counter"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE sockyard_room_connections_open gauge"),
        "{text}"
    );
    assert!(text.trim_end().ends_with("# EOF"), "{text}");
    // The room's gauge goes away with the room; the total stays.
    leave(a).await;
    leave(b).await;
    server.wait_metric("sockyard_room_open", Some(0.0)).await;
    let text = server.metrics().await;
    assert_eq!(
        metric(&text, r#"sockyard_room_connections_open{room="m1"}"#),
        None,
        "{text}"
    );
    assert_eq!(
        metric(&text, r#"sockyard_room_connections_total{room="m1"}"#),
        Some(2.0)
    );
}

#[tokio::test]
async fn oneshot_serves_one_client_then_exits() {
    let mut server = SOCKYARD.wrap(&["--oneshot", "cat"]);
    let mut a = connect(&server.url("/o")).await;
    send(&mut a, "only").await;
    assert_eq!(text(&mut a).await, "only");
    // Refused with an HTTP status before the upgrade, in the same room or another.
    assert_eq!(refusal(&server.url("/o")).await.0, 503);
    assert_eq!(refusal(&server.url("/other")).await.0, 503);
    send(&mut a, "still here").await;
    assert_eq!(text(&mut a).await, "still here");
    leave(a).await;
    let status = server
        .wait_exit(WAIT)
        .await
        .expect("the server exits after its one client");
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn oneshot_exits_when_its_program_does() {
    // Everything it printed arrives before the close that says it exited, though the
    // server starts stopping at once.
    let mut server = SOCKYARD.wrap(&["--oneshot", "seq", "--", "1", "3000"]);
    let mut ws = connect(&server.url("/o")).await;
    let (messages, code, reason) = until_close(&mut ws).await;
    assert_eq!(messages.len(), 3000);
    assert_eq!(messages.last(), Some(&Message::text("3000")));
    assert_eq!((code, reason.as_str()), (1000, "The program exited"));
    drop(ws);
    let status = server.wait_exit(WAIT).await.expect("the server exits");
    assert!(status.success(), "{status:?}");
}

async fn env_of(server: &Process, room: &str) -> Value {
    let mut ws = connect(&server.url(room)).await;
    json_text(&mut ws).await
}

#[tokio::test]
async fn passenv_passes_only_the_listed_variables() {
    let program = [python(), "--", "-c", ENV_PRINTER];
    let start = |flags: &[&str]| {
        let mut args = flags.to_vec();
        args.extend(program);
        SOCKYARD
            .wrap_launch(&args)
            .env("FOO", "foo-value")
            .env("LD_LIBRARY_PATH", "sockyard-test-lib")
            .env("HOME", "sockyard-test-home")
            .start()
    };
    let path = std::env::var("PATH").unwrap();

    let env = env_of(&start(&[]), "/p").await;
    assert_eq!(env["PATH"], path.as_str(), "default passes PATH");
    assert_eq!(env["LD_LIBRARY_PATH"], "sockyard-test-lib");
    assert_eq!(env["FOO"], Value::Null);
    assert_eq!(env["HOME"], Value::Null);
    assert_eq!(env["ROOM"], "p");

    let env = env_of(&start(&["--passenv", "FOO,PATH"]), "/p").await;
    assert_eq!(env["FOO"], "foo-value");
    assert_eq!(env["PATH"], path.as_str());
    assert_eq!(env["LD_LIBRARY_PATH"], Value::Null);

    let env = env_of(&start(&["--passenv="]), "/p").await;
    for name in ["PATH", "LD_LIBRARY_PATH", "FOO", "HOME"] {
        assert_eq!(env[name], Value::Null, "{name} with --passenv=");
    }
    assert_eq!(env["ROOM"], "p", "the room's own variables are always set");
}

#[tokio::test]
async fn rooms_allow_list_refuses_other_names_with_400() {
    let server = SOCKYARD.wrap(&["--rooms", "alpha,beta", "cat"]);
    let mut alpha = connect(&server.url("/alpha")).await;
    let mut beta = connect(&server.url("/beta")).await;
    assert_eq!(
        refusal(&server.url("/gamma")).await,
        (400, "Invalid room\n".to_owned())
    );
    // The HTTP surface's own names are never rooms.
    for reserved in ["/api", "/health", "/metrics"] {
        assert_eq!(refusal(&server.url(reserved)).await.0, 400, "{reserved}");
    }
    send(&mut alpha, "a").await;
    send(&mut beta, "b").await;
    assert_eq!(text(&mut alpha).await, "a");
    assert_eq!(text(&mut beta).await, "b");
}

#[tokio::test]
async fn maxrooms_refuses_a_new_room_with_429_until_one_ends() {
    let server = SOCKYARD.wrap(&["--maxrooms", "1", "cat"]);
    let a = connect(&server.url("/r1")).await;
    let b = connect(&server.url("/r1")).await;
    assert_eq!(
        refusal(&server.url("/r2")).await,
        (429, "Too many rooms\n".to_owned())
    );
    leave(a).await;
    leave(b).await;
    // The slot frees once r1's program is gone.
    let mut c = connect_eventually(&server.url("/r2"), "r2 to open").await;
    send(&mut c, "second room").await;
    assert_eq!(text(&mut c).await, "second room");

    // `--maxforks` is the same limit.
    let server = SOCKYARD.wrap(&["--maxforks", "1", "cat"]);
    let _a = connect(&server.url("/r1")).await;
    assert_eq!(refusal(&server.url("/r2")).await.0, 429);
}

#[tokio::test]
async fn frame_json_with_and_without_a_value() {
    for flag in ["--frame", "--frame=json"] {
        let server = SOCKYARD.wrap(&[flag, "cat"]);
        let mut a = connect(&server.url("/f")).await;
        let mut b = connect(&server.url("/f")).await;
        // No join messages (unlike --json): the first message is the echo.
        send(&mut a, r#"{"a":1}"#).await;
        assert_eq!(text(&mut a).await, r#"{"_from":1,"a":1}"#, "{flag}");
        assert_eq!(text(&mut b).await, r#"{"_from":1,"a":1}"#, "{flag}");
        send(&mut b, r#"{"_to":1,"p":2}"#).await;
        assert_eq!(text(&mut a).await, r#"{"_from":2,"_to":1,"p":2}"#, "{flag}");
        send(&mut b, r#"{"m":3}"#).await;
        assert_eq!(text(&mut b).await, r#"{"_from":2,"m":3}"#, "{flag}");
        assert_eq!(text(&mut a).await, r#"{"_from":2,"m":3}"#, "{flag}");
    }
}

#[tokio::test]
async fn frame_gwsocket_both_ways_targets_ids_and_broadcasts_id_0() {
    let server = SOCKYARD.wrap(&["--frame=gwsocket", python(), "--", "-c", GW_ECHO]);
    let mut a = connect(&server.url("/g")).await;
    let mut b = connect(&server.url("/g")).await;
    // Client 1's text frame reaches the program as (1, text, "hi"): the echo goes to 1 only,
    // the id-0 copy to everyone.
    send(&mut a, "hi").await;
    assert_eq!(text(&mut a).await, "hi");
    assert_eq!(text(&mut a).await, "all:hi");
    assert_eq!(text(&mut b).await, "all:hi");
    // Binary-safe: a 10-byte payload (0x0A in the length field) full of 0x0A bytes.
    let payload = [0x0a, 0, 1, 0x0a, 0xff, 0x0a, 2, 3, 0x0a, 0x0a];
    send_binary(&mut a, &payload).await;
    assert_eq!(binary(&mut a).await, payload);
    let mut everyone = b"all:".to_vec();
    everyone.extend_from_slice(&payload);
    assert_eq!(binary(&mut a).await, everyone);
    assert_eq!(binary(&mut b).await, everyone);
    // Targeted delivery to another id.
    send(&mut a, "to:2 secret").await;
    assert_eq!(text(&mut b).await, "to:2 secret");
    // Ten clients: id 10 (0x0A) in the header both ways.
    let mut others = Vec::new();
    for _ in 3..=10 {
        others.push(connect(&server.url("/g")).await);
    }
    let tenth = others.last_mut().unwrap();
    send(tenth, "ten").await;
    assert_eq!(text(tenth).await, "ten");
    assert_eq!(text(tenth).await, "all:ten");
    for ws in [&mut a, &mut b] {
        assert_eq!(text(ws).await, "all:ten", "a never saw the secret for 2");
    }
}

#[tokio::test]
async fn clientframe_json_alone_adds_from_without_routing() {
    let server = SOCKYARD.wrap(&["--clientframe=json", "cat"]);
    let mut a = connect(&server.url("/cj")).await;
    let mut b = connect(&server.url("/cj")).await;
    send(&mut a, r#"{"_to":2,"v":1}"#).await;
    // The program's output is not read for `_to`: everyone gets the echo.
    assert_eq!(text(&mut a).await, r#"{"_from":1,"_to":2,"v":1}"#);
    assert_eq!(text(&mut b).await, r#"{"_from":1,"_to":2,"v":1}"#);
}

#[tokio::test]
async fn serverframe_json_alone_routes_without_adding_from() {
    let server = SOCKYARD.wrap(&["--serverframe=json", "cat"]);
    let mut a = connect(&server.url("/sj")).await;
    let mut b = connect(&server.url("/sj")).await;
    send(&mut a, r#"{"_to":2,"v":1}"#).await;
    assert_eq!(text(&mut b).await, r#"{"_to":2,"v":1}"#);
    send(&mut a, "plain text").await;
    assert_eq!(text(&mut a).await, "plain text");
    assert_eq!(text(&mut b).await, "plain text");
}

#[tokio::test]
async fn clientframe_gwsocket_alone_frames_client_messages() {
    let server = SOCKYARD.wrap(&["--clientframe=gwsocket", python(), "--", "-c", GW_DUMP]);
    let mut a = connect(&server.url("/cg")).await;
    let mut b = connect(&server.url("/cg")).await;
    send(&mut a, "hi").await;
    assert_eq!(text(&mut a).await, "from=1 type=1 len=2 hex=6869");
    assert_eq!(text(&mut b).await, "from=1 type=1 len=2 hex=6869");
    let payload = [0x0a; 10];
    send_binary(&mut b, &payload).await;
    let expected = format!("from=2 type=2 len=10 hex={}", hex(&payload));
    assert_eq!(text(&mut a).await, expected);
    assert_eq!(text(&mut b).await, expected);
}

#[tokio::test]
async fn serverframe_gwsocket_alone_routes_program_frames() {
    let server = SOCKYARD.wrap(&["--serverframe=gwsocket", python(), "--", "-c", LINES_TO_GW]);
    let mut a = connect(&server.url("/sg")).await;
    let mut b = connect(&server.url("/sg")).await;
    send(&mut a, "2 hello-b").await;
    assert_eq!(text(&mut b).await, "hello-b");
    send(&mut a, "1 hello-a").await;
    assert_eq!(text(&mut a).await, "hello-a");
    send(&mut a, "0 everyone").await;
    assert_eq!(text(&mut a).await, "everyone");
    assert_eq!(text(&mut b).await, "everyone");
    // Type 2 goes out as a binary message.
    let frame = gw_frame(0, 2, &[0x0a, 0xff, 0x0a]);
    send(&mut a, &format!("raw {}", hex(&frame))).await;
    assert_eq!(binary(&mut a).await, [0x0a, 0xff, 0x0a]);
    assert_eq!(binary(&mut b).await, [0x0a, 0xff, 0x0a]);
}

#[tokio::test]
async fn staticdir_serves_files_without_leaving_the_directory() {
    let dir = TempDir::new("static");
    dir.write("site/index.html", b"<h1>home</h1>");
    dir.write("site/sub/a.txt", b"nested file");
    dir.write("secret.txt", b"top secret");
    let server = SOCKYARD.wrap(&["--staticdir", &dir.arg("site"), "cat"]);
    let index = server.get("/").await;
    assert_eq!(index.status, 200);
    assert_eq!(index.body, "<h1>home</h1>");
    assert!(index
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    let nested = server.get("/sub/a.txt").await;
    assert_eq!((nested.status, nested.body.as_str()), (200, "nested file"));
    assert_eq!(server.get("/missing.txt").await.status, 404);
    for path in [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/sub/../../secret.txt",
        "/sub/%2e%2e%2f%2e%2e%2fsecret.txt",
        "/..%2fsecret.txt",
    ] {
        let reply = server.get(path).await;
        assert_ne!(reply.status, 200, "{path}: {reply:?}");
        assert!(!reply.body.contains("top secret"), "{path}: {reply:?}");
    }
    // Rooms work beside the files.
    let mut ws = connect(&server.url("/room")).await;
    send(&mut ws, "x").await;
    assert_eq!(text(&mut ws).await, "x");
}

#[tokio::test]
async fn staticdir_does_not_follow_symlinks_out_of_the_directory_unless_asked() {
    let dir = TempDir::new("symlinks");
    dir.write("site/index.html", b"home");
    dir.write("site/sub/a.txt", b"nested file");
    dir.write("secret/key.txt", b"top secret");
    let link = |target: &str, name: &str| {
        std::os::unix::fs::symlink(dir.file(target), dir.file(name)).unwrap();
    };
    link("secret/key.txt", "site/key.txt");
    link("secret", "site/secrets");
    link("site/sub/a.txt", "site/inside.txt");
    let server = SOCKYARD.wrap(&["--staticdir", &dir.arg("site"), "cat"]);
    for path in ["/key.txt", "/secrets/key.txt"] {
        let reply = server.get(path).await;
        assert_eq!(reply.status, 404, "{path}: {reply:?}");
        assert!(!reply.body.contains("top secret"), "{path}: {reply:?}");
    }
    // A link that stays inside is followed.
    assert_eq!(server.get("/inside.txt").await.body, "nested file");
    assert_eq!(server.get("/").await.body, "home");
    drop(server);

    // A directory given through a link is still the directory.
    link("site", "site-link");
    let server = SOCKYARD.wrap(&["--staticdir", &dir.arg("site-link"), "cat"]);
    assert_eq!(server.get("/sub/a.txt").await.body, "nested file");
    assert_eq!(server.get("/key.txt").await.status, 404);
    drop(server);

    let server = SOCKYARD.wrap(&["--staticdir", &dir.arg("site"), "--follow-symlinks", "cat"]);
    for path in ["/key.txt", "/secrets/key.txt"] {
        let reply = server.get(path).await;
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (200, "top secret"),
            "{path}"
        );
    }
    // Still never `..`.
    assert_eq!(server.get("/%2e%2e/secret/key.txt").await.status, 404);
}

#[tokio::test]
async fn api_lists_rooms_connections_and_metadata() {
    let server = SOCKYARD.wrap(&["--api", "--json", "cat"]);
    assert_eq!(server.get("/api/rooms").await.json(), json!([]));
    let mut a = connect(&server.url("/lobby")).await;
    let b = connect(&server.url("/lobby")).await;
    assert_eq!(texts(&mut a, 2).await.len(), 2, "two join echoes");
    send(&mut a, r#"{"_meta":true,"title":"lobby","players":2}"#).await;
    // Metadata is stored, not sent: the next message a sees is the marker.
    send(&mut a, r#"{"marker":1}"#).await;
    assert_eq!(text(&mut a).await, r#"{"_from":1,"marker":1}"#);
    let metadata = json!({"_from": 1, "title": "lobby", "players": 2});
    let room = json!({"connections": 2, "metadata": metadata, "name": "lobby"});
    assert_eq!(server.get("/api/rooms").await.json(), json!([room]));
    assert_eq!(server.get("/api/rooms/").await.json(), json!([room]));
    assert_eq!(server.get("/api/lobby").await.json(), room);
    assert_eq!(server.get("/api/lobby/").await.json(), room);
    assert_eq!(server.get("/api/lobby/connections").await.json(), json!(2));
    assert_eq!(server.get("/api/lobby/metadata").await.json(), metadata);
    assert_eq!(
        server.get("/api/nosuch/").await.json(),
        json!({"connections": 0, "metadata": null, "name": "nosuch"})
    );
    assert_eq!(server.get("/api/nosuch/metadata").await.json(), Value::Null);
    // A room's metadata goes with it.
    leave(a).await;
    leave(b).await;
    let deadline = Instant::now() + WAIT;
    while server.get("/api/rooms").await.json() != json!([]) {
        assert!(Instant::now() < deadline, "the room never ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.get("/api/lobby/metadata").await.json(), Value::Null);
}

#[tokio::test]
async fn tcp_talks_to_the_program_on_its_port_after_the_default_delay() {
    let start = free_ports(2);
    let ports = format!("{start}:{}", start + 2);
    let server = SOCKYARD.wrap(&[
        "--tcp",
        "--tcpports",
        &ports,
        python(),
        "--",
        "-c",
        TCP_ECHO,
    ]);
    let started = Instant::now();
    let mut a = connect(&server.url("/t1")).await;
    send(&mut a, "sent during the delay").await;
    assert_eq!(text(&mut a).await, format!("port={start}"));
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "--tcp waits 1 s by default; got output after {:?}",
        started.elapsed()
    );
    assert_eq!(text(&mut a).await, "tcp:sent during the delay");
    let mut b = connect(&server.url("/t2")).await;
    assert_eq!(text(&mut b).await, format!("port={}", start + 1));
    send(&mut b, "hello").await;
    assert_eq!(text(&mut b).await, "tcp:hello");
    silent(&mut a, SHORT).await;
}

#[tokio::test]
async fn verbose_adds_debug_lines_and_text_logs_have_no_colour_codes() {
    let quiet = SOCKYARD.wrap(&["cat"]);
    let loud = SOCKYARD.wrap(&["-v", "cat"]);
    for server in [&quiet, &loud] {
        let mut ws = connect(&server.url("/v")).await;
        send(&mut ws, "x").await;
        assert_eq!(text(&mut ws).await, "x");
        leave(ws).await;
        server.wait_log(&["INFO", "program stopped"]).await;
    }
    loud.wait_log(&["DEBUG", "client joined"]).await;
    assert!(!quiet.log().contains("DEBUG"), "{}", quiet.log());
    for server in [&quiet, &loud] {
        assert!(!server.log().contains('\x1b'), "{}", server.log());
    }
}

#[test]
fn conflicting_or_bad_flags_are_refused_at_start() {
    for (args, needle) in [
        (&["--json", "--frame", "cat"][..], "cannot be used with"),
        (&["-b", "--delimiters=,", "cat"], "cannot be used with"),
        (&["--tcpports", "9000:9001", "cat"], "--tcp"),
        (&["--tcp", "--tcpports", "5:5", "cat"], "exclusive"),
        (&["--cache", "0", "cat"], "out of range"),
        (&["--cache", "some:3", "cat"], "unknown type"),
        (&[r"--delimiters=\q", "cat"], "unknown escape"),
        (&["--delimiters", ",", "cat"], "--delimiters"),
    ] {
        let (_, stderr) = SOCKYARD.wrap_fails(args);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

#[tokio::test]
async fn text_and_binary_client_messages_become_lines() {
    let server = SOCKYARD.wrap(&["cat"]);
    let mut ws = connect(&server.url("/l")).await;
    send(&mut ws, "multi\nline").await;
    assert_eq!(texts(&mut ws, 2).await, ["multi", "line"]);
    // A binary message is written as a line too, and the output line comes back as text.
    send_binary(&mut ws, b"bin").await;
    assert_eq!(text(&mut ws).await, "bin");
}

#[tokio::test]
async fn maxrooms_counts_programs_still_stopping() {
    // A program that ignores the end of its input keeps its slot through the grace period.
    let server = SOCKYARD.wrap(&[
        "--maxrooms",
        "1",
        "--grace",
        "1",
        "sh",
        "--",
        "-c",
        "trap '' TERM; while true; do sleep 0.05; done",
    ]);
    let a = connect(&server.url("/r1")).await;
    leave(a).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        refusal(&server.url("/r2")).await,
        (429, "Too many rooms\n".to_owned()),
        "r1's program is still stopping"
    );
    connect_eventually(&server.url("/r2"), "r2 to open").await;
}
