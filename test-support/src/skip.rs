//! When a test may skip: something it needs (Node.js, PostgreSQL, openssl) is missing on a
//! developer's machine. Under `CI=true` (or `CI=1`) nothing may be missing, and the test fails
//! instead.

use std::fmt::Display;

/// Whether a test may skip when something it needs is missing: only outside CI.
pub fn may_skip() -> bool {
    std::env::var("CI").map_or(true, |v| v != "true" && v != "1")
}

/// The value `needed` holds, or `None` when the test is to be skipped: an error outside CI is
/// reported as the reason `what` is skipped, an error in CI fails the test.
pub fn ok_or_skip<T, E: Display>(what: &str, needed: Result<T, E>) -> Option<T> {
    match needed {
        Ok(value) => Some(value),
        Err(reason) if may_skip() => {
            eprintln!("skipping {what}: {reason} (with CI=true this fails)");
            None
        }
        Err(reason) => panic!("{what} cannot run: {reason}"),
    }
}
