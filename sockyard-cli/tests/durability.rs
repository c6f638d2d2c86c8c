//! A `creature/create` that was acknowledged survives the server being killed: the real binary
//! is SIGKILLed while clients stream creates, restarted on the same storage (SQLite, PostgreSQL),
//! and every acknowledged record must be read back unchanged.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sockyard::client::{Client, ClientError, ClientOptions};
use sockyard_test_support::binary::Sockyard;
use sockyard_test_support::database::{postgres_admin, PostgresSchema, SqliteFile, POSTGRES_URL};
use sockyard_test_support::process::Process;
use sockyard_test_support::skip::ok_or_skip;
use sqlx::{AssertSqlSafe, Row as _};

const SOCKYARD: Sockyard = Sockyard::at(env!("CARGO_BIN_EXE_sockyard"));

/// Connections that stream creates, and concurrent creates on each.
const CLIENTS: usize = 4;
const STREAMS_PER_CLIENT: usize = 4;
/// Acknowledged creates before the kill.
const KILL_AFTER: usize = 300;
/// How long any one phase (reaching `KILL_AFTER`, draining, reading back) may take: a bound
/// against hangs, generous enough for a debug build on a loaded machine.
const PHASE_LIMIT: Duration = Duration::from_secs(30);
/// How much of a server's log the failure messages show.
const LOG_TAIL: usize = 200;

/// Starts the demo application (`sockyard serve`) on a free port of 127.0.0.1 with records in
/// `storage`, and waits for its "listening" log line.
fn start(storage: &str) -> Process {
    let server = SOCKYARD
        .serve_launch(&["--log-level", "info"])
        .env("SOCKYARD_STORAGE", storage)
        .env("NO_COLOR", "1")
        .start();
    assert_eq!(
        server.addr.ip(),
        Ipv4Addr::LOCALHOST,
        "listening on {}",
        server.addr
    );
    server
}

/// What the streaming clients saw.
#[derive(Default)]
struct Shared {
    /// Set just before the SIGKILL: failures after it are expected.
    killed: AtomicBool,
    /// Creates sent whose reply has not arrived yet.
    in_flight: AtomicUsize,
    acknowledged: AtomicUsize,
    /// The records the server acknowledged, as it returned them.
    records: Mutex<Vec<Value>>,
    /// Names of creates sent but never acknowledged (cut off by the kill).
    unacknowledged: Mutex<HashSet<String>>,
    /// Anything wrong seen before the kill, or a malformed acknowledgement.
    problems: Mutex<Vec<String>>,
}

/// Sends creates one after another on `client` until a call fails (after the kill).
async fn stream_creates(client: Client, tag: String, shared: Arc<Shared>) {
    for seq in 0u64.. {
        let name = format!("{tag}-{seq}");
        shared.in_flight.fetch_add(1, Ordering::SeqCst);
        let result = client
            .invoke("creature/create", json!({ "name": name }))
            .await;
        shared.in_flight.fetch_sub(1, Ordering::SeqCst);
        match result {
            Ok(Some(record)) => {
                let well_formed = record["name"] == name.as_str()
                    && record["version"] == 1
                    && record["id"].as_i64().is_some_and(|id| id > 0);
                if !well_formed {
                    shared
                        .problems
                        .lock()
                        .unwrap()
                        .push(format!("create of {name} acknowledged with {record}"));
                }
                shared.records.lock().unwrap().push(record);
                shared.acknowledged.fetch_add(1, Ordering::SeqCst);
            }
            Ok(None) => {
                shared
                    .problems
                    .lock()
                    .unwrap()
                    .push(format!("create of {name} acknowledged with no data"));
                return;
            }
            Err(err) => {
                let killed = shared.killed.load(Ordering::SeqCst);
                shared.unacknowledged.lock().unwrap().insert(name.clone());
                if !killed {
                    shared
                        .problems
                        .lock()
                        .unwrap()
                        .push(format!("create of {name} failed before the kill: {err}"));
                }
                return;
            }
        }
    }
}

/// Every record in the store, read page by page with `$after`/`next`, by id.
async fn list_all(client: &Client) -> HashMap<i64, Value> {
    let mut found = HashMap::new();
    let mut query = json!({ "$limit": 100 });
    let mut total = None;
    loop {
        let page = client
            .invoke("creature/list", &query)
            .await
            .expect("creature/list")
            .expect("a page");
        let records = page["data"].as_array().expect("page data");
        let page_total = page["total"].as_u64().expect("page total");
        assert_eq!(*total.get_or_insert(page_total), page_total, "{page}");
        for record in records {
            let id = record["id"].as_i64().expect("record id");
            let previous = found.insert(id, record.clone());
            assert!(previous.is_none(), "record {id} listed twice");
        }
        match page.get("next").and_then(Value::as_str) {
            Some(next) => query = json!({ "$limit": 100, "$after": next }),
            None => break,
        }
    }
    assert_eq!(Some(found.len() as u64), total, "pages miss records");
    found
}

/// What one run found, for the report and for checks specific to a store.
#[derive(Debug)]
struct Outcome {
    acknowledged: usize,
    stored: usize,
}

/// Streams creates into a server on `storage`, SIGKILLs it after `KILL_AFTER` acknowledgements,
/// restarts it on the same storage and checks that every acknowledged record is there.
async fn kill_and_verify(storage: &str, label: &str) -> Outcome {
    let started = Instant::now();
    let mut server = start(storage);
    let url = server.url("/socketcluster/");
    let options = ClientOptions::default()
        .auto_reconnect(false)
        .ack_timeout(Duration::from_secs(5));
    let shared = Arc::new(Shared::default());
    let mut tasks = Vec::new();
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (client, _events) = Client::connect(&url, options.clone())
            .await
            .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
        for s in 0..STREAMS_PER_CLIENT {
            let tag = format!("{label}-{}-c{c}s{s}", std::process::id());
            tasks.push(tokio::spawn(stream_creates(
                client.clone(),
                tag,
                shared.clone(),
            )));
        }
        clients.push(client);
    }

    // Kill the server mid-stream, once enough creates were acknowledged.
    let deadline = Instant::now() + PHASE_LIMIT;
    while shared.acknowledged.load(Ordering::SeqCst) < KILL_AFTER {
        assert!(
            Instant::now() < deadline,
            "only {} creates acknowledged in {PHASE_LIMIT:?}; problems: {:?}; server log:\n{}",
            shared.acknowledged.load(Ordering::SeqCst),
            shared.problems.lock().unwrap(),
            server.log_tail(LOG_TAIL)
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    shared.killed.store(true, Ordering::SeqCst);
    let in_flight_at_kill = shared.in_flight.load(Ordering::SeqCst);
    let acknowledged_at_kill = shared.acknowledged.load(Ordering::SeqCst);
    let status = server.kill();
    assert!(!status.success(), "killed server exited with {status:?}");
    let first_log = server.log_tail(LOG_TAIL);
    drop(server);

    let drained = tokio::time::timeout(PHASE_LIMIT, futures_util::future::join_all(tasks))
        .await
        .expect("a client kept going after the kill");
    for task in drained {
        task.expect("client task panicked");
    }
    for client in &clients {
        assert!(
            matches!(
                client.invoke("echo", 1).await,
                Err(ClientError::Closed | ClientError::BadConnection)
            ),
            "a client still answers after the kill"
        );
    }
    let problems = shared.problems.lock().unwrap().clone();
    assert!(
        problems.is_empty(),
        "{problems:#?}\nserver log:\n{first_log}"
    );
    assert!(
        in_flight_at_kill > 0,
        "no create was in flight when the server was killed"
    );
    let records = std::mem::take(&mut *shared.records.lock().unwrap());
    let unacknowledged = std::mem::take(&mut *shared.unacknowledged.lock().unwrap());
    assert_eq!(records.len(), shared.acknowledged.load(Ordering::SeqCst));
    assert!(records.len() >= KILL_AFTER);
    let mut acknowledged: HashMap<i64, Value> = HashMap::new();
    for record in &records {
        let id = record["id"].as_i64().unwrap();
        if let Some(other) = acknowledged.insert(id, record.clone()) {
            panic!("id {id} acknowledged twice: {other} and {record}");
        }
    }

    // Restart on the same storage and read everything back.
    let server = start(storage);
    let (client, _events) = Client::connect(&server.url("/socketcluster/"), options)
        .await
        .expect("connect after restart");
    let stored = tokio::time::timeout(PHASE_LIMIT, list_all(&client))
        .await
        .expect("listing took too long");
    let mut lost = Vec::new();
    let mut changed = Vec::new();
    let mut ids: Vec<i64> = acknowledged.keys().copied().collect();
    ids.sort_unstable();
    for id in &ids {
        let record = &acknowledged[id];
        match stored.get(id) {
            None => lost.push(record.to_string()),
            Some(found) if found != record => changed.push(format!("{record} -> {found}")),
            Some(_) => {}
        }
    }
    assert!(
        lost.is_empty() && changed.is_empty(),
        "{} of {} acknowledged creates are missing after the restart, {} changed.\n\
         missing (first 20): {:#?}\nchanged (first 20, acknowledged -> stored): {:#?}\n\
         log before the kill:\n{first_log}\nlog after the restart:\n{}",
        lost.len(),
        acknowledged.len(),
        changed.len(),
        &lost[..lost.len().min(20)],
        &changed[..changed.len().min(20)],
        server.log_tail(LOG_TAIL)
    );
    // The only other records may be creates cut off by the kill after their commit.
    for (id, record) in &stored {
        if !acknowledged.contains_key(id) {
            let name = record["name"].as_str().unwrap_or_default();
            assert!(
                unacknowledged.contains(name),
                "record {record} was never created by this test"
            );
        }
    }
    // And each record read on its own, as a client would after reconnecting.
    tokio::time::timeout(PHASE_LIMIT, async {
        for (id, record) in &acknowledged {
            let got = client
                .invoke("creature/get", json!({ "id": id }))
                .await
                .unwrap_or_else(|e| panic!("creature/get {id}: {e}"));
            assert_eq!(got.as_ref(), Some(record), "creature/get {id}");
        }
    })
    .await
    .expect("reading records one by one took too long");
    client.close(1000, "done").await;
    drop(server);

    println!(
        "{label}: {acknowledged_at_kill} creates acknowledged when SIGKILL was sent \
         ({in_flight_at_kill} in flight), {} acknowledged in all; after the restart all {} \
         are present and unchanged, {} stored in all ({} committed but cut off before their \
         reply); {:.1?}",
        acknowledged.len(),
        acknowledged.len(),
        stored.len(),
        stored.len() - acknowledged.len(),
        started.elapsed()
    );
    Outcome {
        acknowledged: acknowledged.len(),
        stored: stored.len(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_keeps_every_acknowledged_create_across_sigkill() {
    let file = SqliteFile::new("durability");
    let path = file.path().to_owned();
    let outcome = kill_and_verify(&file.url(), "sqlite").await;
    assert!(outcome.stored >= outcome.acknowledged, "{outcome:?}");
    drop(file);
    for suffix in ["", "-wal", "-shm"] {
        let mut path = path.clone().into_os_string();
        path.push(suffix);
        assert!(
            !std::path::Path::new(&path).exists(),
            "{path:?} left behind"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_keeps_every_acknowledged_create_across_sigkill() {
    let schema = PostgresSchema::create("durability")
        .await
        .map_err(|err| format!("{POSTGRES_URL} is unreachable ({err})"));
    // Dropped however the test ends, with the records in it.
    let Some(schema) = ok_or_skip("the PostgreSQL durability test", schema) else {
        return;
    };
    let outcome = kill_and_verify(&schema.url(), "postgres").await;
    // The records are in the test schema, not wherever the default search path points.
    let admin = postgres_admin()
        .await
        .expect("connect to count the records");
    let in_schema: i64 = sqlx::query(AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM {}.creature",
        schema.name()
    )))
    .fetch_one(&admin)
    .await
    .expect("count the records in the test schema")
    .get(0);
    assert_eq!(in_schema as usize, outcome.stored, "{outcome:?}");
    admin.close().await;
}
