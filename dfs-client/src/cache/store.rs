//! Storing file contents: flush/fsync of a changed copy uploads it whole (fenced by the
//! writers' lock), adopts the server's new version, and on failure keeps the copy dirty
//! for the retry loop. Also the recovery when the lock's lease lapsed: store only if nobody
//! stored in between, else keep the copy aside in `lost+found`. Must not open files.

use super::disk::CacheEntry;
use super::error::CacheError;
use super::file_state::StoredCopy;
use super::files::{stamp_of, OPEN_OWNER};
use super::nodes::FileNode;
use super::CacheManager;
use crate::port::Who;
use dfs_common::locks::LockClass;
use dfs_common::{private_files, FsError, Timestamp};
use std::sync::Arc;

impl CacheManager {
    /// Stores the file if this handle may have changed it. Called on every close(2).
    pub async fn flush(&self, who: &Who, fh: u64) -> Result<(), CacheError> {
        let h = self.handle(fh)?;
        if !h.writable {
            return Ok(());
        }
        self.store_node(who, &h.node).await
    }

    /// Stores the file if it has unstored changes, whichever handle made them.
    pub async fn fsync(&self, who: &Who, fh: u64) -> Result<(), CacheError> {
        let h = self.handle(fh)?;
        self.store_node(who, &h.node).await
    }

    /// Our write lock lapsed (or was never had). Win it back, but store only if nobody else
    /// stored since our copy's base version; otherwise keep our copy aside and report it.
    pub(super) async fn rewin_open_lock(
        &self,
        who: &Who,
        node: &FileNode,
        base: u64,
    ) -> Result<Option<u64>, CacheError> {
        let _grant = node.grant.lock().await;
        if let Some(token) = node.state().fence() {
            return Ok(Some(token));
        }
        // Named after this process's user, as it always was; taken for `who`.
        let req = super::writelock::open_lock_request(node.ino, &Who::process());
        let token = match self.lock_acquire(who, req, std::time::Duration::ZERO).await {
            Ok(token) => Some(token),
            Err(CacheError::Fs(FsError::Unavailable(_))) => return Ok(None),
            Err(CacheError::Fs(FsError::Busy(why))) => {
                // Someone else writes now. If they already stored past our base, our turn
                // is over for good (ESTALE); if not, try again later (EAGAIN).
                log::debug!("inode {}: write lock busy: {why}", node.ino);
                None
            }
            Err(e) => return Err(e),
        };
        let current = self
            .dir_call(
                who,
                &dfs_common::proto::DirRequest::GetAttr { ino: node.ino },
            )
            .await?;
        let dfs_common::proto::DirReply::Attr(attr) = current else {
            return Err(FsError::Io("unexpected answer to getattr".into()).into());
        };
        if attr.version == base || self.already_stored(node, base, &attr).await {
            return match token {
                Some(token) => {
                    node.state().lock_granted(token);
                    Ok(Some(token))
                }
                None => Err(FsError::Busy(format!(
                    "inode {}: another client holds the write lock; the store is retried",
                    node.ino
                ))
                .into()),
            };
        }
        let kept = self.keep_aside(node, base)?;
        if token.is_some() {
            // We won the lock back only to find our copy superseded: give it back.
            let release = dfs_common::locks::ReleaseRequest {
                ino: node.ino,
                class: LockClass::Open,
                owner: OPEN_OWNER,
                range: None,
            };
            let _ = self.lock_release(who, release).await;
        }
        let msg = format!(
            "inode {}: another writer stored version {} while our write lock had lapsed; our copy (based on version {base}) is kept at {}",
            node.ino,
            attr.version,
            kept.display()
        );
        log::error!("{msg}");
        Err(FsError::Stale(msg).into())
    }

    /// Whether the server's current contents of `node` (`attr`, past our `base`) are our
    /// copy's: a store of ours whose answer was lost (a timeout on a loaded server) landed,
    /// and storing again loses nothing. Another writer's different contents are not.
    async fn already_stored(&self, node: &FileNode, base: u64, attr: &dfs_common::Attr) -> bool {
        let path = self.disk.path(node.ino, base);
        let Ok(meta) = std::fs::metadata(&path) else {
            return false;
        };
        if meta.len() != attr.size {
            return false;
        }
        let ours = match crate::file_hash::of_file(&path).await {
            Ok(h) => h,
            Err(_) => return false,
        };
        let landed = match attr.blob {
            Some(id) => id.0 == ours,
            None => attr.size == 0,
        };
        if landed {
            log::info!(
                "inode {}: version {} on the server holds our changes (a store whose answer was lost); storing again",
                node.ino,
                attr.version
            );
        }
        landed
    }

    /// Moves a dirty copy that can no longer be stored to `lost+found` in the cache.
    pub(super) fn keep_aside(
        &self,
        node: &FileNode,
        version: u64,
    ) -> Result<std::path::PathBuf, CacheError> {
        let dir = self.cache_dir.join("lost+found");
        private_files::create_dir_all(&dir)?;
        let secs = Timestamp::now().secs;
        let dest = dir.join(format!("{}-v{version}-{secs}", node.ino));
        std::fs::rename(self.disk.path(node.ino, version), &dest)?;
        node.state().changes_dropped();
        let _ = self.disk.remove(node.ino);
        Ok(dest)
    }

    /// Stores the copy of `node` if it is dirty: upload, then adopt the server's new version.
    pub(super) async fn store_node(&self, who: &Who, node: &FileNode) -> Result<(), CacheError> {
        let ino = node.ino;
        let _op = node.op.lock().await;
        let _excl = node.gate.write().await;
        let Some(plan) = node.state().store_plan() else {
            return Ok(());
        };
        let version = plan.version;
        let path = self.disk.path(ino, version);
        let source = match self.upload_source(node, &path) {
            Ok(source) => source,
            Err(e) => {
                node.state().changes_dropped();
                return Err(e);
            }
        };
        let before = stamp_of(&std::fs::metadata(&source)?);
        if before.is_some() && before == plan.stamp {
            // Unchanged since it was last known clean: nothing to store. But a passthrough
            // writer that still holds the file (a close of one of several descriptors, as
            // in `cmd >> f` from a shell) may write after this without telling us: leave
            // it marked, so its last close compares again (release settles it).
            if self.still_written(node) {
                return Ok(());
            }
            self.disk.put(
                ino,
                CacheEntry {
                    version,
                    size: before.map(|b| b.0).unwrap_or_default(),
                    dirty: false,
                    mtime_ns: 0,
                },
            )?;
            node.state().store_not_needed();
            return Ok(());
        }
        let t = self.ticket();
        let size = before.map(|b| b.0).unwrap_or_default();
        let mtime = before.map(|b| b.1);
        let mode = plan.mode;
        // The permission bits the store that succeeds carried (a write-behind upload
        // started before any chmod, so it carries none).
        let mut carried = None;
        let mut stored = match self.finish_behind(who, node, size, mtime).await {
            Some(attr) => Ok(attr),
            None => {
                carried = mode;
                self.fenced_store(who, node, version, &source, mode, false)
                    .await
            }
        };
        if let Err(CacheError::Fs(FsError::Stale(why))) = &stored {
            log::warn!("inode {ino}: store refused, write lock lapsed: {why}");
            carried = mode;
            stored = self
                .fenced_store(who, node, version, &source, mode, true)
                .await;
        }
        match stored {
            Ok(attr) => {
                let new_path = self.disk.path(ino, attr.version);
                if source == path {
                    std::fs::rename(&path, &new_path)?;
                } else {
                    restore_copy(&source, &path, &new_path)?;
                }
                // Passthrough writes do not wait for the upload: if the copy moved on while it
                // was sent, it is still dirty (now against the new version).
                let new_meta = std::fs::metadata(&new_path)?;
                let after = stamp_of(&new_meta);
                let moved_on = after != before;
                let still_written = self.still_written(node);
                let held = node.state().stored(StoredCopy {
                    version: attr.version,
                    after,
                    moved_on,
                    still_written,
                });
                self.disk.put_renamed(
                    ino,
                    version,
                    CacheEntry {
                        version: attr.version,
                        size: attr.size,
                        dirty: moved_on || still_written,
                        mtime_ns: 0,
                    },
                    &new_meta,
                );
                let attr = match held {
                    // A chmod the store did not carry (it came during the upload).
                    Some(m) if carried != Some(m) => {
                        let change = dfs_common::proto::AttrChange {
                            mode: Some(m),
                            ..Default::default()
                        };
                        let req = dfs_common::proto::DirRequest::SetAttr { ino, change };
                        self.attr_call(who, req, "chmod").await?
                    }
                    _ => attr,
                };
                self.remember_attr(&attr, t);
                if carried.is_some() || held.is_some() {
                    // A chmod rewrote the access ACL too.
                    self.meta.lock().unwrap().forget_xattrs(ino);
                }
                // The kernel holds what we answered while the file was changed here (the
                // copy's times); the store gave it the server's ctime.
                self.invalidate(super::Invalidation::Attrs(ino));
                Ok(())
            }
            Err(CacheError::Fs(FsError::NotFound)) if node.state().unsynced_create() => {
                // Our create was not durable yet and the server lost it in a crash.
                let kept = self.keep_aside(node, version)?;
                let msg = format!(
                    "inode {ino}: the server crashed before the new file was stored and no longer has it; our copy is kept at {}",
                    kept.display()
                );
                log::error!("{msg}");
                Err(FsError::Io(msg).into())
            }
            Err(CacheError::Fs(FsError::NotFound)) if self.make_orphan(node) => {
                // Deleted on the server while open here: its descriptors keep the copy.
                Ok(())
            }
            Err(CacheError::Fs(FsError::NotFound)) => {
                // Deleted on the server while we wrote: there is nowhere to store it.
                log::info!("inode {ino} was deleted on the server; dropping local changes");
                node.state().changes_dropped();
                let _ = self.disk.remove(ino);
                Ok(())
            }
            Err(e) => {
                log::warn!("store of inode {ino} failed, changes kept in the cache: {e}");
                // The caller's close fails: its data must survive a crash of this client.
                if let Err(pe) = self.disk.persist_now() {
                    log::error!("cache index: {pe}");
                }
                Err(e)
            }
        }
    }

    /// Whether a writer still holds `node` open under passthrough: it may write at any time
    /// without telling us, so its copy stays marked until its close compares stamps.
    fn still_written(&self, node: &FileNode) -> bool {
        self.passthrough.load(std::sync::atomic::Ordering::SeqCst)
            && node.state().opens().writers > 0
    }

    /// One upload of `source` as the new contents of `node` (based on `version`), fenced
    /// by the writers' lock this client holds, or wins back first (`rewin`: the server
    /// refused the token it had).
    async fn fenced_store(
        &self,
        who: &Who,
        node: &FileNode,
        version: u64,
        source: &std::path::Path,
        mode: Option<u32>,
        rewin: bool,
    ) -> Result<dfs_common::Attr, CacheError> {
        let mut fence = node.state().fence();
        if rewin {
            node.state().lock_lapsed();
            fence = None;
        }
        if fence.is_none() {
            fence = self.rewin_open_lock(who, node, version).await?;
        }
        let kill_suid = node.state().kills_suid();
        Ok(self
            .server
            .store(who, node.ino, source, fence, mode, kill_suid)
            .await?)
    }

    /// What an upload of `node` reads: its copy at `path`, or, when that has gone missing
    /// or been replaced under us (deleted by hand, a disk repair) while a descriptor is
    /// open on the copy, that descriptor (`/proc/self/fd/N`), which still holds every byte
    /// written. With neither the changes are lost here: an error says so.
    fn upload_source(
        &self,
        node: &FileNode,
        path: &std::path::Path,
    ) -> Result<std::path::PathBuf, CacheError> {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::MetadataExt;
        let file = node.state().shared_file().cloned();
        let at_path = std::fs::metadata(path).ok();
        let Some(file) = file else {
            return match at_path {
                Some(_) => Ok(path.to_path_buf()),
                None => {
                    let msg = format!(
                        "inode {}: the cached copy with unstored changes is missing from {} and no descriptor holds it; the changes are lost",
                        node.ino,
                        path.display()
                    );
                    log::error!("{msg}");
                    Err(FsError::Io(msg).into())
                }
            };
        };
        let held = file.metadata()?;
        match at_path {
            Some(m) if (m.dev(), m.ino()) == (held.dev(), held.ino()) => Ok(path.to_path_buf()),
            _ => {
                log::warn!(
                    "inode {}: cached copy {} missing or replaced; storing from the open descriptor",
                    node.ino,
                    path.display()
                );
                // The descriptor stays open as long as the node holds `file`, which the
                // caller keeps across the upload (it holds the node's `op` lock).
                Ok(std::path::PathBuf::from(format!(
                    "/proc/self/fd/{}",
                    file.as_raw_fd()
                )))
            }
        }
    }

    /// Stores every dirty file nobody has open for writing. Returns how many are left.
    pub async fn store_dirty(&self) -> usize {
        let dirty: Vec<Arc<FileNode>> = self.nodes_where(|s| s.awaits_retry());
        let mut left = 0;
        for node in dirty {
            // Acts for the user who wrote the changes (nobody, for a copy left by an
            // earlier run), whoever runs the retry.
            let writer = node.state().writer();
            let stored = self.store_node(&writer, &node).await;
            match stored {
                Ok(()) => {
                    self.release_open_lock_later(&node);
                    self.maybe_drop_node(&node);
                }
                Err(_) => left += 1,
            }
        }
        left
    }
}

/// Writes a new cache copy at `dest` from `source` (an open descriptor of a copy whose file
/// went missing), with its mtime, and removes whatever is left at `old`.
fn restore_copy(
    source: &std::path::Path,
    old: &std::path::Path,
    dest: &std::path::Path,
) -> Result<(), CacheError> {
    let temp = dest.with_extension("restoring");
    let mut from = std::fs::File::open(source)?;
    let mut to = private_files::create(&temp)?;
    std::io::copy(&mut from, &mut to)?;
    if let Ok(mtime) = from.metadata().and_then(|m| m.modified()) {
        to.set_modified(mtime)?;
    }
    to.sync_all()?;
    std::fs::rename(&temp, dest)?;
    if old != dest {
        let _ = std::fs::remove_file(old);
    }
    Ok(())
}
