//! The harness of the dfs integration tests: real `dfs-server` processes and real FUSE
//! mounts (`dfs-mount`), each test in its own temporary directory with its own port.
//!
//! Owns: finding the release binaries, starting/stopping/killing servers and mounts (with
//! their logs), bounded shell and file-system helpers (a hung FUSE operation fails the test
//! instead of hanging CI), a raw HTTP/1.1 client for talking to the server directly, and
//! small measurement helpers (SHA-256 of a file, RSS/peak RSS of a process).
//!
//! Must not: depend on the server or client crates (the tests treat them as black boxes
//! and only use the wire contract in `dfs-common`), or leave a mount or a process behind:
//! `Drop` of `Server` and `Mount` cleans up, also when a test panics.
//!
//! Needs root (mounts) and release binaries: run `scripts/test.sh`, which builds them first.

pub mod tx;

use dfs_common::codec;
use dfs_common::proto::{DirReply, DirRequest, HDR_ATTR, HDR_CLIENT, HDR_DETAIL, HDR_ERROR};
use dfs_common::types::{Attr, FileKind, ROOT_INO};
use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// How long a server or a mount may take to come up.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Default bound of a shell script run by `sh`.
pub const SH_TIMEOUT: Duration = Duration::from_secs(120);
/// Default bound of one file-system operation run by `op`.
pub const OP_TIMEOUT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------
// Binaries, ports, logs
// ---------------------------------------------------------------------------------------

/// The workspace root (parent of this crate's directory).
pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("dfs-tests lives inside the workspace")
        .to_path_buf()
}

/// Where the binaries are: `$DFS_BIN_DIR`, else `$CARGO_TARGET_DIR/release`, else
/// `<workspace>/target/release`.
pub fn bin_dir() -> PathBuf {
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

fn open_log(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("cannot open log {}: {e}", path.display()))
}

fn log_env() -> String {
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
fn wait_bounded(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
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
fn spawn_logged(mut cmd: Command, log: &Path, death_sig: i32) -> Child {
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

// ---------------------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------------------

/// A running `dfs-server` on 127.0.0.1:`port` with its data in `data_dir`.
pub struct Server {
    child: Option<Child>,
    data_dir: PathBuf,
    port: u16,
    extra: Vec<String>,
    log: PathBuf,
}

impl Server {
    /// Starts the server and waits (bounded) until `GET /v1/health` answers 200. The log
    /// goes to `<parent of data_dir>/server-<port>.log`.
    pub fn start(data_dir: &Path, port: u16, extra: &[&str]) -> Server {
        fs::create_dir_all(data_dir).expect("create data dir");
        let parent = data_dir.parent().unwrap_or(data_dir);
        let log = parent.join(format!("server-{port}.log"));
        let mut s = Server {
            child: None,
            data_dir: data_dir.to_path_buf(),
            port,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            log,
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(bin("dfs-server"));
        cmd.arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listen")
            .arg(self.addr())
            .args(&self.extra);
        let _ = writeln!(
            open_log(&self.log),
            "==== harness: starting dfs-server {:?}",
            self.extra
        );
        self.child = Some(spawn_logged(cmd, &self.log, libc::SIGKILL));
        self.wait_healthy();
    }

    fn wait_healthy(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(st) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "dfs-server exited during start-up ({st}); log {}:\n{}",
                    self.log.display(),
                    log_tail(&self.log, 40)
                );
            }
            if let Ok(r) = http(&self.addr(), "GET", "/v1/health", &[], b"") {
                if r.status == 200 {
                    return;
                }
            }
            if Instant::now() >= deadline {
                panic!(
                    "dfs-server did not answer GET /v1/health with 200 within {START_TIMEOUT:?}; \
                     log {}:\n{}",
                    self.log.display(),
                    log_tail(&self.log, 40)
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The pid of the running server process.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server is not running").id()
    }

    /// Kills the server with SIGKILL and reaps it (a crash: nothing is flushed).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = wait_bounded(&mut c, Duration::from_secs(10));
        }
    }

    /// SIGTERM and wait (bounded) for a clean exit; returns the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("server is not running");
        signal(c.id(), libc::SIGTERM);
        match wait_bounded(&mut c, Duration::from_secs(20)) {
            Some(st) => st,
            None => {
                let _ = c.kill();
                let _ = wait_bounded(&mut c, Duration::from_secs(5));
                panic!(
                    "dfs-server did not exit within 20 s of SIGTERM; log:\n{}",
                    log_tail(&self.log, 40)
                );
            }
        }
    }

    /// Starts the server again with the same data dir, port and options (after `kill9` or
    /// `stop`; a running server is killed first).
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// The last lines of the server's log.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!(
                "---- dfs-server log tail ({}):\n{}\n----",
                self.log.display(),
                log_tail(&self.log, 40)
            );
        }
        self.kill9();
    }
}

// ---------------------------------------------------------------------------------------
// Mount
// ---------------------------------------------------------------------------------------

/// Undoes the octal escapes (`\040` for a space …) of /proc/self/mountinfo fields.
pub fn unescape_mountinfo(field: &str) -> Vec<u8> {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// `(mount id, fstype)` of every mount whose mount point is exactly `path`, oldest first.
pub fn mounts_at(path: &Path) -> Vec<(u64, String)> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    parse_mountinfo(&text, path.as_os_str().as_bytes())
}

fn parse_mountinfo(text: &str, path: &[u8]) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut halves = line.splitn(2, " - ");
        let left: Vec<&str> = halves.next().unwrap_or("").split(' ').collect();
        let right: Vec<&str> = halves.next().unwrap_or("").split(' ').collect();
        if left.len() < 5 || unescape_mountinfo(left[4]) != path {
            continue;
        }
        let id = left[0].parse().unwrap_or(0);
        out.push((id, right.first().unwrap_or(&"").to_string()));
    }
    out
}

/// Is there any mount at `path`?
pub fn is_mounted(path: &Path) -> bool {
    !mounts_at(path).is_empty()
}

/// Detaches every mount at `path` (lazy unmount), bounded.
pub fn detach_all(path: &Path) {
    let c = CString::new(path.as_os_str().as_bytes()).expect("path without NUL");
    for _ in 0..10 {
        if !is_mounted(path) {
            return;
        }
        // SAFETY: umount2 with a valid C string.
        unsafe {
            libc::umount2(c.as_ptr(), libc::MNT_DETACH);
        }
    }
}

/// A running `dfs-mount` of a server at a mount point.
pub struct Mount {
    child: Option<Child>,
    server: String,
    mountpoint: PathBuf,
    cache_dir: PathBuf,
    extra: Vec<String>,
    log: PathBuf,
}

impl Mount {
    /// Mounts `server` (HOST:PORT) at `mountpoint` with its cache in `cache_dir` (both are
    /// created) and waits (bounded) until a new FUSE mount shows in /proc/self/mountinfo.
    /// The log goes to `<parent of mountpoint>/mount-<name of mountpoint>.log`.
    pub fn start(server: &str, mountpoint: &Path, cache_dir: &Path, extra: &[&str]) -> Mount {
        fs::create_dir_all(mountpoint).expect("create mount point");
        fs::create_dir_all(cache_dir).expect("create cache dir");
        let mountpoint = fs::canonicalize(mountpoint).expect("canonical mount point");
        let name = mountpoint
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "mnt".into());
        let log = mountpoint
            .parent()
            .unwrap_or(&mountpoint)
            .join(format!("mount-{name}.log"));
        let mut m = Mount {
            child: None,
            server: server.to_string(),
            mountpoint,
            cache_dir: cache_dir.to_path_buf(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            log,
        };
        m.spawn();
        m
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(bin("dfs-mount"));
        cmd.arg(&self.server)
            .arg(&self.mountpoint)
            .arg("--cache-dir")
            .arg(&self.cache_dir)
            .args(&self.extra);
        let _ = writeln!(
            open_log(&self.log),
            "==== harness: starting dfs-mount {:?}",
            self.extra
        );
        self.child = Some(spawn_logged(cmd, &self.log, libc::SIGTERM));
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(st) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "dfs-mount exited during start-up ({st}); log {}:\n{}",
                    self.log.display(),
                    log_tail(&self.log, 40)
                );
            }
            // Mount ids are reused, so a new mount is recognised by working: a fuse mount
            // at the path whose root can be opened (a stale one gives ENOTCONN) and is on a
            // device other than the parent directory's.
            if let Some((_, fstype)) = mounts_at(&self.mountpoint).last() {
                assert!(
                    fstype.starts_with("fuse"),
                    "mount at {} has fstype {fstype}, expected fuse",
                    self.mountpoint.display()
                );
                if self.root_answers() {
                    return;
                }
            }
            if Instant::now() >= deadline {
                panic!(
                    "no new mount at {} within {START_TIMEOUT:?}; dfs-mount log:\n{}",
                    self.mountpoint.display(),
                    log_tail(&self.log, 40)
                );
            }
            thread::sleep(Duration::from_millis(25));
        }
    }

    fn root_answers(&self) -> bool {
        let mp = self.mountpoint.clone();
        timed(
            &format!("stat of new mount {}", mp.display()),
            Duration::from_secs(10),
            move || {
                use std::os::unix::fs::MetadataExt;
                let parent = mp.parent().and_then(|p| fs::metadata(p).ok());
                // statx may answer from cached attributes even on a dead mount; opening
                // the directory always asks the daemon.
                match (fs::read_dir(&mp), fs::metadata(&mp), parent) {
                    (Ok(_), Ok(m), Some(p)) => m.dev() != p.dev(),
                    _ => false,
                }
            },
        )
    }

    /// The mount point (canonical).
    pub fn path(&self) -> &Path {
        &self.mountpoint
    }

    /// `mountpoint/rel`.
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.mountpoint.join(rel)
    }

    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The pid of the running dfs-mount process.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("mount is not running").id()
    }

    /// Kills the client with SIGKILL and reaps it; the (now stale) mount is left in place,
    /// as a crashed client would leave it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = wait_bounded(&mut c, Duration::from_secs(10));
        }
    }

    /// SIGTERM, wait up to 10 s; returns the exit status (None if it had to be killed).
    /// Any mount still there afterwards is detached.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let st = self.child.take().and_then(|mut c| {
            signal(c.id(), libc::SIGTERM);
            let st = wait_bounded(&mut c, Duration::from_secs(10));
            if st.is_none() {
                eprintln!(
                    "dfs-mount at {} did not exit within 10 s of SIGTERM; detaching and killing",
                    self.mountpoint.display()
                );
                detach_all(&self.mountpoint);
                let _ = c.kill();
                let _ = wait_bounded(&mut c, Duration::from_secs(5));
            }
            st
        });
        detach_all(&self.mountpoint);
        st
    }

    /// Starts the client again on the same mount point, cache dir and options (a running
    /// one is killed first; a stale mount is left for the client to clear).
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!(
                "---- dfs-mount log tail ({}):\n{}\n----",
                self.log.display(),
                log_tail(&self.log, 40)
            );
        }
        self.stop();
    }
}

/// One server and one mount in a fresh temporary directory: `tmp/data` (server data),
/// `tmp/mnt` (mount point), `tmp/cache` (client cache), `tmp/local` (scratch space outside
/// the mount). Drops the mount, then the server, then the directory.
pub struct Fixture {
    pub mount: Mount,
    pub server: Server,
    pub tmp: tempfile::TempDir,
}

impl Fixture {
    pub fn new() -> Fixture {
        Fixture::with_server_args(&[])
    }

    pub fn with_server_args(server_args: &[&str]) -> Fixture {
        let tmp = tempfile::TempDir::new().expect("tempdir");
        let server = Server::start(&tmp.path().join("data"), free_port(), server_args);
        let mount = Mount::start(
            &server.addr(),
            &tmp.path().join("mnt"),
            &tmp.path().join("cache"),
            &[],
        );
        fs::create_dir_all(tmp.path().join("local")).expect("local dir");
        Fixture { mount, server, tmp }
    }

    /// The mount point.
    pub fn mnt(&self) -> &Path {
        self.mount.path()
    }

    /// Scratch directory outside the mount.
    pub fn local(&self) -> PathBuf {
        self.tmp.path().join("local")
    }
}

impl Default for Fixture {
    fn default() -> Self {
        Fixture::new()
    }
}

// ---------------------------------------------------------------------------------------
// Bounded shell and file-system operations
// ---------------------------------------------------------------------------------------

/// Runs `f` on a helper thread and waits at most `limit` for it. A FUSE operation that
/// hangs then fails the test (the panic drops the mount, which aborts the hung call).
pub fn timed<T: Send + 'static>(
    what: &str,
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    thread::Builder::new()
        .name(format!("timed: {what}"))
        .spawn(move || {
            let _ = tx.send(f());
        })
        .expect("spawn helper thread");
    match rx.recv_timeout(limit) {
        Ok(v) => v,
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what}: no answer within {limit:?} (hung FUSE operation?)")
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{what}: helper thread panicked"),
    }
}

/// `timed` with the default bound `OP_TIMEOUT`.
pub fn op<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    timed(what, OP_TIMEOUT, f)
}

/// Bounded `fs::read`.
pub fn read(p: impl AsRef<Path>) -> io::Result<Vec<u8>> {
    let p = p.as_ref().to_path_buf();
    op(&format!("read {}", p.display()), move || fs::read(&p))
}

/// Bounded `fs::write` (create/truncate, write, close).
pub fn write(p: impl AsRef<Path>, data: impl AsRef<[u8]>) -> io::Result<()> {
    let p = p.as_ref().to_path_buf();
    let data = data.as_ref().to_vec();
    op(&format!("write {}", p.display()), move || {
        fs::write(&p, data)
    })
}

/// Bounded `fs::metadata`.
pub fn metadata(p: impl AsRef<Path>) -> io::Result<fs::Metadata> {
    let p = p.as_ref().to_path_buf();
    op(&format!("stat {}", p.display()), move || fs::metadata(&p))
}

/// Bounded `fs::symlink_metadata`.
pub fn lstat(p: impl AsRef<Path>) -> io::Result<fs::Metadata> {
    let p = p.as_ref().to_path_buf();
    op(&format!("lstat {}", p.display()), move || {
        fs::symlink_metadata(&p)
    })
}

/// Bounded `fs::create_dir`.
pub fn mkdir(p: impl AsRef<Path>) -> io::Result<()> {
    let p = p.as_ref().to_path_buf();
    op(&format!("mkdir {}", p.display()), move || {
        fs::create_dir(&p)
    })
}

/// Bounded `fs::remove_file`.
pub fn remove_file(p: impl AsRef<Path>) -> io::Result<()> {
    let p = p.as_ref().to_path_buf();
    op(&format!("unlink {}", p.display()), move || {
        fs::remove_file(&p)
    })
}

/// Bounded `fs::rename`.
pub fn rename(from: impl AsRef<Path>, to: impl AsRef<Path>) -> io::Result<()> {
    let from = from.as_ref().to_path_buf();
    let to = to.as_ref().to_path_buf();
    op(
        &format!("rename {} -> {}", from.display(), to.display()),
        move || fs::rename(&from, &to),
    )
}

/// Bounded listing of a directory: sorted names.
pub fn list(p: impl AsRef<Path>) -> io::Result<Vec<String>> {
    let p = p.as_ref().to_path_buf();
    op(&format!("readdir {}", p.display()), move || {
        let mut names = Vec::new();
        for e in fs::read_dir(&p)? {
            names.push(e?.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    })
}

/// Runs `bash -c script` in `dir`, bounded by `SH_TIMEOUT`.
pub fn sh(dir: &Path, script: &str) -> Output {
    sh_timeout(dir, script, SH_TIMEOUT)
}

/// Runs `bash -c script` in `dir` in its own process group; after `limit` the group is
/// killed and the test panics with what the script printed so far.
pub fn sh_timeout(dir: &Path, script: &str, limit: Duration) -> Output {
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(script)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run bash: {e}"));
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
            Output {
                status,
                stdout,
                stderr,
            }
        }
        None => {
            // SAFETY: kill(2) of the process group we created.
            unsafe {
                libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
            }
            let _ = wait_bounded(&mut child, Duration::from_secs(5));
            let stdout = rx_o
                .recv_timeout(Duration::from_secs(2))
                .unwrap_or_default();
            let stderr = rx_e
                .recv_timeout(Duration::from_secs(2))
                .unwrap_or_default();
            panic!(
                "shell script timed out after {limit:?} in {}:\n{script}\n--- stdout:\n{}\n--- stderr:\n{}",
                dir.display(),
                String::from_utf8_lossy(&stdout),
                String::from_utf8_lossy(&stderr)
            );
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

// ---------------------------------------------------------------------------------------
// Measurements
// ---------------------------------------------------------------------------------------

/// Hex SHA-256 of a file's contents (streamed, 1 MiB at a time).
pub fn sha256_file(p: &Path) -> io::Result<String> {
    let mut f = File::open(p)?;
    let mut h = dfs_common::hash::BlobHasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finish().to_hex())
}

/// Hex SHA-256 of bytes.
pub fn sha256(data: &[u8]) -> String {
    dfs_common::hash::blob_id_of(data).to_hex()
}

fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    line[key.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Current resident set size of `pid` in KiB (VmRSS).
pub fn rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS:")
}

/// Peak resident set size of `pid` in KiB (VmHWM).
pub fn hwm_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmHWM:")
}

/// Deterministic pseudo-random bytes (xorshift64*), for binary test files.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Polls `f` every `every` until it returns `Some` or `limit` passes.
pub fn poll<T>(limit: Duration, every: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(every);
    }
}

// ---------------------------------------------------------------------------------------
// Raw HTTP
// ---------------------------------------------------------------------------------------

/// A parsed HTTP/1.1 response.
#[derive(Clone, Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// `status, x-dfs-error, x-dfs-detail and body` for messages.
    pub fn describe(&self) -> String {
        format!(
            "{} {}={:?} {}={:?} body={:?}",
            self.status,
            HDR_ERROR,
            self.header(HDR_ERROR),
            HDR_DETAIL,
            self.header(HDR_DETAIL),
            String::from_utf8_lossy(&self.body[..self.body.len().min(300)])
        )
    }
}

/// Connects to `addr` with bounded connect/read/write times.
pub fn connect(addr: &str, io_timeout: Duration) -> io::Result<TcpStream> {
    let sa = addr
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{addr}: {e}")))?;
    let s = TcpStream::connect_timeout(&sa, Duration::from_secs(5))?;
    s.set_read_timeout(Some(io_timeout))?;
    s.set_write_timeout(Some(io_timeout))?;
    Ok(s)
}

/// Sends `request` as it is, then reads and parses one response.
pub fn http_raw(addr: &str, request: &[u8]) -> io::Result<HttpResponse> {
    let mut s = connect(addr, Duration::from_secs(30))?;
    s.write_all(request)?;
    read_response(&mut s)
}

/// Sends a request with `Host`, `Content-Length` and `Connection: close` added to
/// `headers`, and reads the response.
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<HttpResponse> {
    let mut req = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    if !headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        && (!body.is_empty() || method == "POST" || method == "PUT")
    {
        req.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    http_raw(addr, &bytes)
}

/// Reads one HTTP/1.1 response (content-length, chunked, or to end of stream).
pub fn read_response(s: &mut impl Read) -> io::Result<HttpResponse> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i;
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "connection closed before a full response head ({} bytes: {:?})",
                    buf.len(),
                    String::from_utf8_lossy(&buf)
                ),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut rest = buf[head_end + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad status line {status_line:?}"),
            )
        })?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| {
            let (n, v) = l.split_once(':')?;
            Some((n.trim().to_ascii_lowercase(), v.trim().to_string()))
        })
        .collect();
    let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let body = if status == 204 || status == 304 || (100..200).contains(&status) {
        Vec::new()
    } else if get("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
        read_chunked(s, rest)?
    } else if let Some(len) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        while rest.len() < len {
            let n = s.read(&mut chunk)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("body ended after {} of {len} bytes", rest.len()),
                ));
            }
            rest.extend_from_slice(&chunk[..n]);
        }
        rest.truncate(len);
        rest
    } else {
        s.read_to_end(&mut rest)?;
        rest
    };
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

fn read_chunked(s: &mut impl Read, mut buf: Vec<u8>) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut chunk = [0u8; 8192];
    let mut fill = |buf: &mut Vec<u8>| -> io::Result<()> {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "chunked body ended early",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        Ok(())
    };
    loop {
        let line_end = loop {
            if let Some(i) = find(&buf, b"\r\n") {
                break i;
            }
            fill(&mut buf)?;
        };
        let size_text = String::from_utf8_lossy(&buf[..line_end]).into_owned();
        let size_text = size_text.split(';').next().unwrap_or("").trim().to_string();
        let size = usize::from_str_radix(&size_text, 16).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad chunk size {size_text:?}"),
            )
        })?;
        buf.drain(..line_end + 2);
        if size == 0 {
            return Ok(out);
        }
        while buf.len() < size + 2 {
            fill(&mut buf)?;
        }
        out.extend_from_slice(&buf[..size]);
        buf.drain(..size + 2);
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The client id the tests use on direct requests.
pub const TEST_CLIENT: &str = "4242424242";

/// One `POST /v1/dir` call: `Ok(reply)` on 200, else the response.
pub fn dir_call(addr: &str, req: &DirRequest) -> Result<DirReply, HttpResponse> {
    let body = codec::encode(req);
    let r = http(addr, "POST", "/v1/dir", &[(HDR_CLIENT, TEST_CLIENT)], &body)
        .unwrap_or_else(|e| panic!("POST /v1/dir {req:?} to {addr}: {e}"));
    if r.status != 200 {
        return Err(r);
    }
    Ok(codec::decode(&r.body)
        .unwrap_or_else(|e| panic!("undecodable DirReply to {req:?}: {e}: {}", r.describe())))
}

/// Looks up a `/`-separated path from the root over HTTP; `None` if a part is missing.
pub fn lookup_path(addr: &str, path: &str) -> Option<Attr> {
    let mut ino = ROOT_INO;
    let mut attr = None;
    for part in path.split('/').filter(|p| !p.is_empty()) {
        match dir_call(
            addr,
            &DirRequest::Lookup {
                parent: ino,
                name: part.as_bytes().to_vec(),
            },
        ) {
            Ok(DirReply::Attr(a)) => {
                ino = a.ino;
                attr = Some(a);
            }
            Ok(other) => panic!("Lookup answered {other:?}"),
            Err(r) if r.status == 404 => return None,
            Err(r) => panic!("Lookup {part:?} failed: {}", r.describe()),
        }
    }
    attr
}

/// `GET /v1/files/{ino}`.
pub fn fetch(addr: &str, ino: u64) -> io::Result<HttpResponse> {
    http(
        addr,
        "GET",
        &format!("/v1/files/{ino}"),
        &[(HDR_CLIENT, TEST_CLIENT)],
        b"",
    )
}

/// The contents of the regular file at `path` as the server holds them, or `None` if it
/// does not exist (or the server does not answer).
pub fn fetch_path(addr: &str, path: &str) -> Option<Vec<u8>> {
    let attr = lookup_path(addr, path)?;
    assert_eq!(attr.kind, FileKind::File, "{path} is not a regular file");
    let r = fetch(addr, attr.ino).ok()?;
    assert_eq!(r.status, 200, "fetch {path}: {}", r.describe());
    Some(r.body)
}

/// Decodes the `x-dfs-attr` header of a fetch answer.
pub fn attr_of(r: &HttpResponse) -> Option<Attr> {
    codec::from_header(r.header(HDR_ATTR)?).ok()
}

/// Is the server at `addr` answering `GET /v1/health` with 200?
pub fn healthy(addr: &str) -> bool {
    matches!(http(addr, "GET", "/v1/health", &[], b""), Ok(r) if r.status == 200)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_and_fields() {
        let text = "36 35 98:0 / /mnt/a\\040b rw,noatime shared:1 - fuse dfs rw\n\
                    37 35 98:0 / /mnt/c rw - ext4 /dev/vda rw\n";
        assert_eq!(
            parse_mountinfo(text, b"/mnt/a b"),
            vec![(36, "fuse".to_string())]
        );
        assert!(parse_mountinfo(text, b"/mnt/a").is_empty());
    }

    #[test]
    fn responses_parse_with_length_chunked_and_eof() {
        let mut r: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-A: b\r\n\r\nabcdef";
        let resp = read_response(&mut r).unwrap();
        assert_eq!((resp.status, resp.body.as_slice()), (200, &b"abc"[..]));
        assert_eq!(resp.header("x-a"), Some("b"));
        let mut r: &[u8] =
            b"HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2;x\r\nde\r\n0\r\n\r\n";
        let resp = read_response(&mut r).unwrap();
        assert_eq!((resp.status, resp.body.as_slice()), (404, &b"abcde"[..]));
        let mut r: &[u8] = b"HTTP/1.1 400 Bad\r\n\r\nrest";
        assert_eq!(read_response(&mut r).unwrap().body, b"rest");
    }

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

    #[test]
    #[should_panic(expected = "no answer within")]
    fn timed_gives_up() {
        timed("sleep", Duration::from_millis(100), || {
            thread::sleep(Duration::from_secs(2))
        });
    }

    #[test]
    fn pseudo_random_is_deterministic_and_sized() {
        assert_eq!(pseudo_random(13, 1), pseudo_random(13, 1));
        assert_ne!(pseudo_random(64, 1), pseudo_random(64, 2));
        assert_eq!(pseudo_random(1001, 3).len(), 1001);
    }
}
