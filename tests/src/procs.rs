//! Processes of the harness: finding the release binaries, free ports, per-process logs,
//! signals, bounded waits for a child, and spawning a daemon that dies with its test.
//!
//! Must not know what a server or a mount is (`server`, `mount` build on this).

use std::fs::{self, File, OpenOptions};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

/// How long a server or a mount may take to come up.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The workspace root (parent of this crate's directory).
pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("dfs-tests lives inside the workspace")
        .to_path_buf()
}

/// The directory `use_bin_dir` set.
static BIN_DIR: OnceLock<PathBuf> = OnceLock::new();

/// Makes this process find the binaries in `dir` (a crate's own tests use the binaries
/// cargo built with them: `CARGO_BIN_EXE_<name>`'s directory). The first call wins.
pub fn use_bin_dir(dir: &Path) {
    let _ = BIN_DIR.set(dir.to_path_buf());
}

/// Where the binaries are: the directory `use_bin_dir` set, else `$DFS_BIN_DIR`, else
/// `$CARGO_TARGET_DIR/release`, else `<workspace>/target/release`.
pub fn bin_dir() -> PathBuf {
    if let Some(d) = BIN_DIR.get() {
        return d.clone();
    }
    if let Some(d) = std::env::var_os("DFS_BIN_DIR") {
        return PathBuf::from(d);
    }
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        let t = PathBuf::from(t);
        let t = if t.is_absolute() {
            t
        } else {
            workspace_dir().join(t)
        };
        return t.join("release");
    }
    workspace_dir().join("target").join("release")
}

/// The path of binary `name`; panics with a clear message if it is missing.
pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    if !p.is_file() {
        panic!(
            "binary {} is missing: run scripts/test.sh, which builds release binaries first \
             (or set DFS_BIN_DIR)",
            p.display()
        );
    }
    p
}

/// A TCP port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

/// The last `lines` lines of a log file (or a note that it cannot be read).
pub fn log_tail(path: &Path, lines: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            let from = all.len().saturating_sub(lines);
            all[from..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

pub(crate) fn open_log(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("cannot open log {}: {e}", path.display()))
}

pub(crate) fn log_env() -> String {
    std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_string())
}

/// Sends `sig` to process `pid`.
pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) with a pid we spawned; at worst it fails with ESRCH.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// Waits up to `limit` for `child` to exit; `None` if it is still running.
pub(crate) fn wait_bounded(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return Some(st),
            Ok(None) => {}
            Err(_) => return None,
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Spawns `cmd` with stdout+stderr appended to `log`. The child gets `death_sig` if the
/// test thread that started it dies, so a killed test run does not leave daemons behind.
pub(crate) fn spawn_logged(mut cmd: Command, log: &Path, death_sig: i32) -> Child {
    let out = open_log(log);
    let err = out.try_clone().expect("dup log fd");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .env("RUST_LOG", log_env());
    // SAFETY: prctl is async-signal-safe and touches only the child.
    unsafe {
        cmd.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, death_sig as libc::c_ulong, 0, 0, 0);
            Ok(())
        });
    }
    cmd.spawn()
        .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", cmd.get_program()))
}
