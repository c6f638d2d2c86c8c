//! Drives the official SocketCluster JavaScript clients (`socketcluster-client` 20 and 14, from
//! `compat/`) against Sockyard, and the same suite against the official `socketcluster-server`
//! 20, which proves that every scenario checks real SocketCluster behaviour. The scenarios cover
//! RPC, pings, reconnects, pub/sub and auth; both servers sign and verify tokens with
//! [`AUTH_KEY`], which the suite also uses to sign its own test tokens.
//!
//! A third test runs `compat/ctproto/suite.js`: a client that reproduces the original CTProto
//! client, and raw frames, against Sockyard's `/ctproto` endpoint (with a short authorize
//! deadline), including pub/sub shared with `socketcluster-client` 20 on `/socketcluster/`.
//!
//! Two more tests run `compat/codecs/suite.js`: the v20 client with the binary codecs
//! (`sc-codec-min-bin` 3.0.0, and `sc-codec-protobuf` 0.3.0 with socketcluster-api's `#api`)
//! against Sockyard's `/socketcluster-minbin/` and `/socketcluster-protobuf/` endpoints, and
//! against reference servers started with the same codecs (`--codec minbin|protobuf`).
//!
//! Needs Node.js 20 and npm. The npm packages pinned in `compat/package-lock.json` are installed
//! with `npm ci` when `compat/node_modules` lacks them. Without Node the tests are skipped with a
//! message, unless `CI=true`, where that is a failure.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use sockyard::codec::protobuf::EventTypes;
use sockyard::codec::Codec;
use sockyard::config::{Authorizer, Dialect};
use sockyard::Config;
use sockyard_test_support::database::SqliteFile;
use sockyard_test_support::node::{NodeError, NodeProject};
use sockyard_test_support::router::test_router;
use sockyard_test_support::server::{start_built, start_with};
use sockyard_test_support::skip::ok_or_skip;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, BufReader};
use tokio::process::{Child, ChildStdin};
use tokio::task::JoinHandle;

/// Short ping settings for both servers, so the ping scenarios see several pings in ~2.5 s and a
/// client that stopped answering would be closed within that window.
const PING_INTERVAL_MS: u64 = 300;
const PING_TIMEOUT_MS: u64 = 1500;

/// The HS256 key of both servers, passed to the suite (`--auth-key`) for the tokens it signs.
const AUTH_KEY: &str = "compat-test-key";

/// Upper bound for one run of the suite (it normally takes about 6 s).
const SUITE_TIMEOUT: Duration = Duration::from_secs(90);

/// Packages `npm ci` must have installed for the suite to run.
const REQUIRED_PACKAGES: [&str; 7] = [
    "sc20",
    "sc14",
    "socketcluster-server",
    "ws",
    "jsonwebtoken",
    "sc-codec-min-bin",
    "sc-codec-protobuf",
];

fn compat_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .join("compat")
}

/// The npm project in `compat/`, its scripts run without inherited suite settings that would
/// redirect them (`SC_FILTER`, `SC_JOBS`, `CT_FILTER`, `CT_JOBS`, `CODEC_FILTER` and
/// `CODEC_JOBS` pass through, for debugging).
fn project() -> NodeProject {
    NodeProject::new(compat_dir(), &REQUIRED_PACKAGES).without_env(&[
        "SC_URL",
        "SC_V1_URL",
        "SC_SERVER",
        "CT_URL",
        "CT_SC_URL",
        "CT_AUTHORIZE_TIMEOUT_MS",
        "CODEC",
        "CODEC_SERVER",
        "CODEC_MINBIN_URL",
        "CODEC_PROTOBUF_URL",
        "CODEC_AUTH_KEY",
    ])
}

/// Checks for Node and installs the npm packages once per process. Returns false when the
/// test should be skipped.
fn ready() -> bool {
    static PREPARED: OnceLock<Result<(), NodeError>> = OnceLock::new();
    let prepared = PREPARED.get_or_init(|| project().prepare());
    ok_or_skip("the compatibility test", prepared.as_ref()).is_some()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Reads a child's pipe to the end in the background.
fn drain(pipe: impl tokio::io::AsyncRead + Unpin + Send + 'static) -> JoinHandle<String> {
    tokio::spawn(async move {
        let mut text = String::new();
        let _ = BufReader::new(pipe).read_to_string(&mut text).await;
        text
    })
}

/// Runs `compat/suite.js` with `args` and fails the test unless it exits 0. Its report is
/// printed either way (visible with `--nocapture`, and on failure).
async fn run_suite(label: &str, args: &[&str]) {
    run_script(label, "suite.js", args).await;
}

/// Runs `node <script> <args>` in `compat/` like [`run_suite`].
async fn run_script(label: &str, script: &str, args: &[&str]) {
    project()
        .run_script(label, script, args, SUITE_TIMEOUT)
        .await;
}

/// The official server, `compat/reference-server.js`, on a free port.
struct ReferenceServer {
    child: Child,
    port: u16,
    // Held open: the server exits when its stdin closes (`--exit-with-stdin`), even if this
    // process dies without running destructors.
    _stdin: ChildStdin,
    stderr: JoinHandle<String>,
}

impl ReferenceServer {
    async fn start(protocol_version: u8) -> Self {
        Self::start_with_codec(protocol_version, "json").await
    }

    /// A reference server whose codec engine is `codec` (`json`, `minbin` or `protobuf`).
    async fn start_with_codec(protocol_version: u8, codec: &str) -> Self {
        let mut child = project()
            .node("reference-server.js")
            .args(["--port", "0", "--protocol-version"])
            .arg(protocol_version.to_string())
            .args(["--codec", codec])
            .args(["--ping-interval", &PING_INTERVAL_MS.to_string()])
            .args(["--ping-timeout", &PING_TIMEOUT_MS.to_string()])
            .args(["--auth-key", AUTH_KEY])
            .arg("--exit-with-stdin")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start node reference-server.js");
        let stdin = child.stdin.take().expect("stdin");
        let stderr = drain(child.stderr.take().expect("stderr"));
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await;
        let port = match &first {
            Ok(Ok(Some(line))) => line
                .strip_prefix("listening on port ")
                .and_then(|port| port.trim().parse().ok()),
            _ => None,
        };
        let Some(port) = port else {
            let _ = child.kill().await;
            panic!(
                "reference server (protocol {protocol_version}, codec {codec}) did not report its port: {first:?}\n{}",
                stderr.await.unwrap_or_default()
            );
        };
        Self {
            child,
            port,
            _stdin: stdin,
            stderr,
        }
    }

    fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/socketcluster/", self.port)
    }

    /// Stops the server; fails if it had already exited (it crashed mid-suite).
    async fn stop(mut self) -> (Option<ExitStatus>, String) {
        let exited_early = self.child.try_wait().ok().flatten();
        let _ = self.child.kill().await;
        let stderr = self.stderr.await.unwrap_or_default();
        (exited_early, stderr)
    }
}

#[test]
fn official_clients_against_sockyard() {
    if !ready() {
        return;
    }
    runtime().block_on(async {
        // The default config already has the rule the suite expects: `private/*` needs an
        // authenticated connection to subscribe and publish.
        let mut config = Config::default();
        config.auth.key = AUTH_KEY.into();
        for endpoint in &mut config.endpoints {
            endpoint.ping_interval_ms = PING_INTERVAL_MS;
            endpoint.ping_timeout_ms = PING_TIMEOUT_MS;
        }
        let server = start_with(config).await;
        let url = server.url();
        // One dual-ping endpoint serves both client generations (--v1-url defaults to --url).
        run_suite(
            "sockyard",
            &[
                "--server",
                "sockyard",
                "--url",
                &url,
                "--auth-key",
                AUTH_KEY,
            ],
        )
        .await;
        server.shutdown().await;
    });
}

#[test]
fn official_clients_against_reference_server() {
    if !ready() {
        return;
    }
    runtime().block_on(async {
        // The official server speaks one protocol version per instance: v2 for the v20 client,
        // a second, protocolVersion 1 instance for the v14 client.
        let (v2, v1) = tokio::join!(ReferenceServer::start(2), ReferenceServer::start(1));
        let (url, v1_url) = (v2.url(), v1.url());
        run_suite(
            "reference",
            &[
                "--server",
                "reference",
                "--url",
                &url,
                "--v1-url",
                &v1_url,
                "--auth-key",
                AUTH_KEY,
            ],
        )
        .await;
        for (name, server) in [("v2", v2), ("v1", v1)] {
            let (exited_early, stderr) = server.stop().await;
            assert!(
                exited_early.is_none(),
                "the {name} reference server exited during the suite ({exited_early:?}):\n{stderr}"
            );
        }
    });
}

/// The `/ctproto` endpoint's authorize deadline for the CTProto suite: short, so its 1013 checks
/// take well under a second, yet long enough for every other test to authorize in time.
const CTPROTO_AUTHORIZE_TIMEOUT_MS: u64 = 600;

#[test]
fn original_ctproto_client_against_sockyard() {
    if !ready() {
        return;
    }
    runtime().block_on(async {
        let mut config = Config::default();
        config.auth.key = AUTH_KEY.into();
        let ctproto = config
            .endpoints
            .iter_mut()
            .find(|endpoint| endpoint.path == "/ctproto")
            .expect("the default config has a /ctproto endpoint");
        assert_eq!(ctproto.dialect, Dialect::CtProto);
        ctproto.authorizer = Authorizer::TokenOrUsername;
        ctproto.authorize_timeout_ms = CTPROTO_AUTHORIZE_TIMEOUT_MS;
        let server = start_with(config).await;
        let url = server.url_of("/ctproto");
        let sc_url = server.url();
        let timeout = CTPROTO_AUTHORIZE_TIMEOUT_MS.to_string();
        run_script(
            "ctproto",
            "ctproto/suite.js",
            &[
                "--url",
                &url,
                "--sc-url",
                &sc_url,
                "--auth-key",
                AUTH_KEY,
                "--authorize-timeout-ms",
                &timeout,
            ],
        )
        .await;
        server.shutdown().await;
    });
}

/// The events `compat/codecs/protos.js` registers after `#api`, in the same order (so the same
/// type ids): request and response types from `compat/codecs/events.proto`.
const CODEC_EVENTS: [(&str, &str, Option<&str>); 3] = [
    ("echo", ".compat.EchoRequest", Some(".compat.EchoResponse")),
    (
        "pushToMe",
        ".compat.PushRequest",
        Some(".compat.PushResponse"),
    ),
    ("serverEvent", ".compat.ServerEvent", None),
];

/// The default configuration (with the demo's msgpack and protobuf endpoints) with the suite's
/// ping settings and auth key, and the codec suite's events registered on the protobuf endpoint.
fn codec_config() -> Config {
    let mut config = Config::default();
    config.auth.key = AUTH_KEY.into();
    for endpoint in &mut config.endpoints {
        endpoint.ping_interval_ms = PING_INTERVAL_MS;
        endpoint.ping_timeout_ms = PING_TIMEOUT_MS;
    }
    let events_proto = compat_dir().join("codecs").join("events.proto");
    let events_proto = fs::read_to_string(&events_proto)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", events_proto.display()));
    let protobuf = config
        .endpoints
        .iter_mut()
        .find(|endpoint| endpoint.path == "/socketcluster-protobuf/")
        .expect("the default config has a /socketcluster-protobuf/ endpoint");
    assert_eq!(protobuf.codec, Codec::Protobuf);
    assert!(
        protobuf.protobuf.api,
        "the demo protobuf endpoint registers #api"
    );
    protobuf.protobuf.inline.push(events_proto);
    protobuf
        .protobuf
        .events
        .extend(CODEC_EVENTS.map(|(event, request, response)| EventTypes {
            event: event.to_owned(),
            request: request.to_owned(),
            response: response.map(str::to_owned),
        }));
    let minbin = config
        .endpoints
        .iter()
        .find(|endpoint| endpoint.path == "/socketcluster-minbin/")
        .expect("the default config has a /socketcluster-minbin/ endpoint");
    assert_eq!(minbin.codec, Codec::Msgpack);
    config
}

#[test]
fn codec_clients_against_sockyard() {
    if !ready() {
        return;
    }
    runtime().block_on(async {
        let server = start_with(codec_config()).await;
        let minbin = server.url_of("/socketcluster-minbin/");
        let protobuf = server.url_of("/socketcluster-protobuf/");
        run_script(
            "codecs sockyard",
            "codecs/suite.js",
            &[
                "--server",
                "sockyard",
                "--minbin-url",
                &minbin,
                "--protobuf-url",
                &protobuf,
                "--auth-key",
                AUTH_KEY,
            ],
        )
        .await;
        server.shutdown().await;
    });
}

#[test]
fn codec_clients_against_reference_servers() {
    if !ready() {
        return;
    }
    runtime().block_on(async {
        // The official server has one codec engine per instance.
        let (minbin, protobuf) = tokio::join!(
            ReferenceServer::start_with_codec(2, "minbin"),
            ReferenceServer::start_with_codec(2, "protobuf"),
        );
        let (minbin_url, protobuf_url) = (minbin.url(), protobuf.url());
        run_script(
            "codecs reference",
            "codecs/suite.js",
            &[
                "--server",
                "reference",
                "--minbin-url",
                &minbin_url,
                "--protobuf-url",
                &protobuf_url,
                "--auth-key",
                AUTH_KEY,
            ],
        )
        .await;
        for (name, server) in [("minbin", minbin), ("protobuf", protobuf)] {
            let (exited_early, stderr) = server.stop().await;
            assert!(
                exited_early.is_none(),
                "the {name} reference server exited during the suite ({exited_early:?}):\n{stderr}"
            );
        }
    });
}

/// `compat/resources/suite.js`: socketcluster-client 20 and 14 and the CTProto client against the
/// demo's declared resources (`creature`, `album`, `song` under `album`) in a fresh SQLite file,
/// through route names, REST paths and sockful's `{action, payload}`, with live change events,
/// version conflicts and validation errors. A Rust remote method, `creature/shout`, serves the
/// suite's remote-method tests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_clients_against_resources() {
    if !ready() {
        return;
    }
    let db = SqliteFile::new("compat-resources");

    let mut config = Config::default();
    config.auth.key = AUTH_KEY.into();
    config.storage.url = db.url();
    let names: Vec<&str> = config.resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["creature", "album", "song"], "the demo's resources");
    let resources =
        sockyard::resource::ResourcesBuilder::from_declarations(&config.resources, &config.storage)
            .remote(
                "creature",
                "shout",
                |_ctx, payload: serde_json::Value| async move {
                    match payload.get("text").and_then(serde_json::Value::as_str) {
                        Some(text) => Ok(serde_json::json!({
                            "resource": "creature",
                            "text": text.to_uppercase(),
                        })),
                        None => Err(sockyard::ApiError::new("ShoutError", "nothing to shout")
                            .with("got", payload)),
                    }
                },
            )
            .open_storage(&config.storage)
            .await
            .expect("open the resources in a fresh SQLite file");
    let routes = test_router()
        .nest("", resources.router())
        .build()
        .expect("routes");
    let server = start_built(
        sockyard::Server::builder(&config)
            .routes(routes)
            .resources(resources),
    )
    .await;
    let ct_url = server.url_of("/ctproto");
    let sc_url = server.url();
    run_script(
        "resources",
        "resources/suite.js",
        &[
            "--url",
            &sc_url,
            "--ct-url",
            &ct_url,
            "--remote-method",
            "shout",
        ],
    )
    .await;
    server.shutdown().await;
}
