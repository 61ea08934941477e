//! The writers' turn: an open for writing takes the file's `Open` lock (bounded wait) and
//! the last writer's close gives it back once the file is stored. Must not store.

use super::files::{FileNode, OPEN_OWNER};
use super::locks::label_for;
use super::CacheManager;
use dfs_common::locks::{LockClass, LockRequest, ReleaseRequest};
use dfs_common::{FsError, Ino};
use std::sync::Arc;

/// The request for this client's writers' lock on `ino`, named after `uid`.
pub(super) fn open_lock_request(ino: Ino, uid: u32) -> LockRequest {
    LockRequest::writers_turn(ino, label_for(uid))
}

impl CacheManager {
    /// Takes the writers' lock of `node` for this client unless it already holds it.
    /// Afterwards the cached attributes are not trusted: the previous writer's store may
    /// have landed just before the grant, its break still on the way.
    pub(super) async fn take_open_lock(&self, node: &FileNode, uid: u32) -> Result<(), FsError> {
        let _grant = node.grant.lock().await;
        if node.local.lock().unwrap().fence.is_some() {
            return Ok(());
        }
        let req = open_lock_request(node.ino, uid);
        match self.lock_acquire(req, self.lock_wait).await {
            Ok(token) => {
                node.local.lock().unwrap().fence = Some(token);
                self.meta.lock().unwrap().forget_ino(node.ino);
                // The kernel may hold a size from before the previous writer's store.
                self.invalidate(super::Invalidation::Inode(node.ino));
                Ok(())
            }
            Err(FsError::Unavailable(why)) => {
                log::warn!(
                    "inode {}: lock service unreachable ({why}); writing without the write lock",
                    node.ino
                );
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Gives back the writers' lock once nobody here writes and nothing is unstored.
    pub(super) fn release_open_lock_later(&self, node: &Arc<FileNode>) {
        {
            let l = node.local.lock().unwrap();
            if l.writers > 0 || l.dirty || l.fence.is_none() {
                return;
            }
        }
        let node = node.clone();
        let remote = self.remote.clone();
        self.rt.spawn(async move {
            let _grant = node.grant.lock().await;
            let token = {
                let mut l = node.local.lock().unwrap();
                if l.writers == 0 && !l.dirty {
                    l.fence.take()
                } else {
                    None
                }
            };
            if token.is_some() {
                let req = ReleaseRequest {
                    ino: node.ino,
                    class: LockClass::Open,
                    owner: OPEN_OWNER,
                    range: None,
                };
                let released: Result<dfs_common::locks::ReleaseReply, _> = remote
                    .call("/v1/locks/release", &req, std::time::Duration::ZERO)
                    .await;
                if let Err(e) = released {
                    log::debug!(
                        "inode {}: write lock release: {e} (the lease ends it)",
                        node.ino
                    );
                }
            }
        });
    }

    /// Inodes whose writers' lock this client holds (for lease renewal).
    pub(crate) fn open_locks(&self) -> Vec<Ino> {
        self.nodes
            .lock()
            .unwrap()
            .values()
            .filter(|n| n.local.lock().unwrap().fence.is_some())
            .map(|n| n.ino)
            .collect()
    }

    /// The lock service says our writers' lock of `ino` is gone.
    pub(crate) fn forget_open_lock(&self, ino: Ino) {
        if let Some(node) = self.nodes.lock().unwrap().get(&ino) {
            node.local.lock().unwrap().fence = None;
        }
    }
}
