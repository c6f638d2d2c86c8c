//! A room's program: started with a cleared environment, reached over stdio or TCP, its stderr
//! logged with the room's name, and stopped gracefully (input closed, then SIGTERM, then
//! SIGKILL).

use std::pin::Pin;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncRead, AsyncWrite, BufReader};
use tokio::process::{Child, Command};

use super::options::RoomOptions;

/// How long connecting to a TCP program is retried after the delay.
const TCP_CONNECT_PATIENCE: Duration = Duration::from_secs(5);

/// Longest stderr line logged whole; longer lines are cut.
const MAX_LOG_LINE: usize = 4096;

/// The client whose arrival created the room: what the program's environment describes.
#[derive(Debug, Clone, Default)]
pub struct Creator {
    /// `ip:port` of the client.
    pub remote_addr: String,
    /// The query string of its request, as sent (still percent-encoded).
    pub query_string: String,
}

/// The two byte streams to and from a running program.
pub(super) struct ProgramIo {
    /// Its stdin, or the TCP connection's write half.
    pub input: Pin<Box<dyn AsyncWrite + Send>>,
    /// Its stdout, or the TCP connection's read half.
    pub output: Pin<Box<dyn AsyncRead + Send>>,
}

impl std::fmt::Debug for ProgramIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProgramIo").finish_non_exhaustive()
    }
}

/// A running program.
#[derive(Debug)]
pub(super) struct Program {
    child: Child,
    room: String,
    port: Option<u16>,
}

/// Why a program could not be started or reached.
#[derive(Debug, thiserror::Error)]
pub(super) enum ProgramError {
    /// The program could not be started.
    #[error("cannot start `{command}`: {source}")]
    Spawn {
        /// The command.
        command: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A TCP program did not accept a connection in time.
    #[error("cannot connect to the program on 127.0.0.1:{port}: {source}")]
    Connect {
        /// The port it was given.
        port: u16,
        /// The last connection error.
        source: std::io::Error,
    },
}

impl Program {
    /// Starts `options.command` for `room`, created by `creator`; `port` is set with `tcp`.
    pub(super) fn start(
        options: &RoomOptions,
        room: &str,
        creator: &Creator,
        port: Option<u16>,
    ) -> Result<Self, ProgramError> {
        let mut command = Command::new(&options.command);
        command.args(&options.args).env_clear();
        for name in &options.passenv {
            if let Some(value) = std::env::var_os(name) {
                command.env(name, value);
            }
        }
        command
            .env("ROOM", room)
            .env("QUERY_STRING", &creator.query_string)
            .env("REMOTE_ADDR", &creator.remote_addr);
        if let Some(port) = port {
            command.env("PORT", port.to_string());
            command.stdin(Stdio::null()).stdout(Stdio::piped());
        } else {
            command.stdin(Stdio::piped()).stdout(Stdio::piped());
        }
        command.stderr(Stdio::piped()).kill_on_drop(true);
        let mut child = command.spawn().map_err(|source| ProgramError::Spawn {
            command: options.command.clone(),
            source,
        })?;
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(log_lines(room.to_owned(), "stderr", stderr));
        }
        if port.is_some() {
            // A TCP program's stdout is not the channel to clients: log it like stderr.
            if let Some(stdout) = child.stdout.take() {
                tokio::spawn(log_lines(room.to_owned(), "stdout", stdout));
            }
        }
        tracing::info!(room, pid = child.id(), command = %options.command, "program started");
        Ok(Self {
            child,
            room: room.to_owned(),
            port,
        })
    }

    /// The port a TCP program listens on.
    pub(super) fn port(&self) -> Option<u16> {
        self.port
    }

    /// Connects to the program: its stdio, or (with a port) a TCP connection to it, retried
    /// for a while since the program may still be starting.
    pub(super) async fn attach(&mut self) -> Result<ProgramIo, ProgramError> {
        if let Some(port) = self.port {
            let deadline = tokio::time::Instant::now() + TCP_CONNECT_PATIENCE;
            loop {
                match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                    Ok(stream) => {
                        let _ = stream.set_nodelay(true);
                        let (read, write) = stream.into_split();
                        return Ok(ProgramIo {
                            input: Box::pin(write),
                            output: Box::pin(read),
                        });
                    }
                    Err(source) if tokio::time::Instant::now() >= deadline => {
                        return Err(ProgramError::Connect { port, source });
                    }
                    Err(source) => {
                        // A program that has exited will never listen: no use waiting.
                        if let Ok(Some(status)) = self.child.try_wait() {
                            tracing::debug!(room = %self.room, %status, "program exited before listening");
                            return Err(ProgramError::Connect { port, source });
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }
        let input = self.child.stdin.take();
        let output = self.child.stdout.take();
        match (input, output) {
            (Some(input), Some(output)) => Ok(ProgramIo {
                input: Box::pin(input),
                output: Box::pin(output),
            }),
            _ => Err(ProgramError::Connect {
                port: 0,
                source: std::io::Error::other("the program's stdio was already taken"),
            }),
        }
    }

    /// Waits for the program to exit.
    pub(super) async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// Stops the program: its input must already be closed. It gets `grace` to exit, then
    /// SIGTERM and `kill_after` more, then SIGKILL.
    pub(super) async fn stop(
        &mut self,
        grace: Duration,
        kill_after: Duration,
    ) -> Option<ExitStatus> {
        if let Ok(status) = tokio::time::timeout(grace, self.child.wait()).await {
            return status.ok();
        }
        if let Some(pid) = self.child.id() {
            tracing::debug!(room = %self.room, pid, "sending SIGTERM");
            terminate(pid);
            if let Ok(status) = tokio::time::timeout(kill_after, self.child.wait()).await {
                return status.ok();
            }
        }
        tracing::warn!(room = %self.room, "program did not stop: sending SIGKILL");
        let _ = self.child.start_kill();
        self.child.wait().await.ok()
    }
}

/// Sends SIGTERM to `pid`.
fn terminate(pid: u32) {
    #[cfg(unix)]
    {
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        if let Ok(pid) = i32::try_from(pid) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
    }
    #[cfg(not(unix))]
    let _ = pid;
}

/// The close code and reason clients get when the program exits on its own.
pub(super) fn exit_close(status: Option<ExitStatus>) -> (u16, String) {
    match status {
        Some(status) if status.success() => (1000, "The program exited".to_owned()),
        Some(status) => match status.code() {
            Some(code) => (1011, format!("The program exited with status {code}")),
            None => (1011, signal_text(status)),
        },
        None => (1011, "The program ended".to_owned()),
    }
}

#[cfg(unix)]
fn signal_text(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match status.signal() {
        Some(signal) => format!("The program was killed by signal {signal}"),
        None => "The program ended".to_owned(),
    }
}

#[cfg(not(unix))]
fn signal_text(_status: ExitStatus) -> String {
    "The program ended".to_owned()
}

/// Logs each line of `stream` with the room's name.
async fn log_lines(room: String, stream_name: &'static str, stream: impl AsyncRead + Unpin) {
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let end = line.len().min(MAX_LOG_LINE);
                let text = String::from_utf8_lossy(&line[..end]);
                tracing::info!(room, stream = stream_name, "{}", text.trim_end());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    fn sh(script: &str) -> RoomOptions {
        RoomOptions::new("sh", vec!["-c".to_owned(), script.to_owned()])
    }

    #[tokio::test]
    async fn the_environment_is_cleared_then_described() {
        let creator = Creator {
            remote_addr: "127.0.0.1:5".to_owned(),
            query_string: "a=1&b=%20".to_owned(),
        };
        let options = sh("echo \"$ROOM|$QUERY_STRING|$REMOTE_ADDR|${HOME:-nohome}|${PATH:+path}\"");
        let mut program = Program::start(&options, "lobby", &creator, None).unwrap();
        let mut io = program.attach().await.unwrap();
        drop(io.input);
        let mut text = String::new();
        io.output.read_to_string(&mut text).await.unwrap();
        assert_eq!(text, "lobby|a=1&b=%20|127.0.0.1:5|nohome|path\n");
        assert!(program.wait().await.unwrap().success());
    }

    #[tokio::test]
    async fn a_stop_closes_input_first_then_escalates() {
        // `cat` exits when its input closes: no signal needed.
        let mut program = Program::start(
            &RoomOptions::new("cat", Vec::new()),
            "r",
            &Creator::default(),
            None,
        )
        .unwrap();
        let mut io = program.attach().await.unwrap();
        io.input.write_all(b"last words\n").await.unwrap();
        drop(io.input);
        let status = program
            .stop(Duration::from_secs(5), Duration::from_secs(5))
            .await;
        assert!(status.unwrap().success());
        let mut text = String::new();
        io.output.read_to_string(&mut text).await.unwrap();
        assert_eq!(text, "last words\n");

        // A program that ignores its input gets SIGTERM after the grace period.
        let mut program = Program::start(&sh("sleep 30"), "r", &Creator::default(), None).unwrap();
        drop(program.attach().await.unwrap());
        let started = std::time::Instant::now();
        let status = program
            .stop(Duration::from_millis(100), Duration::from_secs(5))
            .await;
        assert_eq!(
            exit_close(status),
            (1011, "The program was killed by signal 15".to_owned())
        );
        assert!(started.elapsed() < Duration::from_secs(3));

        // One that ignores SIGTERM too is killed.
        let mut program = Program::start(
            &sh("trap '' TERM; sleep 30 & wait; sleep 30"),
            "r",
            &Creator::default(),
            None,
        )
        .unwrap();
        drop(program.attach().await.unwrap());
        tokio::time::sleep(Duration::from_millis(100)).await;
        let status = program
            .stop(Duration::from_millis(50), Duration::from_millis(200))
            .await;
        assert_eq!(
            exit_close(status),
            (1011, "The program was killed by signal 9".to_owned())
        );
    }

    #[tokio::test]
    async fn exit_statuses_become_close_codes() {
        for (script, expected) in [
            ("exit 0", (1000, "The program exited".to_owned())),
            (
                "exit 3",
                (1011, "The program exited with status 3".to_owned()),
            ),
        ] {
            let mut program = Program::start(&sh(script), "r", &Creator::default(), None).unwrap();
            let status = program.wait().await.ok();
            assert_eq!(exit_close(status), expected);
        }
    }

    #[tokio::test]
    async fn a_tcp_program_that_exits_without_listening_fails_at_once() {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = probe.local_addr().unwrap().port();
        drop(probe);
        let mut program =
            Program::start(&sh("exit 0"), "r", &Creator::default(), Some(port)).unwrap();
        let started = std::time::Instant::now();
        let err = program.attach().await.unwrap_err();
        assert!(matches!(err, ProgramError::Connect { .. }), "{err}");
        assert!(
            started.elapsed() < TCP_CONNECT_PATIENCE / 2,
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn missing_programs_are_an_error_not_a_panic() {
        let err = Program::start(
            &RoomOptions::new("/nonexistent/program", Vec::new()),
            "r",
            &Creator::default(),
            None,
        )
        .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/program"), "{err}");
    }
}
