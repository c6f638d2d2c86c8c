//! A server process a test starts: its command line, its log read in the background (so it
//! never blocks on a full pipe), the address of its "listening" line, signals, its exit, and
//! its HTTP side. It is killed when dropped.

use std::ffi::OsString;
use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::http::{http_get, metric, HttpReply};
use crate::wait::WAIT;

/// How long a server may take to log that it listens.
const STARTUP: Duration = Duration::from_secs(30);

/// A server's command line, before it is started.
#[derive(Debug, Clone)]
pub struct Launch {
    program: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    unset: Vec<OsString>,
}

impl Launch {
    /// `program` without arguments, in the test's environment.
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            unset: Vec::new(),
        }
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable of the server.
    pub fn env(mut self, name: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Sets environment variables of the server.
    pub fn envs<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<OsString>,
        V: Into<OsString>,
    {
        self.env
            .extend(vars.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// Removes an environment variable the test's own environment may hold.
    pub fn env_remove(mut self, name: impl Into<OsString>) -> Self {
        self.unset.push(name.into());
        self
    }

    /// The command line as a `Command`, its input and output not yet set.
    pub fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        command.args(&self.args);
        for name in &self.unset {
            command.env_remove(name);
        }
        for (name, value) in &self.env {
            command.env(name, value);
        }
        command
    }

    /// Starts the command without input, its output dropped and its stderr piped.
    fn spawn(&self) -> Child {
        self.command()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {}: {err}", self.program.display()))
    }

    /// Starts the server and waits for its "listening" log line.
    pub fn start(self) -> Process {
        let mut child = self.spawn();
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
        let mut process = Process {
            child,
            addr: "127.0.0.1:0".parse().unwrap(),
            log,
        };
        match addr_rx.recv_timeout(STARTUP) {
            Ok(addr) => process.addr = addr,
            Err(_) => panic!(
                "{} {:?} did not start listening; log:\n{}",
                self.program.display(),
                self.args,
                process.log()
            ),
        }
        process
    }

    /// Runs the command, which must fail at start-up within [`WAIT`]: its exit code and
    /// stderr.
    pub fn fail_to_start(self) -> (Option<i32>, String) {
        let mut child = self.spawn();
        let deadline = Instant::now() + WAIT;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{} {:?} did not exit: it was expected to refuse its arguments",
                    self.program.display(),
                    self.args
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        assert!(
            !status.success(),
            "{} {:?} succeeded",
            self.program.display(),
            self.args
        );
        (status.code(), stderr)
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

/// A running server process, killed when dropped.
#[derive(Debug)]
pub struct Process {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Process {
    /// `ws://ADDR` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// The log so far (its stderr), one line each.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// The last `n` lines of the log.
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log.lock().unwrap();
        log[log.len().saturating_sub(n)..].join("\n")
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

    /// SIGKILL: no shutdown code runs, nothing is flushed by the server. Returns how it ended.
    pub fn kill(&mut self) -> ExitStatus {
        self.child.kill().expect("SIGKILL the server");
        self.child.wait().expect("wait for the server")
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

    /// The `/metrics` text (the server must serve metrics).
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

/// Whether process `pid` still exists (and is not a zombie).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}
