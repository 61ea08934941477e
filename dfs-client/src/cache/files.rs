//! File contents on the client: open makes the local copy current (no round trip while a
//! promise holds, a version compare otherwise, a fetch only when the version changed);
//! reads and writes go to the local copy (`io`); flush/fsync of a changed file stores it
//! whole (`store`). A copy whose store failed stays dirty (durably marked in the cache
//! index) and is stored by a later flush or by the retry loop once the server answers.
//! Owns opening and releasing handles (`FileHandle`) and making a copy current; the
//! file's state changes only through its transitions (`file_state`). Must not touch the
//! namespace.

use super::disk::CacheEntry;
use super::error::CacheError;
use super::file_state::FileStamp;
use super::filling::{wait_for_plain_release, Filling};
use super::nodes::FileNode;
use super::CacheManager;
use crate::port::{FetchProgress, Fetched, PortError, Who};
use dfs_common::{private_files, FsError, Ino, Timestamp};
use std::fs::{File, OpenOptions};
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub(crate) use dfs_common::locks::OPEN_OWNER;

/// What a copy with unstored changes shows over the server's attributes.
pub(crate) struct LocalAttrs {
    pub size: u64,
    pub mtime: Timestamp,
    /// When the copy last changed (its own ctime): a write, ftruncate or fallocate is a
    /// change of the file's ctime too.
    pub ctime: Timestamp,
    /// A chmod held for the store (`UnsyncedCreate::mode`).
    pub mode: Option<u32>,
}

/// Size and mtime of a file, to tell whether it changed.
pub(super) fn stamp_of(meta: &std::fs::Metadata) -> Option<FileStamp> {
    Some((meta.len(), meta.modified().ok()?))
}

/// An open file: what a FUSE file handle or a `DfsFile` refers to.
pub struct FileHandle {
    pub ino: Ino,
    pub writable: bool,
    /// Opened with O_APPEND: every write goes to the end of the copy, whatever offset the
    /// kernel computed from a size it may have cached before another writer's turn.
    pub append: bool,
    pub(super) node: Arc<FileNode>,
    pub(super) file: Arc<File>,
    /// The version of the copy `file` holds.
    pub(super) version: u64,
    /// Set when `file` was still being fetched at open: reads wait for their bytes.
    pub(super) filling: Option<Arc<Filling>>,
    /// Counted in the node's plain opens.
    pub(super) plain: bool,
}

/// Everything the FUSE adapter needs to answer an open, in one answer.
#[derive(Debug)]
pub struct OpenResult {
    pub fh: u64,
    /// The copy to give the kernel as the handle's passthrough backing file; `None`: the
    /// handle is served through this daemon (`plain`, or passthrough is off).
    pub backing: Option<Arc<File>>,
    /// The kernel may close this handle without a FLUSH (FOPEN_NOFLUSH): it is read-only
    /// and this client held no advisory lock on the file when it was opened, so a close
    /// has nothing to store or unlock (locks taken through it later go at its release).
    pub noflush: bool,
    /// The kernel may keep the pages it has: the contents did not change since.
    pub keep_cache: bool,
    /// Reads must come to this daemon (no passthrough): the copy is still being fetched,
    /// or another open of the inode reads it so.
    pub plain: bool,
    /// Reads and writes bypass the kernel's page cache too (FOPEN_DIRECT_IO): the copy is
    /// still being fetched, or written behind (see `behind`). Pages cached now would only
    /// be dropped, at a cost that grows with the file, by the next (passthrough) open.
    pub direct: bool,
}

impl CacheManager {
    /// Size, mtime and ctime of the local copy, and the permission bits held for its store
    /// (see `UnsyncedCreate::mode`), when it has changes the server does not have.
    pub(crate) fn local_attrs(&self, ino: Ino) -> Option<LocalAttrs> {
        let node = self.node_if_any(ino)?;
        let l = node.state();
        if !l.is_dirty() {
            return None;
        }
        let meta = match l.shared_file() {
            Some(f) => f.metadata().ok()?,
            None => std::fs::metadata(self.disk.path(ino, l.version())).ok()?,
        };
        let mtime = meta.modified().map(Timestamp::from_system).ok()?;
        // A copy marked dirty by an open for writing that has not written yet shows the
        // server's ctime: opening is no change.
        let ctime = match l.stamp() == stamp_of(&meta) {
            true => Timestamp { secs: 0, nanos: 0 },
            false => {
                use std::os::unix::fs::MetadataExt;
                Timestamp {
                    secs: meta.ctime(),
                    nanos: meta.ctime_nsec() as u32,
                }
            }
        };
        Some(LocalAttrs {
            size: meta.len(),
            mtime,
            ctime,
            mode: l.held_mode(),
        })
    }

    /// Makes the on-disk copy of `ino` current with the server (or keeps a stale one when
    /// the server cannot be reached), and records its version in `node`. With `filling`,
    /// the fetch writes that part file and reports its bytes as they land there.
    pub(super) async fn make_current(
        &self,
        who: &Who,
        node: &FileNode,
        filling: Option<(&Arc<Filling>, &std::path::Path)>,
    ) -> Result<(), CacheError> {
        let ino = node.ino;
        let entry = self.disk.get(ino);
        if let (Some(entry), Some(attr)) = (&entry, self.trusted_attr(ino)) {
            if entry.version == attr.version {
                node.state().current_at(entry.version);
                crate::metrics::CACHE.inc(crate::metrics::KIND_OPEN, crate::metrics::HIT);
                return Ok(());
            }
        }
        let t = self.ticket();
        let (filling, part) = match filling {
            Some((f, part)) => (Some(f), part.to_path_buf()),
            None => (None, self.disk.part_path(ino)),
        };
        // A fetch cut short (a server that found its copy bad mid-stream drops it and
        // serves a good one from a replica next time) is tried again, twice at most.
        let mut tries = 0;
        let fetched = loop {
            tries += 1;
            let progress = filling.map(|f| f.clone() as Arc<dyn FetchProgress>);
            let r = self
                .server
                .fetch(who, ino, entry.as_ref().map(|e| e.version), &part, progress)
                .await;
            // A retry rewrites the part file from its start: not under a reader's feet.
            let shown = filling.is_some_and(|p| p.readable() > 0);
            match r {
                Err(e @ (PortError::Corrupt { .. } | PortError::CutShort { .. }))
                    if tries < 3 && !shown =>
                {
                    log::info!("inode {ino}: {e}; trying again");
                    let _ = std::fs::remove_file(&part);
                }
                r => break r.map_err(CacheError::from),
            }
        };
        match fetched {
            Ok(Fetched::NotModified(attr)) => {
                crate::metrics::CACHE.inc(crate::metrics::KIND_OPEN, crate::metrics::REVALIDATED);
                self.remember_attr(&attr, t);
                node.state().current_at(attr.version);
                Ok(())
            }
            Ok(Fetched::Fetched(attr)) => {
                crate::metrics::CACHE.inc(crate::metrics::KIND_OPEN, crate::metrics::MISS);
                let path = self.disk.path(ino, attr.version);
                if let Err(e) = std::fs::rename(&part, &path) {
                    let _ = std::fs::remove_file(&part);
                    return Err(e.into());
                }
                self.disk.put(
                    ino,
                    CacheEntry {
                        version: attr.version,
                        size: attr.size,
                        dirty: false,
                        mtime_ns: 0,
                    },
                )?;
                self.remember_attr(&attr, t);
                node.state().fetched(attr.version);
                self.disk.evict(&|i| i != ino && self.in_use(i));
                Ok(())
            }
            Err(why) if why.is_unreachable() && entry.is_some() => {
                let _ = std::fs::remove_file(&part);
                let version = entry.map(|e| e.version).unwrap_or_default();
                log::warn!(
                    "inode {ino}: server unavailable ({why}); using cached version {version}"
                );
                node.state().current_at(version);
                Ok(())
            }
            Err(e) => {
                let _ = std::fs::remove_file(&part);
                if e.is_not_found() {
                    let _ = self.disk.remove(ino);
                }
                Err(e)
            }
        }
    }

    /// O_TRUNC open with no local copy: the old contents are not needed, only the version
    /// they replace, so no fetch happens.
    async fn start_truncated(&self, who: &Who, node: &FileNode) -> Result<(), CacheError> {
        let attr = self.getattr(who, node.ino).await?;
        if attr.kind != dfs_common::FileKind::File {
            return Err(FsError::IsDir.into());
        }
        private_files::create(&self.disk.path(node.ino, attr.version))?;
        let mark = node.state().truncated_fresh(attr.version);
        self.mark_dirty_in_index(node.ino, mark, 0)
    }

    /// Opens `ino` with open(2) `flags` for `who`. An open for writing first takes the
    /// file's write lock (waiting, bounded, for another client's writer to close).
    pub async fn open(&self, who: &Who, ino: Ino, flags: i32) -> Result<OpenResult, CacheError> {
        let writable = flags & libc::O_ACCMODE != libc::O_RDONLY;
        let truncate = writable && flags & libc::O_TRUNC != 0;
        let node = self.node(ino);
        if writable {
            node.state().writer_is(*who);
            if let Err(e) = self.take_open_lock(who, &node).await {
                self.maybe_drop_node(&node);
                return Err(e);
            }
        }
        let op = node.op.clone().lock_owned().await;
        if self.passthrough.load(Ordering::SeqCst) {
            // Plain handles still open would deny this open passthrough.
            wait_for_plain_release(&node).await;
        }
        // Local changes win until stored; otherwise every open sees the current version,
        // while handles opened earlier keep reading the copy they opened.
        // While the file is open here, new opens share its copy: the kernel allows one
        // backing file per inode under passthrough, and it keeps one client consistent.
        let local_changes = node.state().has_local_changes();
        if !local_changes {
            if !writable && self.streams(ino) {
                return self.open_filling(who, &node, op);
            }
            let ready = if truncate {
                self.start_truncated(who, &node).await
            } else {
                self.make_current(who, &node, None).await
            };
            if let Err(e) = ready {
                drop(op);
                self.release_open_lock_later(&node);
                self.maybe_drop_node(&node);
                return Err(e);
            }
        }
        self.finish_open(&node, flags)
    }

    /// The part of an open that needs no network: the copy's descriptor, O_TRUNC, the
    /// passthrough dirty mark, counts and the handle.
    fn finish_open(&self, node: &Arc<FileNode>, flags: i32) -> Result<OpenResult, CacheError> {
        let ino = node.ino;
        let writable = flags & libc::O_ACCMODE != libc::O_RDONLY;
        let truncate = writable && flags & libc::O_TRUNC != 0;
        let file = {
            let mut l = node.state();
            match l.current_file() {
                Some(f) => f,
                None => {
                    let path = self.disk.path(ino, l.version());
                    let f = match OpenOptions::new().read(true).write(true).open(&path) {
                        Ok(f) => Arc::new(f),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                            // Created by us and never written: the empty copy is implicit.
                            let f = private_files::options()
                                .read(true)
                                .write(true)
                                .create(true)
                                .truncate(false)
                                .open(&path)?;
                            Arc::new(f)
                        }
                        Err(e) => return Err(e.into()),
                    };
                    l.share(f.clone());
                    f
                }
            }
        };
        if truncate && file.metadata()?.len() > 0 {
            file.set_len(0)?;
            let mark = node.state().changed();
            self.mark_dirty_in_index(ino, mark, 0)?;
        }
        if writable && self.passthrough.load(Ordering::SeqCst) {
            // Writes will go straight to the copy: record what it is now, and mark it dirty
            // durably before the first byte can change (flush tells whether anything did).
            let meta = file.metadata()?;
            let mark = node.state().marked_for_passthrough(stamp_of(&meta));
            self.mark_dirty_in_index(ino, mark, meta.len())?;
        }
        // The only open, for writing, of an empty copy: its writes come through us (plain,
        // and past the kernel's page cache), so that they can be uploaded as they come.
        let behind = writable
            && node.state().opens().all == 0
            && file.metadata()?.len() == 0
            && self.writes_behind(&node.state().writer());
        let (keep_cache, plain, version) = {
            let mut l = node.state();
            let (keep, plain) = l.opened(writable, behind);
            (keep, plain, l.shared_version())
        };
        let fh = self.next_handle.fetch_add(1, Ordering::Relaxed);
        let handle = Arc::new(FileHandle {
            ino,
            writable,
            append: flags & libc::O_APPEND != 0,
            version,
            node: node.clone(),
            file,
            filling: None,
            plain,
        });
        let backing =
            (!plain && self.passthrough.load(Ordering::SeqCst)).then(|| handle.file.clone());
        self.handles.lock().unwrap().insert(fh, handle);
        Ok(OpenResult {
            fh,
            backing,
            noflush: self.closes_quietly(ino, flags),
            keep_cache,
            plain,
            direct: behind,
        })
    }

    /// An open that the cache can answer at once, without waiting on anything: read-only,
    /// the copy current under a live promise, nobody busy with the inode. `None`: take the
    /// ordinary (async) path. Lets the FUSE thread answer such opens in place.
    pub fn try_open_cached(&self, ino: Ino, flags: i32) -> Option<Result<OpenResult, CacheError>> {
        if flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0 {
            return None;
        }
        let node = match self.node_if_any(ino) {
            Some(n) => n,
            None => {
                let attr = self.trusted_attr(ino)?;
                if self.disk.get(ino)?.version != attr.version {
                    return None;
                }
                self.node(ino)
            }
        };
        let ready = {
            let Ok(_op) = node.op.try_lock() else {
                return None;
            };
            let mut l = node.state();
            if l.opens().plain > 0 && self.passthrough.load(Ordering::SeqCst) {
                // The async path gives their release a moment first.
                false
            } else if l.has_local_changes() {
                true
            } else {
                match (self.trusted_attr(ino), self.disk.get(ino)) {
                    (Some(attr), Some(entry)) if entry.version == attr.version => {
                        l.current_at(entry.version);
                        true
                    }
                    _ => false,
                }
            }
        };
        if !ready {
            self.maybe_drop_node(&node);
            return None;
        }
        Some(self.finish_open(&node, flags))
    }

    /// Records, durably, that the copy of `ino` at `version` has unstored changes, when a
    /// transition says it became dirty (`Some(version)`; an open-unlinked file has nowhere
    /// to store them: they live in its copy until the last close).
    pub(super) fn mark_dirty_in_index(
        &self,
        ino: Ino,
        became_dirty: Option<u64>,
        size: u64,
    ) -> Result<(), CacheError> {
        let Some(version) = became_dirty else {
            return Ok(());
        };
        self.small_files.lock().unwrap().forget(ino, version);
        self.disk.put(
            ino,
            CacheEntry {
                version,
                size,
                dirty: true,
                mtime_ns: 0,
            },
        )
    }

    /// Whether a handle of `ino` opened with `flags` may close without a flush: read-only,
    /// and no advisory lock of this client on the file (a close(2) drops the caller's).
    pub(super) fn closes_quietly(&self, ino: Ino, flags: i32) -> bool {
        flags & libc::O_ACCMODE == libc::O_RDONLY && !self.holds_any_advisory(ino)
    }

    /// Whether a close(2) of `fh` by lock owner `owner` has anything to do (`close_flush`):
    /// the handle may have written, or the owner holds advisory locks on the file.
    pub fn flush_needed(&self, fh: u64, ino: Ino, owner: u64) -> bool {
        self.handle_writable(fh) != Some(false) || self.holds_advisory(ino, owner)
    }

    /// A close(2) of `fh` by `who`: drops the caller's fcntl locks on the file (POSIX),
    /// then stores the file if this handle may have changed it, both for `who`.
    pub async fn close_flush(
        &self,
        who: &Who,
        fh: u64,
        ino: Ino,
        owner: u64,
    ) -> Result<(), CacheError> {
        self.release_advisory_owner(who, ino, owner).await;
        self.flush(who, fh).await
    }

    /// The kernel's release of `fh`, the last close of its open file: the handle goes (see
    /// `release`), and so do the advisory locks of `lock_owners` on the file (a flock
    /// holder's, or the fcntl locks taken through a handle closed without flushes), in the
    /// background, for `who`.
    pub fn release_handle(&self, who: &Who, fh: u64, ino: Ino, lock_owners: Vec<u64>) {
        self.release(fh);
        if lock_owners.is_empty() {
            return;
        }
        let Some(me) = self.me.upgrade() else { return };
        let who = *who;
        self.rt.spawn(async move {
            for owner in lock_owners {
                me.release_advisory_owner(&who, ino, owner).await;
            }
        });
    }

    /// Closes a handle. Unstored changes stay in the cache for the retry loop.
    pub fn release(&self, fh: u64) {
        let Some(h) = self.handles.lock().unwrap().remove(&fh) else {
            return;
        };
        let closed = h.node.state().closed(h.writable, h.plain, || {
            h.file.metadata().ok().as_ref().and_then(stamp_of)
        });
        if closed.plain_gone {
            h.node.plain_gone.notify_waiters();
        }
        if let Some((version, size)) = closed.clean_again {
            let entry = CacheEntry {
                version,
                size,
                dirty: false,
                mtime_ns: 0,
            };
            if let Err(e) = self.disk.put(h.ino, entry) {
                log::warn!("cache index: {e}");
            }
        }
        let node = h.node.clone();
        drop(h);
        if closed.last_close {
            self.reclaim_after_close(&node);
        }
        self.release_open_lock_later(&node);
        self.maybe_drop_node(&node);
    }
}
