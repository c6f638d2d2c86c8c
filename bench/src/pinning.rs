//! CPU pinning with `taskset`: the load generator pins itself (all its threads) to one CPU and
//! starts the servers under test on another.

use std::path::Path;
use std::process::Stdio;

use anyhow::{ensure, Context as _};
use tokio::process::Command;

use crate::args::{Cpus, Pinning};

impl Pinning {
    /// Pins this process to the client CPU unless `--no-pin` or `taskset` is missing; returns
    /// the CPUs when it did (the servers then go on the server CPU).
    pub(crate) fn apply(&self) -> anyhow::Result<Option<Cpus>> {
        if self.no_pin || !have_taskset() {
            return Ok(None);
        }
        let pinned = std::process::Command::new("taskset")
            .args(["-a", "-p", "-c", &self.client_cpu.to_string()])
            .arg(std::process::id().to_string())
            .stdout(Stdio::null())
            .status()
            .context("running taskset")?;
        ensure!(pinned.success(), "taskset could not pin the load generator");
        Ok(Some(self.cpus()))
    }
}

/// How a table header describes the pinning: `servers` names what ran on the server CPU.
pub(crate) fn describe(pinned: Option<Cpus>, servers: &str) -> String {
    match pinned {
        Some(cpus) => format!(
            "load generator on CPU {}, {servers} on CPU {} (taskset)",
            cpus.client, cpus.server
        ),
        None => "nothing pinned".to_owned(),
    }
}

/// `program` run under `taskset -c CPU` when `cpu` is set, with stdin closed. The child is
/// killed when dropped.
pub(crate) fn command(program: &Path, cpu: Option<usize>) -> Command {
    let mut command = match cpu {
        Some(cpu) => {
            let mut command = Command::new("taskset");
            command.arg("-c").arg(cpu.to_string()).arg(program);
            command
        }
        None => Command::new(program),
    };
    command.stdin(Stdio::null()).kill_on_drop(true);
    command
}

fn have_taskset() -> bool {
    std::process::Command::new("taskset")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}
