//! The `sockyard` binary under test, named by the path cargo gives the cli crate's tests
//! (`env!("CARGO_BIN_EXE_sockyard")`): `sockyard wrap` and `sockyard serve` started on a free
//! port of 127.0.0.1, and start-ups that must fail.

use std::path::Path;
use std::process::Command;

use crate::process::{Launch, Process};

/// The `sockyard` executable at a path.
#[derive(Debug, Clone, Copy)]
pub struct Sockyard {
    path: &'static str,
}

impl Sockyard {
    /// The binary at `path`.
    pub const fn at(path: &'static str) -> Self {
        Self { path }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        Path::new(self.path)
    }

    /// A command running it, for one-off invocations such as `sockyard call`.
    pub fn command(&self) -> Command {
        Command::new(self.path)
    }

    /// `sockyard wrap --addr 127.0.0.1:0 ARGS…`, before it is started: ARGS hold the flags, the
    /// command and `--` with its arguments; an `--addr` among them replaces the default one.
    /// The room key and `RUST_LOG` of the test's environment are not passed on.
    pub fn wrap_launch(&self, args: &[&str]) -> Launch {
        let mut launch = Launch::new(self.path).args(["wrap"]);
        if !args
            .iter()
            .any(|a| *a == "--addr" || a.starts_with("--addr="))
        {
            launch = launch.args(["--addr", "127.0.0.1:0"]);
        }
        launch
            .args(args)
            .env_remove("SOCKYARD_ROOM_KEY")
            .env_remove("RUST_LOG")
    }

    /// Starts `sockyard wrap --addr 127.0.0.1:0 ARGS…` (see [`Sockyard::wrap_launch`]).
    pub fn wrap(&self, args: &[&str]) -> Process {
        self.wrap_launch(args).start()
    }

    /// Runs `sockyard wrap ARGS…`, which must fail at start-up: its exit code and stderr.
    pub fn wrap_fails(&self, args: &[&str]) -> (Option<i32>, String) {
        Launch::new(self.path)
            .args(["wrap"])
            .args(args)
            .env_remove("SOCKYARD_ROOM_KEY")
            .fail_to_start()
    }

    /// `sockyard serve --listen 127.0.0.1:0 ARGS…`, before it is started, without the listen
    /// address and log level of the test's environment.
    pub fn serve_launch(&self, args: &[&str]) -> Launch {
        Launch::new(self.path)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .env_remove("SOCKYARD_LISTEN")
            .env_remove("SOCKYARD_LOG_LEVEL")
    }
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
