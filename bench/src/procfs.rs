//! Reads a process's CPU time and resident memory from `/proc`, the two server-side costs the
//! benchmark reports.

use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context as _};

/// Process-wide CPU time (user + system, all threads) of `pid`.
pub(crate) fn cpu_time(pid: u32, ticks_per_second: u64) -> anyhow::Result<Duration> {
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
pub(crate) fn cpu_busy(cpu: usize, ticks_per_second: u64) -> anyhow::Result<Duration> {
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

/// Resident set size of `pid` in KiB (`VmRSS` in `/proc/PID/status`).
pub(crate) fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_vm_rss(&status).with_context(|| format!("no VmRSS in {path}"))
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

/// The kernel's `USER_HZ` (units of the `/proc` CPU times), from `getconf CLK_TCK`; 100 if
/// that fails, which is its value on every mainstream Linux architecture.
pub(crate) fn ticks_per_second() -> u64 {
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
    fn vm_rss_is_found() {
        let status = "Name:\tx\nVmPeak:\t  9000 kB\nVmRSS:\t    4321 kB\nThreads: 2\n";
        assert_eq!(parse_vm_rss(status), Some(4321));
    }

    #[test]
    fn own_process_is_readable() {
        let pid = std::process::id();
        assert!(rss_kib(pid).unwrap() > 0);
        cpu_time(pid, ticks_per_second()).unwrap();
    }
}
