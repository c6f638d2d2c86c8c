//! The `sockyard` binary as a user runs it: `config`, `serve` (with bad config, on a free port,
//! with TLS, and stopped by SIGTERM) and `call`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use sockyard_test_support::binary::Sockyard;
use sockyard_test_support::database::SqliteFile;
use sockyard_test_support::http::dropped_within;
use sockyard_test_support::keys::config_with_relative_keys;
use sockyard_test_support::process::Process;
use sockyard_test_support::socketcluster::{handshake, handshaken};
use sockyard_test_support::tempdir::TempDir;
use sockyard_test_support::tls::{https_get, self_signed, wss_connect};
use sockyard_test_support::ws::{expect_close, send, text, try_connect};

const SOCKYARD: Sockyard = Sockyard::at(env!("CARGO_BIN_EXE_sockyard"));

/// A `sockyard serve` child process on a database of its own, both removed when dropped.
struct Served {
    process: Process,
    _db: SqliteFile,
}

/// Starts `sockyard serve` on a free port and waits for its "listening" log line.
fn serve(extra: &[&str]) -> Served {
    serve_with_env(extra, &[])
}

/// [`serve`] with extra environment variables.
fn serve_with_env(extra: &[&str], env: &[(&str, &str)]) -> Served {
    let db = SqliteFile::new("cli");
    let process = SOCKYARD
        .serve_launch(extra)
        .envs(env.iter().copied())
        .env("SOCKYARD_STORAGE", db.url())
        .start();
    Served { process, _db: db }
}

/// A `sockyard serve` over TLS with a throwaway certificate, and its directory (removed on
/// drop).
struct TlsServed {
    served: Served,
    cert: PathBuf,
    _dir: TempDir,
}

/// Starts `sockyard serve` with a new self-signed certificate given in the environment and, as
/// `config`, a configuration file; `None` (test skipped) without openssl outside CI.
fn serve_tls(name: &str, config: Option<&str>) -> Option<TlsServed> {
    let dir = TempDir::new(name);
    let (cert, key) = self_signed(dir.path())?;
    let file = config.map(|text| dir.write("sockyard.toml", text.as_bytes()));
    let mut extra = Vec::new();
    if let Some(file) = &file {
        extra = vec!["--config", file.to_str().unwrap()];
    }
    let served = serve_with_env(
        &extra,
        &[
            ("SOCKYARD_TLS_CERT", cert.to_str().unwrap()),
            ("SOCKYARD_TLS_KEY", key.to_str().unwrap()),
        ],
    );
    Some(TlsServed {
        served,
        cert,
        _dir: dir,
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

fn run(args: &[&str]) -> std::process::Output {
    SOCKYARD
        .command()
        .args(args)
        .output()
        .expect("run sockyard")
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
    let dir = TempDir::new("cli-config");
    let file = dir.file("bad.toml");
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
        dir.file("absent.toml").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("absent.toml"));
}

#[test]
fn call_prints_replies_and_errors() {
    let served = serve(&[]);
    let url = served.process.url("/socketcluster/");
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
    let minbin = served.process.url("/socketcluster-minbin/");
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
    let protobuf = served.process.url("/socketcluster-protobuf/");
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

    let out = run(&["call", &served.process.url("/nowhere"), "echo", "1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("404"));
}

#[test]
fn sigterm_closes_clients_with_1001_and_exits_zero() {
    let mut served = serve(&[]);
    let url = served.process.url("/socketcluster/");
    block_on(async {
        let mut ws = handshaken(&url).await;
        served.process.signal("TERM");
        assert_eq!(expect_close(&mut ws).await.0, 1001);
        let status = served
            .process
            .wait_exit(Duration::from_secs(10))
            .await
            .expect("did not exit");
        assert!(status.success(), "{status:?}");
    });
}

#[test]
fn token_listen_and_publish_work_together() {
    let served = serve(&[]);
    let url = served.process.url("/socketcluster/");
    // A token signed with the configured key opens private channels.
    let out = run(&["token", "--claims", r#"{"username":"ann"}"#]);
    assert!(out.status.success(), "{out:?}");
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(token.split('.').count(), 3);

    let mut listener = SOCKYARD
        .command()
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

/// What a server with the embedded configuration makes of `token`.
fn verified(token: &[u8]) -> Result<sockyard::auth::Claims, sockyard::auth::TokenError> {
    let auth = sockyard::auth::Authenticator::hs256(
        sockyard::auth::DEMO_AUTH_KEY.as_bytes(),
        Duration::from_secs(60),
    );
    auth.verify(String::from_utf8_lossy(token).trim())
}

#[test]
fn token_refuses_an_expired_exp_unless_allowed_and_warns() {
    let out = run(&["token", "--claims", r#"{"exp":1}"#]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("in the past") && stderr.contains("--allow-expired"),
        "{stderr}"
    );
    let out = run(&["token", "--claims", r#"{"exp":1}"#, "--allow-expired"]);
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning: the token is already expired"),
        "{stderr}"
    );
    assert_eq!(
        verified(&out.stdout),
        Err(sockyard::auth::TokenError::Expired { expiry: 1 })
    );
    let out = run(&["token", "--claims", r#"{"exp":"tomorrow"}"#]);
    assert!(!out.status.success(), "{out:?}");
    // A future exp, or none, signs without a word, as before.
    let out = run(&["token", "--claims", r#"{"exp":99999999999}"#]);
    assert!(out.status.success() && out.stderr.is_empty(), "{out:?}");
    let out = run(&["token", "--expiry", "60"]);
    assert!(out.status.success() && out.stderr.is_empty(), "{out:?}");
    let claims = verified(&out.stdout).unwrap();
    assert_eq!(
        claims["exp"].as_u64(),
        claims["iat"].as_u64().map(|iat| iat + 60)
    );
}

#[test]
fn key_files_are_found_beside_the_config_file() {
    let (dir, config) = config_with_relative_keys("keys", "ES256", "max_token_age_s = 60\n");
    // Run from elsewhere: the paths are the config file's, not the working directory's.
    let token = |config: &std::path::Path| {
        SOCKYARD
            .command()
            .current_dir(std::env::temp_dir())
            .args(["token", "--config", config.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let out = token(&config);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).split('.').count(), 3);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("auth.max_token_age_s = 60"),
        "the default expiry outlives the maximum age: {out:?}"
    );
    std::fs::remove_file(dir.file("keys/ec-private.pem")).unwrap();
    let out = token(&config);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "cannot read auth.private_key_file file {}",
            dir.file("keys/ec-private.pem").display()
        )),
        "{stderr}"
    );
    assert_eq!(stderr.matches("os error 2").count(), 1, "{stderr}");
}

#[test]
fn out_of_file_descriptors_serve_warns_once_a_second_and_recovers() {
    let prlimit = std::process::Command::new("prlimit")
        .arg("--version")
        .output()
        .map_err(|err| format!("prlimit: {err}"));
    if sockyard_test_support::skip::ok_or_skip("the file descriptor test", prlimit).is_none() {
        return;
    }
    let db = SqliteFile::new("fds");
    // 40 descriptors: a dozen or so for the server itself, the rest for clients.
    let process = sockyard_test_support::process::Launch::new("prlimit")
        .args(["--nofile=40:40"])
        .args([SOCKYARD.path().as_os_str()])
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("SOCKYARD_STORAGE", db.url())
        .env_remove("SOCKYARD_LISTEN")
        .env_remove("SOCKYARD_LOG_LEVEL")
        .start();
    let held: Vec<std::net::TcpStream> = (0..80)
        .map(|_| std::net::TcpStream::connect(process.addr).unwrap())
        .collect();
    let storm = Duration::from_millis(2500);
    std::thread::sleep(storm);
    let log = process.log();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("accept failed"))
        .collect();
    // Unthrottled, the loop (backing off 50 ms) logs 20 a second: 50 here.
    assert!(
        (2..=4).contains(&warnings.len()),
        "{} warnings in {storm:?}:\n{log}",
        warnings.len()
    );
    assert!(
        warnings[1..]
            .iter()
            .all(|l| l.contains("suppressed=") && !l.contains("suppressed=0")),
        "the later warnings count what they held back:\n{log}"
    );
    drop(held);
    block_on(async {
        let deadline = Instant::now() + Duration::from_secs(10);
        while process.get("/health").await.status != 200 {
            assert!(
                Instant::now() < deadline,
                "never recovered:\n{}",
                process.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        process
            .wait_log(&["accepting connections again", "failures="])
            .await;
    });
}

#[test]
fn serve_with_tls_answers_wss_and_https_only() {
    // Given in the environment, as a deployment would.
    let Some(tls) = serve_tls("tls", None) else {
        return;
    };
    let (addr, cert) = (tls.served.process.addr, tls.cert.clone());
    block_on(async {
        // HTTPS.
        let reply = https_get(addr, &cert, "/health").await;
        assert_eq!(reply.status, 200, "{reply:?}");
        assert!(reply.body.contains(r#""status":"ok""#), "{reply:?}");
        // WSS: a SocketCluster handshake and a call.
        let mut ws = wss_connect(addr, &cert, "/socketcluster/").await;
        handshake(&mut ws).await;
        send(&mut ws, r#"{"event":"echo","data":"over tls","cid":2}"#).await;
        assert_eq!(text(&mut ws).await, r#"{"rid":2,"data":"over tls"}"#);
        // Plain ws:// on the TLS port gets no WebSocket.
        assert!(try_connect(&format!("ws://{addr}/socketcluster/"))
            .await
            .is_err());
    });
}

#[test]
fn serve_refuses_a_tls_certificate_without_its_key() {
    let output = SOCKYARD
        .command()
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
    let output = SOCKYARD
        .command()
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
    let (addr, cert) = (tls.served.process.addr, tls.cert.clone());
    block_on(async {
        let silent = tokio::net::TcpStream::connect(addr).await.unwrap();
        let waited = dropped_within(silent, Duration::from_secs(5)).await;
        assert!(
            waited >= Duration::from_millis(250),
            "dropped after {waited:?}"
        );
        // Others still get in.
        let mut ws = wss_connect(addr, &cert, "/socketcluster/").await;
        handshake(&mut ws).await;
    });
}
