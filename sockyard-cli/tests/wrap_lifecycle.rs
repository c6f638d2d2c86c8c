//! The life of a `sockyard wrap` room on the real binary: who starts and shares the program,
//! connection ids, the program's environment, leaving, the program exiting or failing to
//! start, and the server being stopped.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use sockyard_test_support::binary::Sockyard;
use sockyard_test_support::http::metric;
use sockyard_test_support::programs::{python, ENV_PRINTER};
use sockyard_test_support::tempdir::TempDir;
use sockyard_test_support::wait::{file_when, WAIT};
use sockyard_test_support::ws::*;

const SOCKYARD: Sockyard = Sockyard::at(env!("CARGO_BIN_EXE_sockyard"));

const SHORT: Duration = Duration::from_millis(200);

/// Appends each input line to `$DIR/$ROOM.log`, then `EOF` when its input closes.
fn recorder(dir: &TempDir) -> String {
    format!(
        r#"while read l; do echo "$l" >> "{}/$ROOM.log"; done; echo EOF >> "{}/$ROOM.log""#,
        dir.path().display(),
        dir.path().display()
    )
}

#[tokio::test]
async fn the_first_client_starts_the_program_and_later_ones_share_it() {
    let script = r#"while read l; do echo "$$ $l"; done"#;
    let server = SOCKYARD.wrap(&["--api", "--metrics", "sh", "--", "-c", script]);
    assert_eq!(server.get("/api/rooms").await.json(), json!([]));
    assert!(!server.metrics().await.contains("program_starts_total{"));
    let mut a = connect(&server.url("/r")).await;
    send(&mut a, "a").await;
    let pid = text(&mut a).await.split(' ').next().unwrap().to_owned();
    let mut b = connect(&server.url("/r")).await;
    send(&mut b, "b").await;
    assert_eq!(text(&mut a).await, format!("{pid} b"));
    assert_eq!(text(&mut b).await, format!("{pid} b"));
    let mut c = connect(&server.url("/r2")).await;
    send(&mut c, "c").await;
    let other = text(&mut c).await;
    assert!(!other.starts_with(&format!("{pid} ")), "{other}");
    silent(&mut a, SHORT).await;
    let metrics = server.metrics().await;
    assert_eq!(
        metric(&metrics, r#"sockyard_room_program_starts_total{room="r"}"#),
        Some(1.0)
    );
    assert_eq!(server.get("/api/r/connections").await.json(), json!(2));
}

#[tokio::test]
async fn connection_ids_count_from_1_in_each_room() {
    let server = SOCKYARD.wrap(&["--joinmsg", "join #ID", "cat"]);
    let mut a = connect(&server.url("/r1")).await;
    assert_eq!(text(&mut a).await, "join 1");
    let mut b = connect(&server.url("/r1")).await;
    assert_eq!(text(&mut a).await, "join 2");
    assert_eq!(text(&mut b).await, "join 2");
    // ScaleSocket's counter is server-wide: this would be 3.
    let mut c = connect(&server.url("/r2")).await;
    assert_eq!(text(&mut c).await, "join 1");
    let mut d = connect(&server.url("/r2")).await;
    assert_eq!(text(&mut d).await, "join 2");
}

#[tokio::test]
async fn the_programs_environment_describes_the_rooms_creator() {
    let server = SOCKYARD.wrap(&[python(), "--", "-c", ENV_PRINTER]);
    let mut a = connect(&server.url("/e%201?name=bob%20smith&x=1")).await;
    let creator = local_addr(&a).to_string();
    let env = json_text(&mut a).await;
    assert_eq!(env["ROOM"], "e 1", "percent-decoded");
    assert_eq!(env["QUERY_STRING"], "name=bob%20smith&x=1", "as sent");
    assert_eq!(env["REMOTE_ADDR"], creator.as_str());
    assert_eq!(env["PORT"], Value::Null);
    // A later client shares the process, whose environment is still the creator's.
    let mut b = connect(&server.url("/e%201?other=2")).await;
    assert_ne!(local_addr(&b).to_string(), creator);
    send(&mut b, "again").await;
    let env = json_text(&mut b).await;
    assert_eq!(env["QUERY_STRING"], "name=bob%20smith&x=1");
    assert_eq!(env["REMOTE_ADDR"], creator.as_str());
    assert_eq!(json_text(&mut a).await, env);
}

#[tokio::test]
async fn the_last_clients_leave_message_reaches_the_program_before_its_input_closes() {
    let dir = TempDir::new("leave");
    let server = SOCKYARD.wrap(&[
        "--joinmsg",
        "join #ID",
        "--leavemsg",
        "leave #ID",
        "sh",
        "--",
        "-c",
        &recorder(&dir),
    ]);
    // Five rooms at once: ScaleSocket delivered the last leave message in 2 of 20 tries.
    let rooms: Vec<String> = (0..5).map(|i| format!("r{i}")).collect();
    let mut clients = Vec::new();
    for room in &rooms {
        let log = dir.file(&format!("{room}.log"));
        let a = connect(&server.url(&format!("/{room}"))).await;
        file_when(&log, |t| t.contains("join 1")).await;
        let b = connect(&server.url(&format!("/{room}"))).await;
        clients.push((room.clone(), a, b));
    }
    for (room, a, b) in clients {
        let log = dir.file(&format!("{room}.log"));
        file_when(&log, |t| t.contains("join 2")).await;
        leave(b).await;
        file_when(&log, |t| t.contains("leave 2")).await;
        leave(a).await;
    }
    for room in &rooms {
        let log = dir.file(&format!("{room}.log"));
        let text = file_when(&log, |t| t.ends_with("EOF\n")).await;
        assert_eq!(text, "join 1\njoin 2\nleave 2\nleave 1\nEOF\n", "{room}");
    }
}

#[tokio::test]
async fn a_program_that_exits_on_end_of_input_is_never_signalled() {
    let dir = TempDir::new("eof");
    let log = dir.arg("log");
    let script =
        format!("trap 'echo TERM >> {log}' TERM; while read l; do :; done; echo EOF >> {log}");
    let server = SOCKYARD.wrap(&["--grace", "5", "sh", "--", "-c", &script]);
    let ws = connect(&server.url("/q")).await;
    leave(ws).await;
    file_when(Path::new(&log), |t| t == "EOF\n").await;
    server.wait_log(&["program stopped"]).await;
    tokio::time::sleep(SHORT).await;
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "EOF\n");
}

#[tokio::test]
async fn a_program_that_exits_closes_its_clients_with_1000() {
    let server = SOCKYARD.wrap(&["sh", "--", "-c", "echo bye; read l"]);
    let mut a = connect(&server.url("/x")).await;
    let mut b = connect(&server.url("/x")).await;
    assert_eq!(text(&mut a).await, "bye");
    send(&mut b, "go").await;
    for ws in [&mut a, &mut b] {
        let (messages, code, reason) = until_close(ws).await;
        assert!(messages.len() <= 1);
        assert_eq!((code, reason.as_str()), (1000, "The program exited"));
    }
    // The name is free again: a new client gets a new program.
    let mut c = connect(&server.url("/x")).await;
    assert_eq!(text(&mut c).await, "bye");
}

#[tokio::test]
async fn a_program_that_fails_closes_its_clients_with_1011_and_the_status() {
    let server = SOCKYARD.wrap(&["sh", "--", "-c", "echo last words; read l; exit 3"]);
    let mut ws = connect(&server.url("/x")).await;
    assert_eq!(text(&mut ws).await, "last words");
    send(&mut ws, "go").await;
    assert_eq!(
        close_frame(&mut ws).await,
        (1011, "The program exited with status 3".to_owned())
    );

    let server = SOCKYARD.wrap(&["sh", "--", "-c", "read l; kill -9 $$"]);
    let mut ws = connect(&server.url("/x")).await;
    send(&mut ws, "go").await;
    assert_eq!(
        close_frame(&mut ws).await,
        (1011, "The program was killed by signal 9".to_owned())
    );
}

#[tokio::test]
async fn a_program_that_cannot_start_is_a_502_before_the_upgrade() {
    let server = SOCKYARD.wrap(&["sockyard-test-no-such-program"]);
    for _ in 0..2 {
        assert_eq!(
            refusal(&server.url("/x")).await,
            (502, "Cannot start the program\n".to_owned())
        );
    }
    assert_eq!(server.get("/health").await.status, 200);
    server.wait_log(&["cannot start the program"]).await;
    assert_eq!(server.get("/health").await.json()["rooms"], 0);
}

#[tokio::test]
async fn sigterm_closes_clients_with_1001_and_stops_programs_gracefully() {
    let dir = TempDir::new("term");
    let mut server = SOCKYARD.wrap(&["--leavemsg", "leave #ID", "sh", "--", "-c", &recorder(&dir)]);
    let mut a = connect(&server.url("/t1")).await;
    let mut b = connect(&server.url("/t1")).await;
    let mut c = connect(&server.url("/t2")).await;
    send(&mut a, "hello").await;
    file_when(&dir.file("t1.log"), |t| t == "hello\n").await;
    server.signal("TERM");
    for ws in [&mut a, &mut b, &mut c] {
        assert_eq!(
            close_frame(ws).await,
            (1001, "Server is shutting down".to_owned())
        );
    }
    let status = server.wait_exit(WAIT).await.expect("the server exits");
    assert!(status.success(), "{status:?}");
    // The programs heard every client leave, then the end of their input.
    let t1 = std::fs::read_to_string(dir.file("t1.log")).unwrap();
    let mut lines: Vec<&str> = t1.lines().collect();
    assert_eq!(lines.first(), Some(&"hello"));
    assert_eq!(lines.last(), Some(&"EOF"), "{t1}");
    lines.sort_unstable();
    assert_eq!(lines, ["EOF", "hello", "leave 1", "leave 2"]);
    assert_eq!(
        std::fs::read_to_string(dir.file("t2.log")).unwrap(),
        "leave 1\nEOF\n"
    );
}

#[tokio::test]
async fn join_messages_reach_the_program_in_id_order() {
    let server = SOCKYARD.wrap(&["--joinmsg", "join #ID", "cat"]);
    // Many clients at once: their joins are queued as they are admitted, in id order.
    let url = server.url("/crowd");
    let mut clients = futures_util::future::join_all((0..20).map(|_| connect(&url))).await;
    let first = clients.remove(0);
    let mut everyone = vec![first];
    everyone.extend(clients);
    // The first client hears every join, each exactly once and in order.
    let mut seen = Vec::new();
    while seen.len() < 20 {
        seen.push(text(&mut everyone[0]).await);
    }
    let expected: Vec<String> = (1..=20).map(|id| format!("join {id}")).collect();
    assert_eq!(seen, expected);
}
