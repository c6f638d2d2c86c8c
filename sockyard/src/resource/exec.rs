//! Remote methods that run a command: the JSON payload goes to its stdin, the JSON it prints is
//! the reply; a non-zero exit or a timeout is an error.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::process::Command;

use super::schema::ExecMethod;
use crate::error::ApiError;

/// Longest output read from the command (stdout and stderr each).
const MAX_OUTPUT: u64 = 1 << 20;

/// Name of the error when the command fails.
pub(crate) const REMOTE_ERROR: &str = "RemoteMethodError";

/// Runs `method` with `payload` on stdin.
pub(crate) async fn run(method: &ExecMethod, payload: &Value) -> Result<Value, ApiError> {
    let (program, args) = method
        .exec
        .split_first()
        .ok_or_else(|| ApiError::internal("remote method without a command"))?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            tracing::error!(command = %program, error = %e, "cannot start remote method");
            ApiError::new(REMOTE_ERROR, format!("cannot start `{program}`"))
        })?;
    let input = payload.to_string();
    let mut stdin = child.stdin.take();
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let work = async {
        if let Some(mut stdin) = stdin.take() {
            // A command that does not read its input is not an error.
            let _ = stdin.write_all(input.as_bytes()).await;
        }
        let mut out = Vec::new();
        let mut err = Vec::new();
        if let Some(stdout) = stdout.take() {
            stdout.take(MAX_OUTPUT).read_to_end(&mut out).await.ok();
        }
        if let Some(stderr) = stderr.take() {
            stderr.take(MAX_OUTPUT).read_to_end(&mut err).await.ok();
        }
        let status = child.wait().await;
        (status, out, err)
    };
    let Ok((status, out, err)) =
        tokio::time::timeout(Duration::from_millis(method.timeout_ms), work).await
    else {
        return Err(ApiError::new(
            REMOTE_ERROR,
            format!("`{}` timed out after {} ms", method.name, method.timeout_ms),
        )
        .with("timeout", true));
    };
    let status = status.map_err(|e| ApiError::new(REMOTE_ERROR, e.to_string()))?;
    if !status.success() {
        let stderr = String::from_utf8_lossy(&err);
        let tail: String = stderr
            .lines()
            .rev()
            .take(5)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n");
        return Err(ApiError::new(
            REMOTE_ERROR,
            format!("`{}` failed: {}", method.name, tail.trim()),
        )
        .with("exitCode", status.code()));
    }
    let text = String::from_utf8_lossy(&out);
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(text.trim()).map_err(|e| {
        ApiError::new(
            REMOTE_ERROR,
            format!("`{}` printed something that is not JSON: {e}", method.name),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn method(exec: &[&str], timeout_ms: u64) -> ExecMethod {
        ExecMethod {
            name: "m".into(),
            exec: exec.iter().map(|s| (*s).to_owned()).collect(),
            timeout_ms,
        }
    }

    #[tokio::test]
    async fn passes_json_in_and_out() {
        assert_eq!(
            run(&method(&["cat"], 5000), &json!({"a": [1]})).await,
            Ok(json!({"a": [1]}))
        );
    }

    #[tokio::test]
    async fn reports_failures_timeouts_and_bad_output() {
        let err = run(
            &method(&["sh", "-c", "echo oops >&2; exit 3"], 5000),
            &json!(1),
        )
        .await
        .unwrap_err();
        assert_eq!(
            (err.name.as_ref(), err.extra["exitCode"].clone()),
            (REMOTE_ERROR, json!(3))
        );
        assert!(err.message.contains("oops"));
        let err = run(&method(&["sleep", "5"], 100), &json!(1))
            .await
            .unwrap_err();
        assert_eq!(err.extra["timeout"], true);
        let err = run(&method(&["echo", "not json"], 5000), &json!(1))
            .await
            .unwrap_err();
        assert!(err.message.contains("not JSON"));
        let err = run(&method(&["/nonexistent/program"], 5000), &json!(1))
            .await
            .unwrap_err();
        assert!(err.message.contains("cannot start"));
    }
}
