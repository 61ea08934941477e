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

impl Server for Arc<CellPort> {
    fn client_id(&self) -> u64 {
        (**self).client_id()
    }
    fn signs(&self) -> bool {
        (**self).signs()
    }
    fn dir<'a>(&'a self, req: &'a DirRequest) -> BoxFuture<'a, Result<DirReply, PortError>> {
        (**self).dir(req)
    }
    fn fetch<'a>(
        &'a self,
        ino: Ino,
        have: Option<u64>,
        dest: &'a Path,
        progress: Option<Arc<dyn FetchProgress>>,
    ) -> BoxFuture<'a, Result<Fetched, PortError>> {
        (**self).fetch(ino, have, dest, progress)
    }
    fn store<'a>(
        &'a self,
        ino: Ino,
        src: &'a Path,
        fence: Option<u64>,
        mode: Option<u32>,
        kill_suid: bool,
    ) -> BoxFuture<'a, Result<Attr, PortError>> {
        (**self).store(ino, src, fence, mode, kill_suid)
    }
    fn store_streamed(
        &self,
        ino: Ino,
        body: Body,
        fence: Option<u64>,
        kill_suid: bool,
    ) -> BoxFuture<'_, Result<Attr, PortError>> {
        (**self).store_streamed(ino, body, fence, kill_suid)
    }
    fn lock_acquire<'a>(
        &'a self,
        req: &'a LockRequest,
        extra: Duration,
    ) -> BoxFuture<'a, Result<LockReply, PortError>> {
        (**self).lock_acquire(req, extra)
    }
    fn lock_release<'a>(
        &'a self,
        req: &'a ReleaseRequest,
    ) -> BoxFuture<'a, Result<ReleaseReply, PortError>> {
        (**self).lock_release(req)
    }
    fn lock_release_many<'a>(
        &'a self,
        reqs: &'a [ReleaseRequest],
    ) -> BoxFuture<'a, Result<ReleaseReply, PortError>> {
        (**self).lock_release_many(reqs)
    }
    fn lock_test<'a>(
        &'a self,
        req: &'a LockRequest,
    ) -> BoxFuture<'a, Result<TestReply, PortError>> {
        (**self).lock_test(req)
    }
    fn lock_list<'a>(
        &'a self,
        req: &'a ListRequest,
    ) -> BoxFuture<'a, Result<Vec<LockInfo>, PortError>> {
        (**self).lock_list(req)
    }
    fn lock_renew<'a>(
        &'a self,
        req: &'a RenewRequest,
    ) -> BoxFuture<'a, Result<RenewReply, PortError>> {
        (**self).lock_renew(req)
    }
    fn callbacks(&self) -> BoxFuture<'_, Result<CallbackStream, PortError>> {
        (**self).callbacks()
    }
}

use crate::port::{Body, BoxFuture, CallbackStream, FetchProgress, Fetched, PortError, Server};
use dfs_common::locks::{
    ListRequest, LockInfo, LockReply, LockRequest, ReleaseReply, ReleaseRequest, RenewReply,
    RenewRequest, TestReply,
};
use dfs_common::proto::{DirReply, DirRequest};
use dfs_common::{Attr, Ino};
use std::path::Path;

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
