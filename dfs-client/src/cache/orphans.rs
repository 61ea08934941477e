//! Open-unlinked files. An inode the server no longer has (its last name unlinked, or
//! replaced by a rename, on this mount or another) stays usable through the descriptors
//! opened before, as POSIX says: they read and write the cached copy, `fstat` shows it with
//! no links, and nothing is stored (there is nowhere to store it). Its copy leaves the
//! cache at once (the open descriptors keep the file alive, so the kernel frees its space
//! at the last close); a copy left by a file replaced on another mount while it was open
//! here is checked and dropped at its last close.
//!
//! Owns: when a file becomes an orphan (`FileState::orphaned`) and the attributes shown
//! for one. Must not store or fetch contents; it asks the server only whether an inode
//! still exists.

use super::error::CacheError;
use super::nodes::FileNode;
use super::CacheManager;
use crate::port::Who;
use dfs_common::proto::DirRequest;
use dfs_common::{Attr, FsError, Ino, Timestamp};
use std::sync::Arc;

impl CacheManager {
    /// What the open descriptors of `ino` see when the server no longer has it: the last
    /// attributes known, no links, the size and times of the copy. `None` unless `ino` is
    /// open here and known to be gone.
    pub(crate) fn orphan_attr(&self, ino: Ino) -> Option<Attr> {
        let node = self.node_if_any(ino)?;
        let l = node.state();
        if !l.is_orphaned() {
            return None;
        }
        let mut attr = l.last_attr()?.clone();
        attr.nlink = 0;
        if let Some(meta) = l.shared_file().and_then(|f| f.metadata().ok()) {
            use std::os::unix::fs::MetadataExt;
            attr.size = meta.len();
            if let Ok(m) = meta.modified() {
                attr.mtime = Timestamp::from_system(m);
            }
            let ctime = Timestamp {
                secs: meta.ctime(),
                nanos: meta.ctime_nsec() as u32,
            };
            attr.ctime = attr.ctime.max(ctime);
        }
        Some(attr)
    }

    /// The server answered that `ino` does not exist. If it is open here it becomes an
    /// orphan (see the module comment) and its attributes are returned; otherwise `None`
    /// and the caller reports `NotFound`.
    pub(crate) fn server_lost(&self, ino: Ino) -> Option<Attr> {
        let node = self.node_if_any(ino)?;
        if !self.make_orphan(&node) {
            return None;
        }
        self.orphan_attr(ino)
    }

    /// Marks `node` gone if it is open here; drops its cached copy (the descriptors keep
    /// the file). Returns whether it is open.
    pub(super) fn make_orphan(&self, node: &FileNode) -> bool {
        {
            let mut l = node.state();
            if l.opens().all == 0 {
                return false;
            }
            if l.is_orphaned() {
                return true;
            }
            l.orphaned(|| self.meta.lock().unwrap().attr(node.ino).map(|(a, _)| a));
        }
        log::info!(
            "inode {}: gone on the server; its open descriptors keep the local copy until closed",
            node.ino
        );
        self.meta.lock().unwrap().forget_ino(node.ino);
        if let Err(e) = self.disk.remove(node.ino) {
            log::warn!("inode {}: cache copy of a deleted file: {e}", node.ino);
        }
        true
    }

    /// The inode `name` in `dir` names as far as the caches know, with its link count
    /// (`u32::MAX` when the attributes are not cached).
    pub(super) fn named(&self, dir: Ino, name: &[u8]) -> Option<(Ino, u32)> {
        let mut meta = self.meta.lock().unwrap();
        let (ino, _) = meta.name(dir, name)?;
        let nlink = meta.attr(ino).map(|(a, _)| a.nlink).unwrap_or(u32::MAX);
        Some((ino, nlink))
    }

    /// We removed a name of `ino` (an unlink, or a rename over it), which had `nlink`
    /// names before: its attributes changed; if that was its last name and nobody here has
    /// it open, its cached copy is garbage now (an open one goes at its last close).
    pub(super) fn unlinked_here(&self, (ino, nlink): (Ino, u32)) {
        self.unlinked_by_us(ino);
        self.meta.lock().unwrap().forget_attr(ino);
        if nlink <= 1 && !self.in_use(ino) {
            if let Err(e) = self.disk.remove(ino) {
                log::warn!("inode {ino}: cache copy of a deleted file: {e}");
            }
        }
    }

    /// Called at the last close of `node`: if its promise was broken while it was open
    /// (another mount changed or removed it), ask whether it still exists, and drop the
    /// copy of one that does not. A copy of a file that only changed is kept: the next
    /// open compares versions.
    pub(super) fn reclaim_after_close(&self, node: &Arc<FileNode>) {
        let ino = node.ino;
        if self.holds_promise(ino) || self.disk.get(ino).is_none() {
            return;
        }
        let Some(me) = self.me.upgrade() else { return };
        self.rt.spawn(async move {
            // No user asked (a close needs no answer from the server): asked as nobody.
            match me
                .dir_call(&Who::ANONYMOUS, &DirRequest::GetAttr { ino })
                .await
            {
                Err(CacheError::Fs(FsError::NotFound)) if !me.in_use(ino) => {
                    me.meta.lock().unwrap().forget_ino(ino);
                    if let Err(e) = me.disk.remove(ino) {
                        log::warn!("inode {ino}: cache copy of a deleted file: {e}");
                    }
                }
                _ => {}
            }
        });
    }
}
