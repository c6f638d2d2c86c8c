//! Command-line options the subcommands share, each group a `clap::Args` struct flattened into
//! the subcommands that take it. A subcommand whose default differs says so with
//! `#[command(mut_arg(...))]` on its own struct (checked by the tests in `main.rs`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{ensure, Context as _};

use crate::fanout::WindowChoice;

/// What every benchmark subcommand takes: the sockyard binary, the measured windows and the
/// repetitions.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct BenchArgs {
    /// The sockyard binary; default: `sockyard` next to this executable.
    #[arg(long, value_name = "PATH")]
    pub(crate) sockyard: Option<PathBuf>,
    /// Load before and during each measured window.
    #[command(flatten)]
    pub(crate) timing: Timing,
    /// Repetitions of each test; the table shows medians.
    #[arg(long, default_value_t = 3)]
    pub(crate) reps: usize,
}

impl BenchArgs {
    /// The sockyard binary named by `--sockyard`, or `sockyard` next to this executable; it
    /// may not exist.
    pub(crate) fn sockyard_path(&self) -> anyhow::Result<PathBuf> {
        Ok(match &self.sockyard {
            Some(path) => path.clone(),
            None => std::env::current_exe()?
                .parent()
                .context("executable without a directory")?
                .join("sockyard"),
        })
    }

    /// [`BenchArgs::sockyard_path`], which must be a file.
    pub(crate) fn sockyard_binary(&self) -> anyhow::Result<PathBuf> {
        let path = self.sockyard_path()?;
        ensure!(
            path.is_file(),
            "no sockyard binary at {} (build it with `cargo build --release -p sockyard-cli`, or \
             pass --sockyard PATH)",
            path.display()
        );
        Ok(path)
    }

    /// Fails unless at least one repetition is asked for.
    pub(crate) fn check_reps(&self) -> anyhow::Result<()> {
        ensure!(self.reps > 0, "--reps must be at least 1");
        Ok(())
    }
}

/// How long load is applied before a measured window, and how long the window is.
#[derive(Debug, Clone, Copy, clap::Args)]
pub(crate) struct Timing {
    /// Seconds measured per test.
    #[arg(long, default_value_t = 5.0)]
    pub(crate) duration: f64,
    /// Seconds of load before each measured window.
    #[arg(long, default_value_t = 1.0)]
    pub(crate) warmup: f64,
}

impl Timing {
    /// The warm-up.
    pub(crate) fn warmup(&self) -> Duration {
        Duration::from_secs_f64(self.warmup)
    }

    /// The measured window.
    pub(crate) fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.duration)
    }
}

/// Where the load generator and the servers run.
#[derive(Debug, Clone, Copy, clap::Args)]
pub(crate) struct Pinning {
    /// CPU for the load generator (this process).
    #[arg(long, default_value_t = 0)]
    pub(crate) client_cpu: usize,
    /// CPU for the servers.
    #[arg(long, default_value_t = 1)]
    pub(crate) server_cpu: usize,
    /// Do not pin anything with taskset.
    #[arg(long)]
    pub(crate) no_pin: bool,
}

/// The CPUs the load generator and the servers were pinned to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cpus {
    /// The load generator's CPU.
    pub(crate) client: usize,
    /// The servers' CPU.
    pub(crate) server: usize,
}

impl Pinning {
    /// The CPUs asked for.
    pub(crate) fn cpus(&self) -> Cpus {
        Cpus {
            client: self.client_cpu,
            server: self.server_cpu,
        }
    }
}

/// The echo workload's message size and patience (`run`, `codecs`, `load`).
#[derive(Debug, Clone, Copy, clap::Args)]
pub(crate) struct EchoArgs {
    /// Payload size in bytes.
    #[arg(long, default_value_t = 64)]
    pub(crate) payload_bytes: usize,
    /// Seconds a connection may wait for replies before the run fails as stalled.
    #[arg(long, default_value_t = 10.0)]
    pub(crate) stall_timeout: f64,
}

impl EchoArgs {
    /// The stall timeout.
    pub(crate) fn stall_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.stall_timeout)
    }
}

/// How many publications the fan-out publisher keeps in flight, how that number is found, and
/// how long it waits (`fanout`, `fanout-load`).
#[derive(Debug, Clone, Copy, clap::Args)]
pub(crate) struct PublisherArgs {
    /// Publications in flight: a number, or `auto` to search for the smallest window within
    /// 5 % of the best deliveries/s.
    #[arg(long, default_value = "auto", value_parser = crate::fanout::parse_window)]
    pub(crate) window: WindowChoice,
    /// Largest window the search tries.
    #[arg(long, default_value_t = 256)]
    pub(crate) max_window: usize,
    /// Seconds measured per window-search step.
    #[arg(long, default_value_t = 1.0)]
    pub(crate) step: f64,
    /// Seconds the publisher waits for a publication to reach every subscriber (or for its
    /// ack) before giving up on it.
    #[arg(long, default_value_t = 5.0)]
    pub(crate) stall_timeout: f64,
}

impl PublisherArgs {
    /// The length of one window-search step.
    pub(crate) fn step(&self) -> Duration {
        Duration::from_secs_f64(self.step)
    }

    /// How long the publisher waits for a publication.
    pub(crate) fn stall_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.stall_timeout)
    }
}

/// The help of `--warmup` where a window search comes first (`fanout`, `fanout-load`).
pub(crate) const FANOUT_WARMUP_HELP: &str = "Seconds of load before the window search (at \
     window 2), and again at the chosen window before the measured one";
