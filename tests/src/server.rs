//! A real `dfs-server` process for a test: start (waiting for `/v1/health`), stop, kill -9,
//! restart on the same data dir, address and port, and its log. It listens on 127.0.0.1
//! unless started with `start_at` (cluster nodes each get their own loopback address).
//!
//! Must not leave the process behind: `Drop` kills it (and prints the log tail when the
//! test panics).

use crate::http::http;
use crate::procs::{bin, log_tail, open_log, signal, spawn_logged, wait_bounded, START_TIMEOUT};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::thread;
use std::time::{Duration, Instant};

/// A running `dfs-server` on `ip`:`port` (127.0.0.1 unless `start_at`) with its data in
/// `data_dir`.
pub struct Server {
    child: Option<Child>,
    data_dir: PathBuf,
    ip: String,
    port: u16,
    extra: Vec<String>,
    log: PathBuf,
}

impl Server {
    /// Starts the server and waits (bounded) until `GET /v1/health` answers 200. The log
    /// goes to `<parent of data_dir>/server-<port>.log`.
    pub fn start(data_dir: &Path, port: u16, extra: &[&str]) -> Server {
        Server::start_at("127.0.0.1", data_dir, port, extra)
    }

    /// `start` listening on `ip` (any 127.x.y.z works without set-up on Linux).
    pub fn start_at(ip: &str, data_dir: &Path, port: u16, extra: &[&str]) -> Server {
        fs::create_dir_all(data_dir).expect("create data dir");
        let parent = data_dir.parent().unwrap_or(data_dir);
        let log = parent.join(format!("server-{port}.log"));
        let mut s = Server {
            child: None,
            data_dir: data_dir.to_path_buf(),
            ip: ip.to_string(),
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

    /// `IP:PORT` (`127.0.0.1:PORT` unless started with `start_at`).
    pub fn addr(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }

    pub fn ip(&self) -> &str {
        &self.ip
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
