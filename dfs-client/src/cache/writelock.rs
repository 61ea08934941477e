//! The writers' turn: an open for writing takes the file's `Open` lock (bounded wait) and
//! the last writer's close gives it back once the file is stored, batched with the other
//! locks given back within a few milliseconds. Must not store.

use super::error::CacheError;
use super::files::OPEN_OWNER;
use super::locks::label_for;
use super::nodes::FileNode;
use super::CacheManager;
use crate::port::Who;
use dfs_common::locks::{LockClass, LockRequest, ReleaseReply, ReleaseRequest};
use dfs_common::{FsError, Ino};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// How long a given-back writers' lock waits for others to go in the same request.
const RELEASE_BATCH_DELAY: Duration = Duration::from_millis(10);
/// Most releases in one request (the server takes up to 4096).
const RELEASE_BATCH_MAX: usize = 1024;

/// The request for this client's writers' lock on `ino`, named after the local user who
/// takes it (uid 65534, nobody's, for nobody).
pub(super) fn open_lock_request(ino: Ino, who: &Who) -> LockRequest {
    LockRequest::writers_turn(ino, label_for(who.uid().unwrap_or(65534)))
}

impl CacheManager {
    /// Takes the writers' lock of `node` for this client unless it already holds it.
    /// Afterwards the cached attributes are not trusted: the previous writer's store may
    /// have landed just before the grant, its break still on the way.
    pub(super) async fn take_open_lock(
        &self,
        who: &Who,
        node: &FileNode,
    ) -> Result<(), CacheError> {
        let _grant = node.grant.lock().await;
        if node.state().fence().is_some() {
            return Ok(());
        }
        let req = open_lock_request(node.ino, who);
        match self.lock_acquire(who, req, self.lock_wait).await {
            Ok(token) => {
                node.state().lock_granted(token);
                self.meta.lock().unwrap().forget_ino(node.ino);
                // The kernel may hold a size from before the previous writer's store.
                self.invalidate(super::Invalidation::Inode(node.ino));
                Ok(())
            }
            Err(CacheError::Fs(FsError::Unavailable(why))) => {
                log::warn!(
                    "inode {}: lock service unreachable ({why}); writing without the write lock",
                    node.ino
                );
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Gives back the writers' lock once nobody here writes and nothing is unstored. It is
    /// queued and goes with the others given back within `RELEASE_BATCH_DELAY`, in one
    /// request (`run_release_batches`): a create-write-close loop then makes two requests
    /// per file, not three. Until it goes, a new writer here keeps the lock as it is.
    pub(super) fn release_open_lock_later(&self, node: &Arc<FileNode>) {
        {
            let l = node.state();
            if !l.lock_releasable() || l.fence().is_none() {
                return;
            }
        }
        self.releases.lock().unwrap().push(node.clone());
        self.release_due.notify_one();
    }

    /// Sends the queued releases. Each file's `grant` mutex is held from the decision to
    /// the server's answer, so no new grant here can cross its release; a file written
    /// again meanwhile keeps its lock.
    pub(crate) async fn send_queued_releases(&self, who: &Who) {
        let nodes = std::mem::take(&mut *self.releases.lock().unwrap());
        let mut seen = HashSet::new();
        let mut guards = Vec::new();
        let mut reqs = Vec::new();
        for node in &nodes {
            if !seen.insert(node.ino) {
                continue;
            }
            let guard = node.grant.lock().await;
            let token = node.state().lock_given_back();
            if token.is_some() {
                reqs.push(ReleaseRequest {
                    ino: node.ino,
                    class: LockClass::Open,
                    owner: OPEN_OWNER,
                    range: None,
                });
                guards.push(guard);
            }
        }
        for batch in reqs.chunks(RELEASE_BATCH_MAX) {
            let sent: Result<ReleaseReply, CacheError> = self
                .server
                .lock_release_many(who, batch)
                .await
                .map_err(CacheError::from);
            match sent {
                Ok(_) => {}
                // A server from before `release-many` has no such resource (ENOENT; this
                // one never answers that, a lock already gone counts nothing): one
                // request each.
                Err(CacheError::Fs(FsError::NotFound)) => {
                    for req in batch {
                        let one = self.server.lock_release(who, req).await;
                        if let Err(e) = one {
                            log::debug!("inode {}: write lock release: {e}", req.ino);
                        }
                    }
                }
                Err(e) => log::debug!(
                    "{} write lock releases: {e} (their leases end them)",
                    batch.len()
                ),
            }
        }
        drop(guards);
    }

    /// The lock service says our writers' lock of `ino`, granted with `token`, is gone.
    /// Returns false when we no longer held that grant anyway (given back, or taken again,
    /// while the renewal that reported it was on its way).
    pub(crate) fn forget_open_lock(&self, ino: Ino, token: u64) -> bool {
        self.node_if_any(ino)
            .is_some_and(|node| node.state().lock_lost(token))
    }
}

/// Sends the releases `release_open_lock_later` queues, `RELEASE_BATCH_DELAY` after the
/// first of a batch.
pub async fn run_release_batches(mgr: Arc<CacheManager>) {
    loop {
        mgr.release_due.notified().await;
        tokio::time::sleep(RELEASE_BATCH_DELAY).await;
        // The locks are this client's, not a user's: given back as nobody.
        mgr.send_queued_releases(&Who::ANONYMOUS).await;
    }
}
