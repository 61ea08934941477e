//! A real FUSE mount (`dfs-mount`) for a test: start (waiting until the new mount answers),
//! stop, kill -9, restart, plus /proc/self/mountinfo parsing and lazy unmounting.
//!
//! Must not leave a mount behind: `Drop` stops the client and detaches whatever is still
//! mounted at the mount point (also a stale mount of a killed client).

use crate::fsops::timed;
use crate::procs::{bin, log_tail, open_log, signal, spawn_logged, wait_bounded, START_TIMEOUT};
use std::ffi::CString;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::thread;
use std::time::{Duration, Instant};

/// `(mount id, fstype)` of every mount whose mount point is exactly `path`, oldest first.
pub fn mounts_at(path: &Path) -> Vec<(u64, String)> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    mounts_in(&text, path)
}

fn mounts_in(text: &str, path: &Path) -> Vec<(u64, String)> {
    dfs_common::mountinfo::parse(text)
        .into_iter()
        .filter(|m| m.mount_point == path)
        .map(|m| (m.id, m.fstype))
        .collect()
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
                // the directory always asks the daemon. In a realm that admits no
                // anonymous callers, a live daemon answers EACCES to a user who has not
                // logged in (a dead mount answers ENOTCONN).
                match (fs::read_dir(&mp), fs::metadata(&mp), parent) {
                    (Ok(_), Ok(m), Some(p)) => m.dev() != p.dev(),
                    (Err(e), _, _) => e.kind() == std::io::ErrorKind::PermissionDenied,
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

    /// Where this mount's `dfs-mount` serves the `dfs` command: `/run/dfs/<mount point with
    /// every / as _>.sock`.
    pub fn control_socket(&self) -> PathBuf {
        let name = self.mountpoint.to_string_lossy().replace('/', "_");
        PathBuf::from("/run/dfs").join(format!("{name}.sock"))
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
        // A killed client cannot remove its control socket; do it for it.
        let _ = fs::remove_file(self.control_socket());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_and_fields() {
        let text = "36 35 98:0 / /mnt/a\\040b rw,noatime shared:1 - fuse dfs rw\n\
                    37 35 98:0 / /mnt/c rw - ext4 /dev/vda rw\n";
        assert_eq!(
            mounts_in(text, Path::new("/mnt/a b")),
            vec![(36, "fuse".to_string())]
        );
        assert!(mounts_in(text, Path::new("/mnt/a")).is_empty());
    }
}
