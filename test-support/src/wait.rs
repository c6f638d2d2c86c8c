//! Waiting in tests: how long one expected event may take, and polling until a condition holds
//! or a file says what is expected.

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long any single expected event may take.
pub const WAIT: Duration = Duration::from_secs(5);

/// How often the polling helpers look again.
const POLL: Duration = Duration::from_millis(20);

/// Polls `check` until it is true, panicking with `what` after [`WAIT`].
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(POLL).await;
    }
}

/// Polls the asynchronous `attempt` until it gives a value, panicking with `what` and the last
/// error after [`WAIT`].
pub async fn eventually_ok<T, E, F>(what: &str, mut attempt: impl FnMut() -> F) -> T
where
    E: std::fmt::Display,
    F: Future<Output = Result<T, E>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        match attempt().await {
            Ok(value) => return value,
            Err(_) if Instant::now() < deadline => tokio::time::sleep(POLL).await,
            Err(err) => panic!("timed out waiting for {what}: {err}"),
        }
    }
}

/// Waits until the file at `path` exists and satisfies `check`; returns its text.
pub async fn file_when(path: &Path, check: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if check(&text) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{} never satisfied the check; it holds {text:?}",
            path.display()
        );
        tokio::time::sleep(POLL).await;
    }
}
