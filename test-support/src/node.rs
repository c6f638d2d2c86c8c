//! Node.js projects that tests drive: finding `node` and `npm`, installing the packages of the
//! lock file with `npm ci` once (under a lock shared by test processes), and running scripts
//! with a deadline, their report printed and their exit status checked.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, SystemTime};

use tokio::process::Command;

/// How long a test process waits for another one's `npm ci`.
const INSTALL_WAIT: Duration = Duration::from_secs(300);

/// A lock older than this is taken to be left by a killed run.
const STALE_LOCK: Duration = Duration::from_secs(600);

/// Why a Node.js project cannot run.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// `node` does not run.
    #[error("`node` was not found on PATH (Node.js 20 is needed)")]
    NodeMissing,
    /// `npm` does not run, and packages are missing.
    #[error("`npm` was not found on PATH (needed to install the packages of {0})")]
    NpmMissing(PathBuf),
    /// The lock between test processes could not be taken.
    #[error("cannot lock the npm install: {0}")]
    Lock(#[source] io::Error),
    /// `npm` could not be started.
    #[error("cannot run npm: {0}")]
    NpmStart(#[source] io::Error),
    /// `npm ci` failed.
    #[error("`npm ci` failed ({status}):\n{output}")]
    NpmFailed {
        /// How npm exited.
        status: ExitStatus,
        /// What it printed.
        output: String,
    },
    /// `npm ci` succeeded, yet packages are missing.
    #[error("`npm ci` succeeded but {0} is incomplete")]
    Incomplete(PathBuf),
}

/// A directory with `package.json` and `package-lock.json`, and the packages its scripts need.
#[derive(Debug, Clone)]
pub struct NodeProject {
    dir: PathBuf,
    packages: Vec<String>,
    unset: Vec<String>,
}

impl NodeProject {
    /// The project in `dir`, whose scripts need `packages` installed in `node_modules`.
    pub fn new(dir: impl Into<PathBuf>, packages: &[&str]) -> Self {
        Self {
            dir: dir.into(),
            packages: packages.iter().map(|p| (*p).to_owned()).collect(),
            unset: Vec::new(),
        }
    }

    /// Scripts run without these environment variables of the test's own environment.
    pub fn without_env(mut self, names: &[&str]) -> Self {
        self.unset.extend(names.iter().map(|n| (*n).to_owned()));
        self
    }

    /// The project's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether `node_modules` holds the packages of the current lock file.
    pub fn packages_installed(&self) -> bool {
        let modules = self.dir.join("node_modules");
        let all_present = self
            .packages
            .iter()
            .all(|name| modules.join(name).join("package.json").is_file());
        // npm writes node_modules/.package-lock.json last; an older one means the lock file
        // changed since the last install.
        let modified = |path: PathBuf| fs::metadata(path).and_then(|m| m.modified()).ok();
        let up_to_date = match (
            modified(modules.join(".package-lock.json")),
            modified(self.dir.join("package-lock.json")),
        ) {
            (Some(installed), Some(locked)) => installed >= locked,
            _ => false,
        };
        all_present && up_to_date
    }

    /// Checks for Node and installs the packages with `npm ci` if needed.
    pub fn prepare(&self) -> Result<(), NodeError> {
        if !tool_available("node") {
            return Err(NodeError::NodeMissing);
        }
        if self.packages_installed() {
            return Ok(());
        }
        let _lock =
            InstallLock::acquire(self.dir.join(".npm-install.lock")).map_err(NodeError::Lock)?;
        // Another process may have finished the install while this one waited.
        if self.packages_installed() {
            return Ok(());
        }
        if !tool_available("npm") {
            return Err(NodeError::NpmMissing(self.dir.clone()));
        }
        eprintln!("running `npm ci` in {}", self.dir.display());
        let output = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&self.dir)
            .output()
            .map_err(NodeError::NpmStart)?;
        if !output.status.success() {
            return Err(NodeError::NpmFailed {
                status: output.status,
                output: format!(
                    "{}{}",
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                ),
            });
        }
        if !self.packages_installed() {
            return Err(NodeError::Incomplete(self.dir.join("node_modules")));
        }
        Ok(())
    }

    /// A command for `node <script>` in the project's directory, killed when dropped.
    pub fn node(&self, script: &str) -> Command {
        let mut command = Command::new("node");
        command
            .arg(script)
            .current_dir(&self.dir)
            .kill_on_drop(true);
        for name in &self.unset {
            command.env_remove(name);
        }
        command
    }

    /// Runs `node <script> <args>` and fails the test unless it exits 0 within `limit`. Its
    /// report is printed either way (visible with `--nocapture`, and on failure).
    pub async fn run_script(&self, label: &str, script: &str, args: &[&str], limit: Duration) {
        let mut command = self.node(script);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let output = tokio::time::timeout(limit, command.output())
            .await
            .unwrap_or_else(|_| panic!("{label}: the suite did not finish within {limit:?}"))
            .unwrap_or_else(|err| panic!("{label}: cannot run node {script}: {err}"));
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        println!(
            "---- {label}: node {script} {} ----\n{stdout}",
            args.join(" ")
        );
        if !stderr.trim().is_empty() {
            println!("---- {label}: stderr ----\n{stderr}");
        }
        assert!(
            output.status.success(),
            "{label}: the suite failed ({}):\n{stdout}\n{stderr}",
            output.status
        );
    }
}

/// Whether `program --version` runs.
pub fn tool_available(program: impl AsRef<OsStr>) -> bool {
    std::process::Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// A directory created atomically as a lock between test processes (cargo nextest runs each
/// test in its own process), removed on drop.
struct InstallLock(PathBuf);

impl InstallLock {
    /// Waits for the lock, taking over one older than [`STALE_LOCK`].
    fn acquire(path: PathBuf) -> io::Result<Self> {
        let deadline = SystemTime::now() + INSTALL_WAIT;
        loop {
            match fs::create_dir(&path) {
                Ok(()) => return Ok(Self(path)),
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                    let age = fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok());
                    if age.is_some_and(|age| age > STALE_LOCK) {
                        let _ = fs::remove_dir(&path);
                        continue;
                    }
                    if SystemTime::now() > deadline {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("{} is still held after {INSTALL_WAIT:?}", path.display()),
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(err) => return Err(err),
            }
        }
    }
}

impl Drop for InstallLock {
    fn drop(&mut self) {
        let _ = fs::remove_dir(&self.0);
    }
}
