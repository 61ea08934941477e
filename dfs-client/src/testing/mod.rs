//! Test doubles of the cache's port (feature `testing`): `server` is the real server's
//! services in memory, `faults` a port that injects failures into another. The cache's
//! unit tests (`cache/tests/`) run on them, as any user, without a mount.
//!
//! Owns: the doubles and `Harness`, a cache manager on them. Must not be used outside
//! tests.

mod faults;
mod server;

pub use faults::{Calls, Faulty};
pub use server::{CellPort, TestCell};

use crate::cache::{CacheManager, CacheOptions};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A cache manager on a client of `cell`, through a fault-injecting port, with its
/// callback channel and lock release batches running.
pub struct Harness {
    pub mgr: Arc<CacheManager>,
    pub port: Arc<Faulty<Arc<CellPort>>>,
    _cache: tempfile::TempDir,
}

impl Harness {
    /// A new client of `cell` with a cache manager, its callback channel up.
    pub async fn new(cell: &Arc<TestCell>) -> Harness {
        let port = Arc::new(Faulty::new(cell.client()));
        let cache = tempfile::tempdir().expect("cache dir");
        let opts = CacheOptions {
            lock_wait: Duration::from_millis(300),
            ..CacheOptions::default()
        };
        let mgr = CacheManager::with_server(port.clone(), cache.path(), opts).expect("manager");
        tokio::spawn(crate::callbacks::run_channel(mgr.clone()));
        tokio::spawn(crate::cache::writelock::run_release_batches(mgr.clone()));
        let h = Harness {
            mgr,
            port,
            _cache: cache,
        };
        h.until("the callback channel is up", |h| h.channel_up())
            .await;
        h
    }

    pub fn channel_up(&self) -> bool {
        self.mgr.status("").callback_channel_up
    }

    /// Waits (at most 5 s) until `cond` holds; panics naming `what` otherwise.
    pub async fn until(&self, what: &str, cond: impl Fn(&Harness) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !cond(self) {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}
