//! Detaching a mount helper from the terminal the way mount(8) expects: the process forks
//! before any thread exists; the parent waits on a pipe until the child says "mounted"
//! (exit 0) or why it could not mount (printed on the terminal, exit 1), so errors are
//! never lost in a log nobody reads; the child starts a new session and carries on as
//! the daemon, its standard streams on /dev/null.
//!
//! Owns: fork, the status pipe, setsid and the standard streams. Must not mount anything
//! or open the log (the caller does, after `detach`).

use nix::unistd::{fork, setsid, ForkResult};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;

/// The daemon's end of the status pipe: say how the mount went, once.
pub struct StatusPipe(Option<File>);

impl StatusPipe {
    /// The file system is mounted: the waiting parent exits 0.
    pub fn mounted(&mut self) {
        if let Some(mut f) = self.0.take() {
            let _ = f.write_all(b"mounted\n");
        }
    }

    /// Mounting failed: the waiting parent prints `why` and exits 1.
    pub fn failed(&mut self, why: &str) {
        if let Some(mut f) = self.0.take() {
            let _ = f.write_all(format!("error: {why}\n").as_bytes());
        }
    }

    /// A status pipe of a process that did not detach: says nothing.
    pub fn none() -> StatusPipe {
        StatusPipe(None)
    }
}

/// Forks. Returns in the child (the daemon to be) with its status pipe; the parent never
/// returns: it exits with the child's verdict. Must be called before any thread starts.
pub fn detach() -> Result<StatusPipe, String> {
    let (read_end, write_end) = nix::unistd::pipe().map_err(|e| format!("pipe: {e}"))?;
    // SAFETY: called from main before any other thread exists (no runtime, no logger
    // thread), so the child may run anything.
    match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Parent { .. } => {
            drop(write_end);
            std::process::exit(wait_for_verdict(read_end))
        }
        ForkResult::Child => {
            drop(read_end);
            setsid().map_err(|e| format!("setsid: {e}"))?;
            let _ = std::env::set_current_dir("/");
            let null = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")
                .map_err(|e| format!("/dev/null: {e}"))?;
            nix::unistd::dup2_stdin(&null).map_err(|e| format!("dup2: {e}"))?;
            nix::unistd::dup2_stdout(&null).map_err(|e| format!("dup2: {e}"))?;
            nix::unistd::dup2_stderr(&null).map_err(|e| format!("dup2: {e}"))?;
            Ok(StatusPipe(Some(File::from(write_end))))
        }
    }
}

/// The parent's side: reads the child's verdict (EOF without one: it died).
fn wait_for_verdict(read_end: OwnedFd) -> i32 {
    let mut said = String::new();
    let _ = File::from(read_end).read_to_string(&mut said);
    match said.lines().next() {
        Some("mounted") => 0,
        Some(line) => {
            eprintln!(
                "dfs-mount: {}",
                line.strip_prefix("error: ").unwrap_or(line)
            );
            1
        }
        None => {
            eprintln!("dfs-mount: the daemon exited before mounting (see its log)");
            1
        }
    }
}
