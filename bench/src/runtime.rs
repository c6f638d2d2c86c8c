//! The load generator's runtime: one tokio thread (pinned to the client CPU by the benchmark
//! subcommands), whose work stops on SIGINT or SIGTERM so that the servers, killed on drop,
//! never outlive it.

use std::future::Future;

use anyhow::{bail, Context as _};
use tokio::runtime::Runtime;

use crate::args::{Cpus, Pinning};

/// A single-threaded tokio runtime with IO and timers.
pub(crate) fn current_thread() -> anyhow::Result<Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the runtime")
}

/// Pins this process as `pinning` says, then runs `body` (given the CPUs, if pinned) on a
/// single-threaded runtime until it ends or a signal interrupts it; `servers` names what the
/// interruption stops, for the error.
pub(crate) fn run_pinned<F>(
    pinning: &Pinning,
    servers: &str,
    body: impl FnOnce(Option<Cpus>) -> F,
) -> anyhow::Result<()>
where
    F: Future<Output = anyhow::Result<()>>,
{
    let pinned = pinning.apply()?;
    current_thread()?.block_on(async {
        tokio::select! {
            outcome = body(pinned) => outcome,
            () = interrupted() => bail!("interrupted; {servers} stopped"),
        }
    })
}

/// Completes on SIGINT or SIGTERM.
async fn interrupted() {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
