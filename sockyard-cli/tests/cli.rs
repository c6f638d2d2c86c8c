//! The `sockyard` binary as a user runs it: `config`, `serve` (with bad config, on a free port,
//! with TLS, and stopped by SIGTERM) and `call`.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use tokio_tungstenite::tungstenite::Message;

mod tls_support;

const BIN: &str = env!("CARGO_BIN_EXE_sockyard");

/// A `sockyard serve` child process, killed when dropped.
struct Served {
    child: Child,
    addr: String,
    db: std::path::PathBuf,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for suffix in ["", "-wal", "-shm"] {
            let mut path = self.db.clone().into_os_string();
            path.push(suffix);
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A database file name no other test uses.
fn scratch_db() -> std::path::PathBuf {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::env::temp_dir().join(format!("sockyard-cli-{}-{n}.db", std::process::id()))
}

/// Starts `sockyard serve` on a free port and waits for its "listening" log line.
fn serve(extra: &[&str]) -> Served {
    serve_with_env(extra, &[])
}

/// [`serve`] with extra environment variables.
fn serve_with_env(extra: &[&str], env: &[(&str, &str)]) -> Served {
    let db = scratch_db();
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(extra)
        .envs(env.iter().copied())
        .env("SOCKYARD_STORAGE", format!("sqlite://{}", db.display()))
        .env_remove("SOCKYARD_LISTEN")
        .env_remove("SOCKYARD_LOG_LEVEL")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn sockyard");
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("sockyard exited before listening")
            .unwrap();
        if let Some(rest) = line.split("local=").nth(1) {
            if line.contains("listening") {
                break rest.split_whitespace().next().unwrap().to_owned();
            }
        }
    };
    // Keep draining the log so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Served { child, addr, db }
}

/// A `sockyard serve` over TLS with a throwaway certificate, and its directory (removed on
/// drop).
struct TlsServed {
    _served: Served,
    addr: std::net::SocketAddr,
    cert: std::path::PathBuf,
    dir: std::path::PathBuf,
}

impl Drop for TlsServed {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts `sockyard serve` with a new self-signed certificate given in the environment and, as
/// `config`, a configuration file; `None` (test skipped) without openssl outside CI.
fn serve_tls(name: &str, config: Option<&str>) -> Option<TlsServed> {
    let dir = std::env::temp_dir().join(format!("sockyard-cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = tls_support::self_signed(&dir)?;
    let mut extra = Vec::new();
    if let Some(text) = config {
        let file = dir.join("sockyard.toml");
        std::fs::write(&file, text).unwrap();
        extra = vec!["--config".to_owned(), file.to_str().unwrap().to_owned()];
    }
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let served = serve_with_env(
        &extra,
        &[
            ("SOCKYARD_TLS_CERT", cert.to_str().unwrap()),
            ("SOCKYARD_TLS_KEY", key.to_str().unwrap()),
        ],
    );
    Some(TlsServed {
        addr: served.addr.parse().unwrap(),
        _served: served,
        cert,
        dir,
    })
}

/// Runs `future` to completion on a new single-threaded runtime.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// Sends the SocketCluster handshake and checks its reply.
async fn handshake<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    ws.send(Message::text(
        r##"{"event":"#handshake","data":{},"cid":1}"##,
    ))
    .await
    .unwrap();
    let reply = ws.next().await.unwrap().unwrap().into_text().unwrap();
    assert!(reply.contains(r#""rid":1"#), "{reply}");
}

fn run(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).output().expect("run sockyard")
}

#[test]
fn config_prints_a_valid_default() {
    let out = run(&["config"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let parsed = sockyard::Config::from_toml_str(&text, "stdout").unwrap();
    assert_eq!(parsed, sockyard::Config::default());
}

#[test]
fn serve_rejects_bad_config_naming_the_key() {
    let dir = std::env::temp_dir().join(format!("sockyard-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(
        &file,
        "[limits]\nmax_messages_per_second = 10\nmystery = true\n",
    )
    .unwrap();
    let out = run(&["serve", "--config", file.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("mystery"), "{stderr}");
    assert!(stderr.contains("bad.toml"), "{stderr}");

    std::fs::write(&file, "[server]\nshutdown_timeout_ms = \"soon\"\n").unwrap();
    let out = run(&["serve", "--config", file.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("server.shutdown_timeout_ms"));

    let out = run(&[
        "serve",
        "--config",
        dir.join("absent.toml").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("absent.toml"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn call_prints_replies_and_errors() {
    let served = serve(&[]);
    let url = format!("ws://{}/socketcluster/", served.addr);
    let out = run(&["call", &url, "echo", r#"{"hello":["world",1]}"#]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        r#"{"hello":["world",1]}"#
    );

    let out = run(&["call", &url, "nope", "{}"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("NotFound: Unknown procedure 'nope'"));
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(body["name"], "NotFound");

    // The binary codecs, on the demo's endpoints for them.
    let minbin = format!("ws://{}/socketcluster-minbin/", served.addr);
    let out = run(&[
        "call",
        "--codec",
        "msgpack",
        &minbin,
        "echo",
        r#"{"m":[1]}"#,
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        r#"{"m":[1]}"#,
        "{out:?}"
    );
    let protobuf = format!("ws://{}/socketcluster-protobuf/", served.addr);
    let out = run(&[
        "call",
        "--codec",
        "protobuf",
        &protobuf,
        "echo",
        r#"{"p":2}"#,
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        r#"{"p":2}"#,
        "{out:?}"
    );

    let out = run(&["call", &url, "echo", "{not json"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not valid JSON"));

    let out = run(&[
        "call",
        &format!("ws://{}/nowhere", served.addr),
        "echo",
        "1",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("404"));
}

#[test]
fn sigterm_closes_clients_with_1001_and_exits_zero() {
    let mut served = serve(&[]);
    let url = format!("ws://{}/socketcluster/", served.addr);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
        ws.send(Message::text(r##"{"event":"#handshake","cid":1}"##))
            .await
            .unwrap();
        ws.next().await.unwrap().unwrap();
        let status = Command::new("kill")
            .args(["-TERM", &served.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let close = loop {
            match tokio::time::timeout(Duration::from_secs(5), ws.next())
                .await
                .unwrap()
            {
                Some(Ok(Message::Close(frame))) => break frame.unwrap(),
                Some(Ok(_)) => continue,
                other => panic!("no close frame: {other:?}"),
            }
        };
        assert_eq!(u16::from(close.code), 1001);
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = served.child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
}

#[test]
fn token_listen_and_publish_work_together() {
    let served = serve(&[]);
    let url = format!("ws://{}/socketcluster/", served.addr);
    // A token signed with the configured key opens private channels.
    let out = run(&["token", "--claims", r#"{"username":"ann"}"#]);
    assert!(out.status.success(), "{out:?}");
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(token.split('.').count(), 3);

    let mut listener = Command::new(BIN)
        .args([
            "listen",
            &url,
            "news",
            "private/ann",
            "--count",
            "2",
            "--token",
            &token,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Publish until the listener has subscribed and received both.
    let started = Instant::now();
    let mut published = false;
    while !published {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "listener never got ready"
        );
        std::thread::sleep(Duration::from_millis(200));
        let a = run(&["publish", &url, "news", r#"{"n":1}"#]);
        assert!(a.status.success(), "{a:?}");
        let b = run(&["publish", &url, "private/ann", "2", "--token", &token]);
        assert!(b.status.success(), "{b:?}");
        published = listener.try_wait().unwrap().is_some();
    }
    let output = listener.wait_with_output().unwrap();
    assert!(output.status.success(), "{output:?}");
    let lines: Vec<serde_json::Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert!(
        lines
            .iter()
            .all(|l| l["channel"] == "news" || l["channel"] == "private/ann"),
        "{lines:?}"
    );

    // Without a token the private channel is refused with the documented error.
    let out = run(&["publish", &url, "private/ann", "1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("AuthError"));
    let out = run(&["token", "--claims", "[1]"]);
    assert!(!out.status.success());
}

#[test]
fn serve_with_tls_answers_wss_and_https_only() {
    // Given in the environment, as a deployment would.
    let Some(tls) = serve_tls("tls", None) else {
        return;
    };
    let (addr, cert) = (tls.addr, tls.cert.clone());
    block_on(async {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        // HTTPS.
        let mut tls = tls_support::tls_connect(addr, &cert)
            .await
            .expect("TLS handshake");
        tls.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut reply = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut reply))
            .await
            .unwrap()
            .unwrap();
        let reply = String::from_utf8_lossy(&reply);
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        assert!(reply.contains(r#""status":"ok""#), "{reply}");
        // WSS: a SocketCluster handshake and a call.
        let mut ws = tls_support::wss_connect(addr, &cert, "/socketcluster/").await;
        handshake(&mut ws).await;
        ws.send(Message::text(
            r#"{"event":"echo","data":"over tls","cid":2}"#,
        ))
        .await
        .unwrap();
        let echo = ws.next().await.unwrap().unwrap().into_text().unwrap();
        assert_eq!(echo.as_str(), r#"{"rid":2,"data":"over tls"}"#);
        // Plain ws:// on the TLS port gets no WebSocket.
        let plain = tokio::time::timeout(
            Duration::from_secs(5),
            tokio_tungstenite::connect_async(format!("ws://{addr}/socketcluster/")),
        )
        .await
        .unwrap();
        assert!(plain.is_err());
    });
}

#[test]
fn serve_refuses_a_tls_certificate_without_its_key() {
    let output = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            "missing.pem",
        ])
        .env_remove("SOCKYARD_TLS_KEY")
        .output()
        .expect("run sockyard");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("server.tls_cert"), "{stderr}");
}

#[test]
fn serve_refuses_a_certificate_it_cannot_read() {
    let output = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args([
            "--tls-cert",
            "missing-cert.pem",
            "--tls-key",
            "missing-key.pem",
        ])
        .output()
        .expect("run sockyard");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot read the certificate chain in missing-cert.pem"),
        "{stderr}"
    );
}

#[test]
fn serve_drops_a_connection_that_never_starts_its_tls_handshake() {
    let Some(tls) = serve_tls("tls-wait", Some("[limits]\nhttp_header_timeout_ms = 300\n")) else {
        return;
    };
    let (addr, cert) = (tls.addr, tls.cert.clone());
    block_on(async {
        let silent = tokio::net::TcpStream::connect(addr).await.unwrap();
        let waited = tls_support::dropped_within(silent, Duration::from_secs(5)).await;
        assert!(
            waited >= Duration::from_millis(250),
            "dropped after {waited:?}"
        );
        // Others still get in.
        let mut ws = tls_support::wss_connect(addr, &cert, "/socketcluster/").await;
        handshake(&mut ws).await;
    });
}
