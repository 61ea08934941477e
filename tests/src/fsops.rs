//! Bounded file-system operations: each runs on a helper thread and fails the test if it
//! does not answer in time, so a hung FUSE operation fails instead of hanging CI.

use std::fs;
use std::io;
use std::path::Path;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// Default bound of one file-system operation run by `op`.
pub const OP_TIMEOUT: Duration = Duration::from_secs(60);

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "no answer within")]
    fn timed_gives_up() {
        timed("sleep", Duration::from_millis(100), || {
            thread::sleep(Duration::from_secs(2))
        });
    }
}
