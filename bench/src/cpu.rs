//! CPU accounting: the server's and the load generator's CPU time and the pinned CPUs' busy
//! time read from `/proc` at the edges of a measured window, and what they come to — CPU time
//! per message, how busy each core was, how much other processes took.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use crate::args::Cpus;

/// Share of a pinned CPU that other processes may take in a measured window before its
/// figures count as disturbed.
pub(crate) const DISTURBED: f64 = 0.05;

/// Reads the counters of one measurement: a server's CPU time (if its pid is known), this
/// process's, and the pinned CPUs' busy time (if pinned).
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuMeter {
    ticks: u64,
    server_pid: Option<u32>,
    pinned: Option<Cpus>,
}

/// The counters at one instant.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuSample {
    at: Instant,
    server: Option<Duration>,
    client: Duration,
    cores: Option<(Duration, Duration)>,
}

/// What was spent between two samples.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuWindow {
    /// Exact length of the window.
    pub(crate) elapsed: Duration,
    /// Server CPU time (user + system, all threads).
    pub(crate) server: Option<Duration>,
    /// This process's CPU time.
    pub(crate) client: Duration,
    /// Busy time of the load generator's and the server's CPUs (if pinned).
    pub(crate) cores: Option<(Duration, Duration)>,
}

impl CpuMeter {
    /// A meter for the server `server_pid` and the CPUs `pinned`.
    pub(crate) fn new(server_pid: Option<u32>, pinned: Option<Cpus>) -> Self {
        Self {
            ticks: ticks_per_second(),
            server_pid,
            pinned,
        }
    }

    /// Reads every counter now.
    pub(crate) fn sample(&self) -> anyhow::Result<CpuSample> {
        Ok(CpuSample {
            at: Instant::now(),
            server: self
                .server_pid
                .map(|pid| cpu_time(pid, self.ticks))
                .transpose()?,
            client: cpu_time(std::process::id(), self.ticks)?,
            cores: self
                .pinned
                .map(|cpus| {
                    anyhow::Ok((
                        cpu_busy(cpus.client, self.ticks)?,
                        cpu_busy(cpus.server, self.ticks)?,
                    ))
                })
                .transpose()?,
        })
    }
}

impl CpuSample {
    /// What was spent from `self` to the later sample `last`.
    pub(crate) fn until(&self, last: &Self) -> CpuWindow {
        CpuWindow {
            elapsed: last.at - self.at,
            server: last
                .server
                .zip(self.server)
                .map(|(b, a)| b.saturating_sub(a)),
            client: last.client.saturating_sub(self.client),
            cores: last
                .cores
                .zip(self.cores)
                .map(|((c1, s1), (c0, s0))| (c1.saturating_sub(c0), s1.saturating_sub(s0))),
        }
    }
}

impl CpuWindow {
    /// `count` per second over the window.
    pub(crate) fn rate(&self, count: u64) -> f64 {
        count as f64 / self.elapsed.as_secs_f64()
    }

    /// Server CPU microseconds per one of `count` things done (messages, deliveries, calls).
    pub(crate) fn server_us_per(&self, count: u64) -> Option<f64> {
        let cpu = self.server?;
        (count > 0).then(|| cpu.as_secs_f64() * 1e6 / count as f64)
    }

    /// Fraction of one core the server used.
    pub(crate) fn server_busy(&self) -> Option<f64> {
        Some(self.server?.as_secs_f64() / self.elapsed.as_secs_f64())
    }

    /// Fraction of one core the load generator used.
    pub(crate) fn client_busy(&self) -> f64 {
        self.client.as_secs_f64() / self.elapsed.as_secs_f64()
    }

    /// Fractions of the load generator's and the server's CPUs that other processes used in
    /// the window (the CPU's busy time minus ours), if pinned.
    pub(crate) fn foreign_load(&self) -> Option<(f64, f64)> {
        let (client_core, server_core) = self.cores?;
        let window = self.elapsed.as_secs_f64();
        let foreign = |core: Duration, own: Duration| {
            (core.as_secs_f64() - own.as_secs_f64()).max(0.0) / window
        };
        Some((
            foreign(client_core, self.client),
            foreign(server_core, self.server.unwrap_or_default()),
        ))
    }

    /// The foreign loads (as [`CpuWindow::foreign_load`]) if either is over [`DISTURBED`].
    pub(crate) fn disturbance(&self) -> Option<(f64, f64)> {
        self.foreign_load()
            .filter(|&(on_client, on_server)| on_client.max(on_server) > DISTURBED)
    }
}

/// Waits (at most 10 s) until the server `pid` has used under 5 % of a core for 250 ms.
pub(crate) async fn settle(pid: u32) {
    let ticks = ticks_per_second();
    let Ok(mut last) = cpu_time(pid, ticks) else {
        return;
    };
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let Ok(now) = cpu_time(pid, ticks) else {
            return;
        };
        if now.saturating_sub(last) < Duration::from_micros(12_500) {
            return;
        }
        last = now;
    }
}

/// Process-wide CPU time (user + system, all threads) of `pid`.
fn cpu_time(pid: u32, ticks_per_second: u64) -> anyhow::Result<Duration> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let ticks = parse_cpu_ticks(&stat).with_context(|| format!("parsing {path}"))?;
    Ok(Duration::from_micros(ticks * 1_000_000 / ticks_per_second))
}

/// `utime + stime` in clock ticks from the text of `/proc/PID/stat`.
fn parse_cpu_ticks(stat: &str) -> anyhow::Result<u64> {
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("no ')' after the command name")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); utime and stime are fields 14 and 15.
    let (Some(utime), Some(stime)) = (fields.get(11), fields.get(12)) else {
        bail!("too few fields");
    };
    Ok(utime.parse::<u64>()? + stime.parse::<u64>()?)
}

/// Time CPU `cpu` spent busy since boot (everything but idle and iowait in `/proc/stat`).
fn cpu_busy(cpu: usize, ticks_per_second: u64) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let ticks = parse_cpu_busy(&stat, cpu).with_context(|| format!("no cpu{cpu} in /proc/stat"))?;
    Ok(Duration::from_micros(ticks * 1_000_000 / ticks_per_second))
}

/// Busy ticks of `cpuN` from the text of `/proc/stat`: user, nice, system, irq, softirq and
/// steal (guest time is already inside user).
fn parse_cpu_busy(stat: &str, cpu: usize) -> Option<u64> {
    let name = format!("cpu{cpu}");
    let line = stat
        .lines()
        .find(|line| line.split_whitespace().next() == Some(name.as_str()))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal …
    let field = |i: usize| fields.get(i).copied().unwrap_or(0);
    Some(field(0) + field(1) + field(2) + field(5) + field(6) + field(7))
}

/// The kernel's `USER_HZ` (units of the `/proc` CPU times), from `getconf CLK_TCK`; 100 if
/// that fails, which is its value on every mainstream Linux architecture.
fn ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .filter(|&hz| hz > 0)
        .unwrap_or(100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_survive_spaces_and_parens_in_the_name() {
        let stat = "1234 (tokio (rt) w) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0";
        assert_eq!(parse_cpu_ticks(stat).unwrap(), 300);
    }

    #[test]
    fn cpu_busy_skips_idle_and_iowait() {
        let stat = "cpu  9 9 9 9 9 9 9 9 0 0\ncpu0 1 2 3 1000 50 4 5 6 0 0\ncpu1 7 0 0 5 0 0 0 0\n";
        assert_eq!(parse_cpu_busy(stat, 0), Some(21));
        assert_eq!(parse_cpu_busy(stat, 1), Some(7));
        assert_eq!(parse_cpu_busy(stat, 2), None);
    }

    #[test]
    fn own_process_is_readable() {
        let meter = CpuMeter::new(Some(std::process::id()), None);
        let first = meter.sample().unwrap();
        let window = first.until(&meter.sample().unwrap());
        assert!(window.server.is_some() && window.cores.is_none());
    }

    #[test]
    fn window_figures() {
        let window = CpuWindow {
            elapsed: Duration::from_secs(2),
            server: Some(Duration::from_secs(1)),
            client: Duration::from_millis(500),
            cores: Some((Duration::from_millis(700), Duration::from_millis(1100))),
        };
        assert_eq!(window.rate(10), 5.0);
        assert_eq!(window.server_us_per(4), Some(250_000.0));
        assert_eq!(window.server_us_per(0), None);
        assert_eq!(window.server_busy(), Some(0.5));
        assert_eq!(window.client_busy(), 0.25);
        let (on_client, on_server) = window.foreign_load().unwrap();
        assert!((on_client - 0.1).abs() < 1e-9 && (on_server - 0.05).abs() < 1e-9);
        assert_eq!(window.disturbance(), Some((on_client, on_server)));
    }
}
