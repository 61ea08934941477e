//! Creating a file and opening it in one request (`CreateOpen`: the create brings the
//! writers' lock), and the state of a create the server has not made durable yet: its
//! close must store (even an empty file), and a plain chmod before that store travels
//! with it. Must not store or fetch contents.

use super::disk::CacheEntry;
use super::error::CacheError;
use super::files::OpenResult;
use super::CacheManager;
use crate::port::Who;
use dfs_common::{FsError, Ino};
use std::sync::atomic::Ordering;

impl CacheManager {
    /// Creates `name` in `parent` and opens it (O_CREAT; O_EXCL honoured).
    pub async fn create(
        &self,
        who: &Who,
        parent: Ino,
        name: &[u8],
        creator: super::Creator,
        flags: i32,
    ) -> Result<(dfs_common::Attr, OpenResult), CacheError> {
        let super::Creator {
            mode,
            umask,
            uid,
            gid,
        } = creator;
        if name.len() > dfs_common::types::NAME_MAX {
            return Err(FsError::NameTooLong.into());
        }
        let t = self.ticket();
        let writable = flags & libc::O_ACCMODE != libc::O_RDONLY;
        // A writer's create brings the file's write lock with it (one round trip).
        let req = dfs_common::proto::DirRequest::CreateOpen {
            parent,
            name: name.to_vec(),
            mode: mode & 0o7777,
            umask,
            uid,
            gid,
            exclusive: flags & libc::O_EXCL != 0,
            label: super::locks::label_for(uid),
            store_at_close: writable,
        };
        let (attr, lock, durable, parent_attr) = match self.dir_call(who, &req).await? {
            dfs_common::proto::DirReply::Created {
                attr,
                lock,
                durable,
                parent,
            } => (attr, lock, durable, parent),
            _ => return Err(FsError::Io("unexpected answer to create".into()).into()),
        };
        self.remember_attr(&attr, t);
        if let Some(lock) = lock {
            self.lease_ms
                .store(lock.lease_ms.max(1000), Ordering::Relaxed);
            let node = self.node(attr.ino);
            let _grant = node.grant.lock().await;
            node.state().lock_granted(lock.token);
            if !writable {
                drop(_grant);
                self.release_open_lock_later(&node);
            }
        }
        self.added_entry(parent, name, &attr, t);
        self.remember_attr(&parent_attr, t);
        self.created_without_xattrs(who, parent, attr.ino, t).await;
        if attr.size == 0 && self.disk.get(attr.ino).is_none() {
            // A new empty file needs no fetch: its copy is an empty local file.
            let path = self.disk.path(attr.ino, attr.version);
            dfs_common::private_files::create(&path)?;
            self.disk.put(
                attr.ino,
                CacheEntry {
                    version: attr.version,
                    size: 0,
                    dirty: false,
                    mtime_ns: 0,
                },
            )?;
        }
        let opened = self.open(who, attr.ino, flags).await?;
        if !durable {
            // The server made the file durable only with our store: close must store it
            // even if nothing is written.
            let node = self.node(attr.ino);
            let mark = node.state().created_unsynced();
            self.mark_dirty_in_index(attr.ino, mark, attr.size)?;
        }
        let attr = self.overlay(attr);
        Ok((attr, opened))
    }

    /// We removed a name of `ino`: if its store finds it gone, that is why (not a crash
    /// of the server that forgot our create).
    pub(super) fn unlinked_by_us(&self, ino: Ino) {
        if let Some(node) = self.node_if_any(ino) {
            node.state().unlinked_by_us();
        }
    }

    /// Whether `ino` was created by us with a create the server has not made durable yet
    /// (our store at close will).
    pub(super) fn unsynced_create(&self, ino: Ino) -> bool {
        self.node_if_any(ino)
            .is_some_and(|n| n.state().unsynced_create())
    }

    /// Keeps `mode` to be sent with the next store of `ino`, if that store is of our own
    /// create, not durable yet; false (the caller sends it now) otherwise.
    pub(super) fn hold_mode_for_store(&self, ino: Ino, mode: u32) -> bool {
        self.node_if_any(ino)
            .is_some_and(|n| n.state().hold_mode(mode))
    }
}
