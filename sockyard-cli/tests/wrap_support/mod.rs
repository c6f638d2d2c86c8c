//! The harness the `sockyard wrap` integration tests share: the real binary started on a free
//! port of 127.0.0.1 (killed on drop), WebSocket and raw HTTP clients, temporary directories
//! and the small helper programs the tests wrap.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_sockyard");

/// How long any single expected event may take.
pub const WAIT: Duration = Duration::from_secs(5);

/// A client connection.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What a WebSocket client runs over (plain TCP, TLS).
pub trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> Io for T {}

// ===== the server =====

/// A `sockyard wrap` command line, before it is started.
#[derive(Debug, Clone)]
pub struct Wrap {
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl Wrap {
    /// `sockyard wrap --addr 127.0.0.1:0 ARGS…` (ARGS hold the flags, the command and `--`
    /// with its arguments; an `--addr` among them replaces the default one).
    pub fn new(args: &[&str]) -> Self {
        Self {
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            env: Vec::new(),
        }
    }

    /// Sets an environment variable of the server.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Starts the server and waits for its "listening" log line.
    pub fn start(self) -> Server {
        let mut command = Command::new(BIN);
        command.arg("wrap");
        if !self
            .args
            .iter()
            .any(|a| a == "--addr" || a.starts_with("--addr="))
        {
            command.args(["--addr", "127.0.0.1:0"]);
        }
        command
            .args(&self.args)
            .env_remove("SOCKYARD_ROOM_KEY")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (name, value) in &self.env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("spawn sockyard");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let kept = log.clone();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        // Reads the log until the process ends, so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut addr_tx = Some(addr_tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let addr = line
                    .contains("listening")
                    .then(|| listening_addr(&line))
                    .flatten();
                kept.lock().unwrap().push(line);
                if let (Some(addr), Some(tx)) = (addr, addr_tx.as_ref()) {
                    let _ = tx.send(addr);
                    addr_tx = None;
                }
            }
        });
        let mut server = Server {
            child,
            addr: "127.0.0.1:0".parse().unwrap(),
            log,
        };
        match addr_rx.recv_timeout(WAIT) {
            Ok(addr) => server.addr = addr,
            Err(_) => panic!(
                "sockyard wrap {:?} did not start listening; log:\n{}",
                self.args,
                server.log()
            ),
        }
        server
    }
}

/// The address in a "listening" log line, text (`local=ADDR`) or JSON (`"local":"ADDR"`).
fn listening_addr(line: &str) -> Option<SocketAddr> {
    if line.trim_start().starts_with('{') {
        let value: serde_json::Value = serde_json::from_str(line).ok()?;
        return value["fields"]["local"].as_str()?.parse().ok();
    }
    line.split("local=")
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Starts `sockyard wrap --addr 127.0.0.1:0 ARGS…`.
pub fn wrap(args: &[&str]) -> Server {
    Wrap::new(args).start()
}

/// A running `sockyard wrap`, killed when dropped.
#[derive(Debug)]
pub struct Server {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// `ws://ADDR` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// The log so far (its stderr), one line each.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// The log lines so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Waits until a log line contains every one of `needles`.
    pub async fn wait_log(&self, needles: &[&str]) {
        let deadline = Instant::now() + WAIT;
        loop {
            if self
                .log
                .lock()
                .unwrap()
                .iter()
                .any(|line| needles.iter().all(|n| line.contains(n)))
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no log line with {needles:?}; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (a name such as `TERM`) to the server.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits up to `limit` for the server to exit.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> HttpReply {
        http_get(self.addr, path).await
    }

    /// The `/metrics` text (the server must run with `--metrics`).
    pub async fn metrics(&self) -> String {
        let reply = self.get("/metrics").await;
        assert_eq!(reply.status, 200, "{reply:?}");
        reply.body
    }

    /// Waits until the metric `series` (name and labels, as written) has `value`.
    pub async fn wait_metric(&self, series: &str, value: Option<f64>) {
        let deadline = Instant::now() + WAIT;
        loop {
            let text = self.metrics().await;
            if metric(&text, series) == value {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{series} never became {value:?}:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The value of `series` (a metric name with its labels as rendered, e.g.
/// `sockyard_room_connections_open{room="a"}`) in an OpenMetrics text.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?.strip_prefix(' ')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

// ===== WebSocket clients =====

/// Connects, panicking on refusal.
pub async fn connect(url: &str) -> Ws {
    match try_connect(url).await {
        Ok(ws) => ws,
        Err(err) => panic!("cannot connect to {url}: {}", describe(&err)),
    }
}

/// Connects with extra request headers.
pub async fn connect_with(url: &str, headers: &[(&str, &str)]) -> Result<Ws, tungstenite::Error> {
    let mut request = url.into_client_request()?;
    for (name, value) in headers {
        request.headers_mut().insert(
            tungstenite::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            tungstenite::http::HeaderValue::from_str(value).unwrap(),
        );
    }
    tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
        .await
        .unwrap_or_else(|_| panic!("connecting to {url} timed out"))
        .map(|(ws, _)| ws)
}

/// Connects with a receive buffer of `bytes` (so a client that does not read soon stops the
/// server's writes instead of buffering megabytes in the kernel).
pub async fn connect_small_buffer(url: &str, bytes: u32) -> WebSocketStream<TcpStream> {
    let addr: SocketAddr = url
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(bytes).unwrap();
    let stream = socket.connect(addr).await.expect("connect");
    let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::client_async(url, stream))
        .await
        .expect("handshake timed out")
        .expect("handshake");
    ws
}

/// Connects, returning the error on refusal.
pub async fn try_connect(url: &str) -> Result<Ws, tungstenite::Error> {
    connect_with(url, &[]).await
}

fn describe(err: &tungstenite::Error) -> String {
    match err {
        tungstenite::Error::Http(response) => format!(
            "HTTP {} {}",
            response.status(),
            String::from_utf8_lossy(response.body().as_deref().unwrap_or_default())
        ),
        other => other.to_string(),
    }
}

/// The HTTP status (and body) a refused upgrade got.
pub async fn refusal(url: &str) -> (u16, String) {
    refusal_with(url, &[]).await
}

/// [`refusal`] with extra request headers.
pub async fn refusal_with(url: &str, headers: &[(&str, &str)]) -> (u16, String) {
    match connect_with(url, headers).await {
        Ok(_) => panic!("{url} was accepted; expected an HTTP refusal"),
        Err(tungstenite::Error::Http(response)) => (
            response.status().as_u16(),
            String::from_utf8_lossy(response.body().as_deref().unwrap_or_default()).into_owned(),
        ),
        Err(other) => panic!("{url}: expected an HTTP refusal, got {other}"),
    }
}

/// A short printable form of a message for assertion messages.
pub fn show(message: &Message) -> String {
    let text = format!("{message:?}");
    if text.len() > 200 {
        format!("{}… ({} bytes)", &text[..200], message.len())
    } else {
        text
    }
}

/// The next data or close message (pings and pongs skipped).
pub async fn next<S: Io>(ws: &mut WebSocketStream<S>) -> Message {
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await {
            Err(_) => panic!("no message within {WAIT:?}"),
            Ok(None) => panic!("the connection ended without a close frame"),
            Ok(Some(Err(err))) => panic!("connection error: {err}"),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            Ok(Some(Ok(message))) => return message,
        }
    }
}

/// The next message, which must be text.
pub async fn text<S: Io>(ws: &mut WebSocketStream<S>) -> String {
    match next(ws).await {
        Message::Text(text) => text.to_string(),
        other => panic!("expected a text message, got {}", show(&other)),
    }
}

/// The next `n` messages, which must be text.
pub async fn texts<S: Io>(ws: &mut WebSocketStream<S>, n: usize) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(text(ws).await);
    }
    out
}

/// The next message, which must be binary.
pub async fn binary<S: Io>(ws: &mut WebSocketStream<S>) -> Vec<u8> {
    match next(ws).await {
        Message::Binary(bytes) => bytes.to_vec(),
        other => panic!("expected a binary message, got {}", show(&other)),
    }
}

/// Binary messages until `len` bytes have arrived (chunk boundaries are arbitrary).
pub async fn binary_bytes<S: Io>(ws: &mut WebSocketStream<S>, len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < len {
        out.extend(binary(ws).await);
    }
    out
}

/// The next message, which must be a close frame: its code and reason.
pub async fn close_frame<S: Io>(ws: &mut WebSocketStream<S>) -> (u16, String) {
    match next(ws).await {
        Message::Close(Some(frame)) => (u16::from(frame.code), frame.reason.to_string()),
        other => panic!("expected a close frame, got {}", show(&other)),
    }
}

/// Data messages until a close frame: the messages, then the close code and reason.
pub async fn until_close<S: Io>(ws: &mut WebSocketStream<S>) -> (Vec<Message>, u16, String) {
    let mut messages = Vec::new();
    loop {
        match next(ws).await {
            Message::Close(Some(frame)) => {
                return (messages, u16::from(frame.code), frame.reason.to_string())
            }
            Message::Close(None) => panic!("close frame without a code"),
            other => messages.push(other),
        }
    }
}

/// Asserts that no data message arrives for `period`.
pub async fn silent<S: Io>(ws: &mut WebSocketStream<S>, period: Duration) {
    let deadline = tokio::time::Instant::now() + period;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return,
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            Ok(other) => panic!("expected silence, got {other:?}"),
        }
    }
}

/// Sends a text message.
pub async fn send<S: Io>(ws: &mut WebSocketStream<S>, text: &str) {
    ws.send(Message::text(text)).await.expect("send");
}

/// Sends a binary message.
pub async fn send_binary<S: Io>(ws: &mut WebSocketStream<S>, bytes: &[u8]) {
    ws.send(Message::binary(bytes.to_vec()))
        .await
        .expect("send");
}

/// Closes the connection normally and waits for the server's close frame.
pub async fn leave<S: Io>(mut ws: WebSocketStream<S>) {
    let _ = ws.close(None).await;
    let _ = tokio::time::timeout(WAIT, async { while let Some(Ok(_)) = ws.next().await {} }).await;
}

/// The local address of a client connection (what the server sees as its remote address).
pub fn local_addr(ws: &Ws) -> SocketAddr {
    match ws.get_ref() {
        MaybeTlsStream::Plain(stream) => stream.local_addr().unwrap(),
        _ => unreachable!("plain connections only"),
    }
}

// ===== HTTP =====

/// An HTTP response.
#[derive(Debug, Clone)]
pub struct HttpReply {
    /// The status code.
    pub status: u16,
    /// The header block (lower-cased names), as text.
    pub headers: String,
    /// The body.
    pub body: String,
}

impl HttpReply {
    /// The value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key.trim().eq_ignore_ascii_case(name)).then(|| value.trim().to_owned())
        })
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }
}

/// `GET path` over a new connection, the path sent exactly as given.
pub async fn http_get(addr: SocketAddr, path: &str) -> HttpReply {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    http_raw(addr, request.as_bytes()).await
}

/// Sends `request` bytes and reads the response until the server closes.
pub async fn http_raw(addr: SocketAddr, request: &[u8]) -> HttpReply {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.write_all(request).await.expect("write request");
        let mut bytes = Vec::new();
        stream.read_to_end(&mut bytes).await.expect("read response");
        bytes
    };
    let bytes = tokio::time::timeout(WAIT, exchange)
        .await
        .expect("HTTP request timed out");
    parse_http(&bytes)
}

/// Parses an HTTP/1.1 response with a `Content-Length` body.
pub fn parse_http(bytes: &[u8]) -> HttpReply {
    let text = String::from_utf8_lossy(bytes);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    let (status_line, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    HttpReply {
        status,
        headers: headers.to_owned(),
        body: body.to_owned(),
    }
}

// ===== waiting =====

/// Polls `check` until it is true, panicking with `what` after [`WAIT`].
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the file at `path` exists and satisfies `check`; returns its text.
pub async fn file_when(path: &Path, check: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if check(&text) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{} never satisfied the check; it holds {text:?}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether process `pid` still exists (and is not a zombie).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

// ===== files and helper programs =====

/// A directory under the system's temporary directory, removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// A new empty directory.
    pub fn new(tag: &str) -> Self {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("sockyard-wrap-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        Self(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// A path inside it.
    pub fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// A path inside it, as a string for command lines.
    pub fn arg(&self, name: &str) -> String {
        self.file(name).display().to_string()
    }

    /// Writes a file inside it (creating parent directories).
    pub fn write(&self, name: &str, contents: &[u8]) -> PathBuf {
        let path = self.file(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The Python interpreter, by absolute path (the wrapped program's `PATH` may be cleared).
pub fn python() -> &'static str {
    static PYTHON: OnceLock<String> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let out = Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .expect("python3 is needed by these tests");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    })
}

/// For every input line (and once at start), prints the environment variables the tests look
/// at as one JSON object (`null` when unset).
pub const ENV_PRINTER: &str = r#"
import json, os, sys
keys = ["PATH", "LD_LIBRARY_PATH", "FOO", "HOME", "ROOM", "QUERY_STRING", "REMOTE_ADDR", "PORT"]
def show():
    print(json.dumps({k: os.environ.get(k) for k in keys}), flush=True)
show()
for line in sys.stdin:
    show()
"#;

/// gwsocket framing both ways: reads frames (big-endian id, type, length) and answers each
/// with the same frame back to its sender and an `all:`-prefixed copy to everyone (id 0); a
/// payload `to:N …` goes to connection N only.
pub const GW_ECHO: &str = r#"
import struct, sys
r, w = sys.stdin.buffer, sys.stdout.buffer
def read(n):
    b = b""
    while len(b) < n:
        c = r.read(n - len(b))
        if not c:
            sys.exit(0)
        b += c
    return b
while True:
    sender, kind, n = struct.unpack(">III", read(12))
    p = read(n)
    if p.startswith(b"to:"):
        dest = int(p[3:].split(b" ")[0])
        w.write(struct.pack(">III", dest, kind, len(p)) + p)
    else:
        w.write(struct.pack(">III", sender, kind, len(p)) + p)
        m = b"all:" + p
        w.write(struct.pack(">III", 0, kind, len(m)) + m)
    w.flush()
"#;

/// Reads gwsocket frames from clients and prints one line per frame:
/// `from=ID type=T len=N hex=PAYLOAD`.
pub const GW_DUMP: &str = r#"
import struct, sys
r = sys.stdin.buffer
def read(n):
    b = b""
    while len(b) < n:
        c = r.read(n - len(b))
        if not c:
            sys.exit(0)
        b += c
    return b
while True:
    sender, kind, n = struct.unpack(">III", read(12))
    p = read(n)
    print("from=%d type=%d len=%d hex=%s" % (sender, kind, n, p.hex()), flush=True)
"#;

/// Reads client lines and writes gwsocket output: `DEST TEXT` sends TEXT to DEST (0: everyone)
/// as a text frame; `raw HEX` writes those bytes as they are; `exit` exits.
pub const LINES_TO_GW: &str = r#"
import struct, sys
w = sys.stdout.buffer
for line in sys.stdin:
    line = line.rstrip("\n")
    if line == "exit":
        sys.exit(0)
    head, _, rest = line.partition(" ")
    if head == "raw":
        w.write(bytes.fromhex(rest))
    else:
        p = rest.encode()
        w.write(struct.pack(">III", int(head), 1, len(p)) + p)
    w.flush()
"#;

/// A TCP program for `--tcp`: listens on 127.0.0.1:$PORT, accepts one connection, greets it
/// with `port=PORT`, echoes its lines and exits when it closes.
pub const TCP_ECHO: &str = r#"
import os, socket
port = int(os.environ["PORT"])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port))
s.listen(1)
c, _ = s.accept()
c.sendall(("port=%d\n" % port).encode())
f = c.makefile("rb")
for line in f:
    c.sendall(b"tcp:" + line)
"#;

/// A gwsocket frame: big-endian id, type (1 text, 2 binary), length, then the payload.
pub fn gw_frame(id: u32, kind: u32, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::new();
    frame.extend_from_slice(&id.to_be_bytes());
    frame.extend_from_slice(&kind.to_be_bytes());
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A port `p` of 127.0.0.1 such that `p..p + n` can all be bound now.
pub fn free_ports(n: u16) -> u16 {
    for _ in 0..50 {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let start = probe.local_addr().unwrap().port();
        drop(probe);
        if start.checked_add(n).is_none() {
            continue;
        }
        let all_free = (start..start + n)
            .map(|p| std::net::TcpListener::bind(("127.0.0.1", p)))
            .collect::<Result<Vec<_>, _>>()
            .is_ok();
        if all_free {
            return start;
        }
    }
    panic!("no {n} consecutive free ports");
}

/// Runs `sockyard wrap ARGS…`, which must fail at start-up: its exit code and stderr.
pub fn wrap_fails(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(BIN)
        .arg("wrap")
        .args(args)
        .env_remove("SOCKYARD_ROOM_KEY")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sockyard");
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("sockyard wrap {args:?} did not exit: it was expected to refuse its flags");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "sockyard wrap {args:?} succeeded");
    (status.code(), stderr)
}
