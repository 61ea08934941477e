//! The common set-up: one server and one mount in a fresh temporary directory.

use crate::mount::Mount;
use crate::procs::free_port;
use crate::server::Server;
use std::fs;
use std::path::{Path, PathBuf};

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
