//! A node's services opened in process on a data dir, without HTTP or the binary, for
//! tests: this crate's unit tests, `tests/crash.rs`, and dfs-client's in-memory server
//! (feature `testing` there turns on feature `testing` here). What differs between them
//! is an option: the lock lease, the GC grace, the epoch, and whether the blob journal is
//! replayed as a starting server replays it.
//!
//! Owns: `open_services` and `TestOptions`. Must not be used by the binary (it is compiled
//! only for tests and under feature `testing`).

use crate::blobs::{journal, BlobStore};
use crate::callbacks::Registry;
use crate::lock::{LockConfig, LockService};
use crate::namespace::Namespace;
use crate::services::{Services, Settings};
use dfs_common::Timestamp;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// How `open_services` opens a node.
#[derive(Clone, Debug)]
pub struct TestOptions {
    /// The lock service's lease.
    pub lease: Duration,
    /// `Settings::gc_grace_secs`.
    pub gc_grace_secs: u64,
    /// The callback registry's epoch.
    pub epoch: u64,
    /// Replay the blob journal into the namespace after opening, as `dfs-server` does at
    /// start.
    pub replay_journal: bool,
}

impl Default for TestOptions {
    /// Leases of 15 s, a GC grace of 300 s, epoch 1, no replay.
    fn default() -> TestOptions {
        TestOptions {
            lease: Duration::from_secs(15),
            gc_grace_secs: 300,
            epoch: 1,
            replay_journal: false,
        }
    }
}

/// The services of a node whose data is in `dir` (a new root has mode 1777): namespace,
/// blob store, lock service (pool of 16, waits of at most 5 s), callback registry, files
/// up to 1 GiB. Panics if any of them cannot be opened.
pub fn open_services(dir: &Path, opts: &TestOptions) -> Arc<Services> {
    let ns = Namespace::open(&dir.join("meta.redb"), 0o1777, Timestamp::now())
        .unwrap_or_else(|e| panic!("namespace in {}: {e}", dir.display()));
    let blobs = BlobStore::open(dir).unwrap_or_else(|e| panic!("blob store: {e}"));
    let (ns, blobs) = (Arc::new(ns), Arc::new(blobs));
    if opts.replay_journal {
        journal::replay(&blobs, &ns).unwrap_or_else(|e| panic!("journal replay: {e}"));
    }
    let config = LockConfig {
        pool_size: 16,
        lease: opts.lease,
        max_wait: Duration::from_secs(5),
    };
    let locks = LockService::open(&dir.join("locks.redb"), config)
        .unwrap_or_else(|e| panic!("lock service: {e}"));
    let settings = Settings {
        data_dir: dir.to_path_buf(),
        gc_grace_secs: opts.gc_grace_secs,
        max_file_size: 1 << 30,
    };
    let registry = Arc::new(Registry::new(opts.epoch));
    Services::new(ns, blobs, registry, locks, settings).unwrap_or_else(|e| panic!("services: {e}"))
}
