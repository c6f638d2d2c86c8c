//! The servers under test as child processes: starting each kind (the baseline echo server,
//! `sockyard serve`, the Node reference server, the `cat` wrappers) pinned to the server CPU,
//! finding where it listens, keeping what it logs, measuring it, and stopping it.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::cpu::{self, CpuWindow};
use crate::load::Mode;
use crate::pinning;

/// How long a server may take to say (or show) where it listens.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);

/// How long a `cat` wrapper may take to accept connections.
const WRAPPER_STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Lines a server logged, shared with the task that reads them.
type Notes = Arc<Mutex<Vec<String>>>;

/// A server child process under test. Killed when dropped.
#[derive(Debug)]
pub(crate) struct Server {
    /// Short name for tables and messages.
    pub(crate) name: &'static str,
    child: Child,
    /// Process id (CPU time and memory are read from /proc).
    pub(crate) pid: u32,
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    /// The WebSocket path.
    pub(crate) path: &'static str,
    /// What it speaks.
    pub(crate) mode: Mode,
    /// Warning and error lines the server logged.
    notes: Notes,
    /// The child's stdin, held open: a server that exits when its stdin closes (the Node one)
    /// then dies with us even if it is not killed.
    _stdin: Option<ChildStdin>,
    /// Whether the child leads a process group of its own, stopped as a whole (a wrapper and
    /// the programs it runs).
    group: bool,
}

impl Server {
    /// Spawns `command` (`what` names it in errors); returns the child and its pid.
    fn spawn(name: &str, mut command: Command, what: &str) -> anyhow::Result<(Child, u32)> {
        let child = command
            .spawn()
            .with_context(|| format!("starting {what}"))?;
        let pid = child.id().with_context(|| format!("{name} pid"))?;
        Ok((child, pid))
    }

    /// A server at `addr` speaking SocketCluster (JSON) at `/socketcluster/`, keeping no
    /// notes; the `start_*` functions change what differs.
    fn new(name: &'static str, child: Child, pid: u32, addr: SocketAddr) -> Self {
        Self {
            name,
            child,
            pid,
            addr,
            path: "/socketcluster/",
            mode: Mode::Sc,
            notes: Notes::default(),
            _stdin: None,
            group: false,
        }
    }

    /// Starts `sockyard-bench baseline-server` and reads its address from its first line,
    /// `listening on ADDR`.
    pub(crate) async fn start_baseline(cpu: Option<usize>) -> anyhow::Result<Self> {
        let exe = std::env::current_exe()?;
        let mut command = pinning::command(&exe, cpu);
        command.args(["baseline-server", "--listen", "127.0.0.1:0"]);
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let (mut child, pid) = Self::spawn("baseline", command, "the baseline server")?;
        let notes = Notes::default();
        collect_lines(child.stderr.take(), notes.clone(), |_| true);
        let (line, _) = first_line(&mut child, "baseline", "the baseline server").await?;
        let addr = line
            .strip_prefix("listening on ")
            .and_then(|addr| addr.parse().ok())
            .with_context(|| format!("unexpected baseline output {line:?}"))?;
        Ok(Self {
            path: "/",
            mode: Mode::Raw,
            notes,
            ..Self::new("baseline", child, pid, addr)
        })
    }

    /// Starts `node script 0` (the fan-out reference server) and reads its port from
    /// its first line, `listening on port N`.
    pub(crate) async fn start_node(
        node: &Path,
        script: &Path,
        cpu: Option<usize>,
    ) -> anyhow::Result<Self> {
        let mut command = pinning::command(node, cpu);
        command
            .arg(script)
            .arg("0")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let what = format!("{} {}", node.display(), script.display());
        let (mut child, pid) = Self::spawn("node", command, &what)?;
        let notes = Notes::default();
        let stdin = child.stdin.take();
        collect_lines(child.stderr.take(), notes.clone(), |_| true);
        let (line, stdout) = first_line(&mut child, "node", "the node server").await?;
        let port: u16 = line
            .strip_prefix("listening on port ")
            .and_then(|port| port.trim().parse().ok())
            .with_context(|| format!("unexpected node server output {line:?}"))?;
        collect_lines(Some(stdout.into_inner()), notes.clone(), |_| true);
        Ok(Self {
            notes,
            _stdin: stdin,
            ..Self::new("node", child, pid, SocketAddr::from(([127, 0, 0, 1], port)))
        })
    }

    /// Starts `bin serve --config config` with one tokio worker and reads its address from the
    /// JSON log.
    pub(crate) async fn start_sockyard(
        bin: &Path,
        config: &Path,
        cpu: Option<usize>,
    ) -> anyhow::Result<Self> {
        let mut command = pinning::command(bin, cpu);
        command
            .arg("serve")
            .arg("--config")
            .arg(config)
            // One worker on the one server core, like the single-threaded baseline.
            .env("TOKIO_WORKER_THREADS", "1")
            .env_remove("SOCKYARD_LISTEN")
            .env_remove("SOCKYARD_LOG_LEVEL")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let what = bin.display().to_string();
        let (mut child, pid) = Self::spawn("sockyard", command, &what)?;
        let mut stderr = BufReader::new(child.stderr.take().context("sockyard stderr")?).lines();
        let find_address = async {
            while let Some(line) = stderr.next_line().await? {
                let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                if let Some(local) = entry["fields"]["local"].as_str() {
                    return local
                        .parse::<SocketAddr>()
                        .with_context(|| format!("bad address in {line:?}"));
                }
            }
            bail!("sockyard exited at startup")
        };
        let addr = tokio::time::timeout(STARTUP_TIMEOUT, find_address)
            .await
            .context("sockyard did not report its address in time")??;
        let notes = Notes::default();
        collect_lines(Some(stderr.into_inner()), notes.clone(), |line| {
            !(line.contains("\"level\":\"INFO\"") || line.contains("\"level\":\"DEBUG\""))
        });
        Ok(Self {
            notes,
            ..Self::new("sockyard", child, pid, addr)
        })
    }

    /// Starts `program args…`, a wrapper that serves a program (`cat`) over WebSocket at
    /// `addr`, in a process group of its own with one tokio worker and quiet logs, and waits
    /// until it accepts connections.
    pub(crate) async fn start_wrapper(
        name: &'static str,
        program: &Path,
        args: &[String],
        addr: SocketAddr,
        cpu: Option<usize>,
    ) -> anyhow::Result<Self> {
        let mut command = pinning::command(program, cpu);
        command
            .args(args)
            .env("RUST_LOG", "error")
            // Every server shares one core: one tokio worker (as the other benchmarks run it).
            .env("TOKIO_WORKER_THREADS", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        let what = program.display().to_string();
        let (child, pid) = Self::spawn(name, command, &what)?;
        let deadline = Instant::now() + WRAPPER_STARTUP_TIMEOUT;
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            if Instant::now() > deadline {
                bail!("{name} did not listen on {addr}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Self {
            path: "/",
            mode: Mode::Raw,
            group: true,
            ..Self::new(name, child, pid, addr)
        })
    }

    /// `NAME pid PID on ADDR (CPU N)`, for progress lines (`cpu`: where it was pinned).
    pub(crate) fn describe(&self, cpu: Option<usize>) -> String {
        format!(
            "{} pid {} on {}{}",
            self.name,
            self.pid,
            self.addr,
            cpu.map_or(String::new(), |cpu| format!(" (CPU {cpu})"))
        )
    }

    /// Fails (with what it logged) if the server has exited.
    pub(crate) fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            let notes = self.notes.lock().expect("notes lock").join("\n  ");
            if notes.is_empty() {
                bail!("{} exited ({status}) and logged no warning", self.name);
            }
            bail!("{} exited ({status}); it logged:\n  {notes}", self.name);
        }
        Ok(())
    }

    /// Runs `attempt` against this server until other processes took at most
    /// [`cpu::DISTURBED`] of either pinned CPU during its window (as `cpu_of` reads it from
    /// the outcome), or `retries` repeats are used up. After each attempt the server must
    /// still be running, and is given time to settle. Returns the last outcome and how many
    /// were thrown away; an error only when the server is gone.
    pub(crate) async fn measure<T, F>(
        &mut self,
        retries: usize,
        label: &str,
        mut attempt: impl FnMut() -> F,
        cpu_of: impl Fn(&T) -> &CpuWindow,
    ) -> anyhow::Result<(anyhow::Result<T>, usize)>
    where
        F: Future<Output = anyhow::Result<T>>,
    {
        let mut repeats = 0;
        loop {
            let outcome = attempt().await;
            self.check_alive()?;
            // Let the server tear the connections down before the next test.
            cpu::settle(self.pid).await;
            let disturbance = outcome
                .as_ref()
                .ok()
                .and_then(|outcome| cpu_of(outcome).disturbance());
            match disturbance {
                Some((on_client, on_server)) if repeats < retries => {
                    repeats += 1;
                    eprintln!(
                        "{label}: other processes took {:.0} % of the load generator's CPU and \
                         {:.0} % of the server's; measuring again",
                        on_client * 100.0,
                        on_server * 100.0
                    );
                }
                _ => return Ok((outcome, repeats)),
            }
        }
    }

    /// Kills the server (and its process group, if it leads one) and returns what it logged
    /// at warning level or above.
    pub(crate) async fn stop(mut self) -> Vec<String> {
        if self.group {
            // The whole process group: the wrapper and the programs it started.
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", self.pid)])
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        let notes = self.notes.lock().expect("notes lock");
        notes.clone()
    }
}

/// Prints the first warning/error lines `name` logged, if it logged any.
pub(crate) fn print_notes(name: &str, notes: &[String]) {
    if !notes.is_empty() {
        println!(
            "\n{name} logged {} warning/error line(s), first ones:",
            notes.len()
        );
        for line in notes.iter().take(10) {
            println!("  {line}");
        }
    }
}

/// The first line `child` prints on stdout (`what` says who, for errors), and the rest of
/// its stdout.
async fn first_line(
    child: &mut Child,
    name: &str,
    what: &str,
) -> anyhow::Result<(String, Lines<BufReader<ChildStdout>>)> {
    let stdout = child
        .stdout
        .take()
        .with_context(|| format!("{name} stdout"))?;
    let mut stdout = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(STARTUP_TIMEOUT, stdout.next_line())
        .await
        .with_context(|| format!("{what} did not start in time"))??
        .with_context(|| format!("{what} exited at startup"))?;
    Ok((line, stdout))
}

/// Drains a child's output in the background, keeping (at most 200 of) the lines `keep`
/// accepts.
fn collect_lines<R>(from: Option<R>, into: Notes, keep: impl Fn(&str) -> bool + Send + 'static)
where
    R: AsyncRead + Unpin + Send + 'static,
{
    let Some(from) = from else { return };
    tokio::spawn(async move {
        let mut lines = BufReader::new(from).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if keep(&line) {
                let mut kept = into.lock().expect("notes lock");
                if kept.len() < 200 {
                    kept.push(line);
                }
            }
        }
    });
}
