//! Two mounts of one server, each with its own cache (the set-up of the tests of what a
//! second mount sees), and a bounded poll for a change to show on the second one.

use crate::mount::Mount;
use crate::procs::free_port;
use crate::server::Server;
use std::fmt::Debug;
use std::thread;
use std::time::{Duration, Instant};

/// A server and mounts `a` and `b` (`tmp/mnt-a`, `tmp/mnt-b`, caches `tmp/cache-a`, …),
/// plus `tmp/local`, scratch space off the mounts. Dropped in that order: mounts, server,
/// directory.
pub struct Pair {
    pub a: Mount,
    pub b: Mount,
    pub server: Server,
    pub tmp: tempfile::TempDir,
}

impl Pair {
    pub fn new() -> Pair {
        Pair::with(&[], &[])
    }

    /// With `server_args` for the server and `mount_args` for both mounts.
    pub fn with(server_args: &[&str], mount_args: &[&str]) -> Pair {
        let tmp = tempfile::TempDir::new().expect("tempdir");
        std::fs::create_dir_all(tmp.path().join("local")).expect("local dir");
        let server = Server::start(&tmp.path().join("data"), free_port(), server_args);
        let mount = |name: &str| {
            Mount::start(
                &server.addr(),
                &tmp.path().join(format!("mnt-{name}")),
                &tmp.path().join(format!("cache-{name}")),
                mount_args,
            )
        };
        let (a, b) = (mount("a"), mount("b"));
        Pair { a, b, server, tmp }
    }
}

impl Default for Pair {
    fn default() -> Self {
        Pair::new()
    }
}

/// Polls `probe` every 10 ms until it returns `want`, for at most `limit` from `since`;
/// `Err` names what it saw last. Returns how long it took.
pub fn seen_within<T: PartialEq + Debug>(
    since: Instant,
    limit: Duration,
    want: &T,
    mut probe: impl FnMut() -> T,
) -> Result<Duration, String> {
    loop {
        let got = probe();
        if got == *want {
            return Ok(since.elapsed());
        }
        if since.elapsed() > limit {
            return Err(format!(
                "after {:?} still {got:?}, want {want:?}",
                since.elapsed()
            ));
        }
        thread::sleep(Duration::from_millis(10));
    }
}
