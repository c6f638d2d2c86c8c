//! The Sockyard configurations the benchmarks serve with: the same keys changed everywhere
//! (limits out of the way, pings rare, the address logged as JSON), either in a config of
//! their own or in the binary's own default config (`sockyard config`), written to temp files.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{ensure, Context as _};
use sockyard::config::{Config, LogFormat};
use tokio::process::Command;

/// A config file in the temp directory, removed again when dropped.
#[derive(Debug)]
pub(crate) struct TempConfig(PathBuf);

impl TempConfig {
    /// Writes `text` to a fresh file in the temp directory.
    pub(crate) fn create(text: &str) -> anyhow::Result<Self> {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("sockyard-bench-{}-{n}.toml", std::process::id()));
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        Ok(Self(path))
    }

    /// Where the file is.
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The keys every benchmark config sets, by table: listen on `127.0.0.1:0` and log JSON (the
/// bound address is read from the log), shut down quickly, lift the message budget, allow
/// `per_ip` connections from one address, give handshakes a minute and, in every endpoint,
/// ping every 10 minutes.
fn bench_keys(per_ip: usize) -> [(&'static str, &'static str, String); 10] {
    [
        ("server", "listen", "\"127.0.0.1:0\"".to_owned()),
        ("server", "log_level", "\"info\"".to_owned()),
        ("server", "log_format", "\"json\"".to_owned()),
        ("server", "shutdown_timeout_ms", "1000".to_owned()),
        ("limits", "max_messages_per_second", "100000000".to_owned()),
        ("limits", "max_connections", (per_ip * 2).to_string()),
        ("limits", "max_connections_per_ip", per_ip.to_string()),
        ("limits", "handshake_timeout_ms", "60000".to_owned()),
        ("endpoint", "ping_interval_ms", "600000".to_owned()),
        ("endpoint", "ping_timeout_ms", "1200000".to_owned()),
    ]
}

/// A Sockyard config for benchmarking: [`bench_keys`], `extra_limits` lines in `[limits]`, one
/// JSON SocketCluster endpoint at `/socketcluster/` and the demo application.
pub(crate) fn sockyard_config(command: &str, per_ip: usize, extra_limits: &str) -> String {
    let keys = bench_keys(per_ip);
    let table = |name: &str| {
        keys.iter()
            .filter(|(table, _, _)| *table == name)
            .map(|(_, key, value)| format!("{key} = {value}\n"))
            .collect::<String>()
    };
    format!(
        "# Written by sockyard-bench {command}; deleted when the run ends.\n[server]\n{}\n\
         [limits]\n{}{extra_limits}\n\n[[endpoint]]\npath = \"/socketcluster/\"\n\
         dialect = \"socketcluster\"\ncodec = \"json\"\nprotocol_version = \"both\"\n{}\n\
         [demo]\nenabled = true\n",
        table("server"),
        table("limits"),
        table("endpoint"),
    )
}

/// The output of `sockyard config`: the binary's own default configuration, every key.
pub(crate) async fn default_config(bin: &Path) -> anyhow::Result<String> {
    let output = Command::new(bin)
        .arg("config")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(15), output)
        .await
        .context("`sockyard config` took longer than 15 s")?
        .with_context(|| format!("running {} config", bin.display()))?;
    ensure!(
        output.status.success(),
        "`sockyard config` failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).context("`sockyard config` printed something not UTF-8")
}

/// Connections from one address the edited default config allows: the most the `codecs`
/// tests open at once (50), with room to spare.
pub(crate) const EDITED_PER_IP: usize = 6000;

/// The default config with [`bench_keys`] changed, every other key as printed (so the
/// endpoints are exactly the default ones). Fails if a key to change is missing.
pub(crate) fn edit_defaults(defaults: &str) -> anyhow::Result<String> {
    let edits = bench_keys(EDITED_PER_IP);
    let mut applied = vec![0usize; edits.len()];
    let mut section = String::new();
    let mut in_string = false;
    let mut out = String::from("# Written by sockyard-bench codecs: `sockyard config` with the limits lifted and\n# pings rare; deleted when the run ends.\n");
    for line in defaults.lines() {
        let trimmed = line.trim();
        let was_in_string = in_string;
        if trimmed.matches("\"\"\"").count() % 2 == 1 {
            in_string = !in_string;
        }
        if was_in_string || trimmed.starts_with('#') {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        if trimmed.starts_with('[') {
            section = trimmed.trim_matches(|c| c == '[' || c == ']').to_owned();
        }
        let key = trimmed.split('=').next().unwrap_or_default().trim();
        match edits
            .iter()
            .position(|(table, name, _)| *table == section && *name == key)
        {
            Some(i) if trimmed.contains('=') => {
                applied[i] += 1;
                let _ = writeln!(out, "{key} = {}", edits[i].2);
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    let missing: Vec<String> = edits
        .iter()
        .zip(&applied)
        .filter(|(_, &count)| count == 0)
        .map(|((table, key, _), _)| format!("{table}.{key}"))
        .collect();
    ensure!(
        missing.is_empty(),
        "`sockyard config` does not print {}",
        missing.join(", ")
    );
    Ok(out)
}

/// Checks that the edits took effect in the loaded config.
pub(crate) fn check_edits(config: &Config) -> anyhow::Result<()> {
    ensure!(
        config.server.listen.port() == 0 && config.server.log_format == LogFormat::Json,
        "the benchmark config does not listen on port 0 with JSON logs"
    );
    ensure!(
        config.limits.max_messages_per_second == 100_000_000
            && config.limits.max_connections_per_ip == EDITED_PER_IP,
        "the benchmark config did not lift the limits"
    );
    for endpoint in &config.endpoints {
        ensure!(
            endpoint.ping_interval_ms == 600_000,
            "endpoint {} still pings every {} ms",
            endpoint.path,
            endpoint.ping_interval_ms
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_config_is_edited_and_still_loads() {
        let text = edit_defaults(sockyard::config::DEFAULT_TOML).unwrap();
        let config = Config::from_toml_str(&text, "test").unwrap();
        check_edits(&config).unwrap();
        let defaults = Config::from_toml_str(sockyard::config::DEFAULT_TOML, "defaults").unwrap();
        assert_eq!(config.endpoints.len(), defaults.endpoints.len());
        for (ours, theirs) in config.endpoints.iter().zip(&defaults.endpoints) {
            assert_eq!(
                (&ours.path, ours.codec, &ours.protobuf),
                (&theirs.path, theirs.codec, &theirs.protobuf)
            );
        }
    }

    #[test]
    fn a_missing_key_is_an_error() {
        let err = edit_defaults("[server]\nlisten = \"127.0.0.1:8000\"\n").unwrap_err();
        assert!(err.to_string().contains("server.log_format"), "{err}");
    }

    #[test]
    fn the_own_config_sets_the_same_keys() {
        let text = sockyard_config("test", 7000, "outbound_queue_length = 2048");
        let config = Config::from_toml_str(&text, "test").unwrap();
        assert_eq!(config.limits.max_connections_per_ip, 7000);
        assert_eq!(config.limits.max_connections, 14_000);
        assert_eq!(config.limits.max_messages_per_second, 100_000_000);
        assert_eq!(config.limits.outbound_queue_length, 2048);
        assert_eq!(config.server.log_format, LogFormat::Json);
        assert_eq!(config.server.listen.port(), 0);
        let [endpoint] = config.endpoints.as_slice() else {
            panic!("one endpoint expected");
        };
        assert_eq!(endpoint.path, "/socketcluster/");
        assert_eq!(
            (endpoint.ping_interval_ms, endpoint.ping_timeout_ms),
            (600_000, 1_200_000)
        );
        assert!(config.demo.enabled);
    }
}
