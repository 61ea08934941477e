//! Bounded commands: shell scripts (`bash -c`) and other programs (the `dfs` command line),
//! each in its own process group, killed as a group (with what it printed so far in the
//! panic) when it runs past its bound.

use crate::procs::{bin, wait_bounded};
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// Default bound of a shell script run by `sh`.
pub const SH_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `bash -c script` in `dir`, bounded by `SH_TIMEOUT`.
pub fn sh(dir: &Path, script: &str) -> Output {
    sh_timeout(dir, script, SH_TIMEOUT)
}

/// Runs `bash -c script` in `dir` in its own process group; after `limit` the group is
/// killed and the test panics with what the script printed so far.
pub fn sh_timeout(dir: &Path, script: &str, limit: Duration) -> Output {
    let mut cmd = Command::new("bash");
    cmd.arg("-c").arg(script).current_dir(dir);
    match run_group(cmd, limit) {
        Ok(out) => out,
        Err(out) => panic!(
            "shell script timed out after {limit:?} in {}:\n{script}\n--- stdout:\n{}\n--- stderr:\n{}",
            dir.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// Runs `cmd` (stdin empty, stdout and stderr captured) in its own process group, bounded
/// by `limit`; after `limit` the group is killed and the test panics with what it printed.
pub fn run_timeout(cmd: Command, limit: Duration) -> Output {
    let what = format!("{cmd:?}");
    match run_group(cmd, limit) {
        Ok(out) => out,
        Err(out) => panic!(
            "{what} timed out after {limit:?}\n--- stdout:\n{}\n--- stderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// Runs the `dfs` command line (`dfs lock|unlock|locks|status …`), bounded by `limit`.
pub fn dfs_cli<S: AsRef<OsStr>>(args: &[S], limit: Duration) -> Output {
    let mut cmd = Command::new(bin("dfs"));
    cmd.args(args);
    run_timeout(cmd, limit)
}

/// Runs `cmd` in a new process group; `Err` (with what it printed) when `limit` ran out
/// and the group was killed.
fn run_group(mut cmd: Command, limit: Duration) -> Result<Output, Output> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {:?}: {e}", cmd.get_program()));
    let pid = child.id();
    let mut so = child.stdout.take().expect("stdout pipe");
    let mut se = child.stderr.take().expect("stderr pipe");
    let (tx_o, rx_o) = mpsc::channel();
    let (tx_e, rx_e) = mpsc::channel();
    thread::spawn(move || {
        let mut b = Vec::new();
        let _ = so.read_to_end(&mut b);
        let _ = tx_o.send(b);
    });
    thread::spawn(move || {
        let mut b = Vec::new();
        let _ = se.read_to_end(&mut b);
        let _ = tx_e.send(b);
    });
    match wait_bounded(&mut child, limit) {
        Some(status) => {
            // Background children may hold the pipes; do not wait for them forever.
            let stdout = rx_o
                .recv_timeout(Duration::from_secs(10))
                .unwrap_or_default();
            let stderr = rx_e
                .recv_timeout(Duration::from_secs(10))
                .unwrap_or_default();
            Ok(Output {
                status,
                stdout,
                stderr,
            })
        }
        None => {
            // SAFETY: kill(2) of the process group we created.
            unsafe {
                libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
            }
            let status = wait_bounded(&mut child, Duration::from_secs(5));
            let stdout = rx_o
                .recv_timeout(Duration::from_secs(2))
                .unwrap_or_default();
            let stderr = rx_e
                .recv_timeout(Duration::from_secs(2))
                .unwrap_or_default();
            Err(Output {
                status: status.unwrap_or_else(|| ExitStatus::from_raw(libc::SIGKILL)),
                stdout,
                stderr,
            })
        }
    }
}

/// Runs `script` with `set -euo pipefail` in `dir`; panics (showing the script, its
/// status and output) unless it succeeds; returns its stdout.
pub fn sh_ok(dir: &Path, script: &str) -> String {
    sh_ok_timeout(dir, script, SH_TIMEOUT)
}

/// `sh_ok` with an explicit bound.
pub fn sh_ok_timeout(dir: &Path, script: &str, limit: Duration) -> String {
    let full = format!("set -euo pipefail\n{script}");
    let out = sh_timeout(dir, &full, limit);
    if !out.status.success() {
        panic!(
            "shell script failed ({}) in {}:\n{script}\n--- stdout:\n{}\n--- stderr:\n{}",
            out.status,
            dir.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sh_ok_returns_stdout() {
        assert_eq!(sh_ok(Path::new("/"), "echo hi; pwd"), "hi\n/\n");
    }

    #[test]
    #[should_panic(expected = "timed out")]
    fn sh_kills_a_hung_script() {
        // The background child holds the pipes too; the whole group must go.
        sh_timeout(
            Path::new("/"),
            "sleep 60 & sleep 60",
            Duration::from_secs(1),
        );
    }
}
