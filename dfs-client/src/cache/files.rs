//! File contents on the client: open makes the local copy current (no round trip while a
//! promise holds, a version compare otherwise, a fetch only when the version changed);
//! reads and writes go to the local copy (`io`); flush/fsync of a changed file stores it
//! whole (`store`). A copy whose store failed stays dirty (durably marked in the cache
//! index) and is stored by a later flush or by the retry loop once the server answers.
//! Owns per-inode open state (`FileNode`, `Local`), opening and releasing handles. Must
//! not touch the namespace.

use super::disk::CacheEntry;
use super::filling::{wait_for_plain_release, Filling};
use super::CacheManager;
use crate::port::{FetchProgress, Fetched, PortError, Who};
use dfs_common::{private_files, FsError, Ino, Timestamp};
use std::fs::{File, OpenOptions};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

pub(crate) use dfs_common::locks::OPEN_OWNER;

/// Per-inode state while a file is open on this client or holds unstored changes.
pub(crate) struct FileNode {
    pub(super) ino: Ino,
    /// Serializes taking and giving back the writers' lock of this inode.
    pub(super) grant: tokio::sync::Mutex<()>,
    /// Serializes the slow steps on one inode: making the copy current, storing it,
    /// truncating it. A fetch that goes on after its open was answered holds it to the end.
    pub(super) op: Arc<tokio::sync::Mutex<()>>,
    /// `write` shares it; a store in flight holds it exclusively so the upload is a
    /// consistent snapshot.
    pub(super) gate: tokio::sync::RwLock<()>,
    pub(super) local: Mutex<Local>,
    /// Signalled when the last plain handle goes (see `Local::plain_opens`).
    pub(super) plain_gone: tokio::sync::Notify,
}

#[derive(Default)]
pub(super) struct Local {
    /// Server version the local copy is based on (its file is `disk.path(ino, version)`).
    pub(super) version: u64,
    /// The copy's read-write descriptor, shared by new handles while any is open.
    pub(super) file: Option<Arc<File>>,
    /// The version `file` holds (older handles may still read an older copy).
    pub(super) file_version: u64,
    pub(super) dirty: bool,
    pub(super) opens: u32,
    pub(super) writers: u32,
    /// Bumped when the copy is replaced by a fetched version: the kernel's pages are stale.
    pub(super) contents: u64,
    /// `contents` when the kernel last opened the file.
    pub(super) kernel_contents: Option<u64>,
    /// Fencing token of the writers' lock this client holds on the inode.
    pub(super) fence: Option<u64>,
    /// Size and mtime of the copy when it was last known to equal `version` on the server;
    /// a copy marked dirty that still matches it has not changed (passthrough opens for
    /// writing are marked dirty before anything is written, since writes bypass us).
    pub(super) clean_stamp: Option<(u64, std::time::SystemTime)>,
    /// The local user whose open for writing made the latest changes: a store retried in
    /// the background acts for them (in a realm, with their credentials).
    pub(super) writer_uid: Option<u32>,
    /// Created by us and not durable on the server until our first store: if the server
    /// no longer knows it, a crash forgot it, and close must fail rather than drop the data.
    pub(super) unsynced_create: bool,
    /// Permission bits set by a chmod while `unsynced_create`, sent with the next store
    /// instead of on their own (`tar -x` creates, writes, chmods, closes). Kept in memory
    /// only: if this daemon dies before that store, its recovered copy is stored without
    /// them (the close that would have stored them has failed).
    pub(super) pending_mode: Option<u32>,
    /// Open handles answered through this daemon because the kernel cannot have the copy
    /// yet (it was still being fetched): while any is open, every open is answered so (the
    /// kernel refuses passthrough and cached opens of one inode at once).
    pub(super) plain_opens: u32,
    /// How far an open that started on an empty copy has written it in order, and the
    /// upload following it (see `behind`).
    pub(super) behind: Option<super::behind::WriteBehind>,
    /// The server no longer has the inode; it lives on in the descriptors open here (see
    /// `orphans`).
    pub(super) gone: bool,
    /// The attributes the server last gave for the inode, shown (with no links) once it is
    /// gone.
    pub(super) last_attr: Option<dfs_common::Attr>,
}

/// What a copy with unstored changes shows over the server's attributes.
pub(crate) struct LocalAttrs {
    pub size: u64,
    pub mtime: Timestamp,
    /// When the copy last changed (its own ctime): a write, ftruncate or fallocate is a
    /// change of the file's ctime too.
    pub ctime: Timestamp,
    /// A chmod held for the store (`pending_mode`).
    pub mode: Option<u32>,
}

/// Size and mtime of a file, to tell whether it changed.
pub(super) fn stamp_of(meta: &std::fs::Metadata) -> Option<(u64, std::time::SystemTime)> {
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
    /// Counted in the node's `plain_opens`.
    pub(super) plain: bool,
}

#[derive(Debug)]
pub struct OpenResult {
    pub fh: u64,
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
    pub(super) fn node(&self, ino: Ino) -> Arc<FileNode> {
        self.nodes
            .lock()
            .unwrap()
            .entry(ino)
            .or_insert_with(|| {
                let mut local = Local {
                    last_attr: self.meta.lock().unwrap().attr(ino).map(|(a, _)| a),
                    ..Local::default()
                };
                if let Some((contents, kernel)) = self.kernel_pages.lock().unwrap().pop(&ino) {
                    local.contents = contents;
                    local.kernel_contents = Some(kernel);
                }
                Arc::new(FileNode {
                    ino,
                    grant: tokio::sync::Mutex::new(()),
                    op: Arc::new(tokio::sync::Mutex::new(())),
                    gate: tokio::sync::RwLock::new(()),
                    local: Mutex::new(local),
                    plain_gone: tokio::sync::Notify::new(),
                })
            })
            .clone()
    }

    /// Dirty copies left by an earlier run become nodes the retry loop will store.
    pub(crate) fn adopt_dirty_files(&self) {
        for (ino, entry) in self.disk.all() {
            if entry.dirty {
                let node = self.node(ino);
                let mut l = node.local.lock().unwrap();
                l.version = entry.version;
                l.dirty = true;
                log::info!("inode {ino}: unstored changes from an earlier run will be stored");
            }
        }
    }

    pub(super) fn in_use(&self, ino: Ino) -> bool {
        self.nodes.lock().unwrap().get(&ino).is_some_and(|n| {
            let l = n.local.lock().unwrap();
            l.opens > 0 || l.dirty
        })
    }

    /// Size, mtime and ctime of the local copy, and the permission bits held for its store
    /// (see `pending_mode`), when it has changes the server does not have.
    pub(crate) fn local_attrs(&self, ino: Ino) -> Option<LocalAttrs> {
        let node = self.nodes.lock().unwrap().get(&ino).cloned()?;
        let l = node.local.lock().unwrap();
        if !l.dirty {
            return None;
        }
        let meta = match &l.file {
            Some(f) => f.metadata().ok()?,
            None => std::fs::metadata(self.disk.path(ino, l.version)).ok()?,
        };
        let mtime = meta.modified().map(Timestamp::from_system).ok()?;
        // A copy marked dirty by an open for writing that has not written yet shows the
        // server's ctime: opening is no change.
        let ctime = match l.clean_stamp == stamp_of(&meta) {
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
            mode: l.pending_mode,
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
    ) -> Result<(), FsError> {
        let ino = node.ino;
        let entry = self.disk.get(ino);
        if let (Some(entry), Some(attr)) = (&entry, self.trusted_attr(ino)) {
            if entry.version == attr.version {
                node.local.lock().unwrap().version = entry.version;
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
                r => break r.map_err(FsError::from),
            }
        };
        match fetched {
            Ok(Fetched::NotModified(attr)) => {
                crate::metrics::CACHE.inc(crate::metrics::KIND_OPEN, crate::metrics::REVALIDATED);
                self.remember_attr(&attr, t);
                node.local.lock().unwrap().version = attr.version;
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
                {
                    let mut l = node.local.lock().unwrap();
                    l.version = attr.version;
                    l.contents += 1;
                }
                self.disk.evict(&|i| i != ino && self.in_use(i));
                Ok(())
            }
            Err(FsError::Unavailable(why)) if entry.is_some() => {
                let _ = std::fs::remove_file(&part);
                let version = entry.map(|e| e.version).unwrap_or_default();
                log::warn!(
                    "inode {ino}: server unavailable ({why}); using cached version {version}"
                );
                node.local.lock().unwrap().version = version;
                Ok(())
            }
            Err(e) => {
                let _ = std::fs::remove_file(&part);
                if e == FsError::NotFound {
                    let _ = self.disk.remove(ino);
                }
                Err(e)
            }
        }
    }

    /// O_TRUNC open with no local copy: the old contents are not needed, only the version
    /// they replace, so no fetch happens.
    async fn start_truncated(&self, who: &Who, node: &FileNode) -> Result<(), FsError> {
        let attr = self.getattr(who, node.ino).await?;
        if attr.kind != dfs_common::FileKind::File {
            return Err(FsError::IsDir);
        }
        private_files::create(&self.disk.path(node.ino, attr.version))?;
        {
            let mut l = node.local.lock().unwrap();
            l.version = attr.version;
            l.contents += 1;
        }
        self.mark_dirty(node, 0)
    }

    /// Opens `ino` with open(2) `flags` for `who`. An open for writing first takes the
    /// file's write lock (waiting, bounded, for another client's writer to close).
    pub async fn open(&self, who: &Who, ino: Ino, flags: i32) -> Result<OpenResult, FsError> {
        let writable = flags & libc::O_ACCMODE != libc::O_RDONLY;
        let truncate = writable && flags & libc::O_TRUNC != 0;
        let node = self.node(ino);
        if writable {
            node.local.lock().unwrap().writer_uid = who.uid();
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
        let local_changes = {
            let l = node.local.lock().unwrap();
            l.dirty || l.writers > 0 || l.opens > 0
        };
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
    fn finish_open(&self, node: &Arc<FileNode>, flags: i32) -> Result<OpenResult, FsError> {
        let ino = node.ino;
        let writable = flags & libc::O_ACCMODE != libc::O_RDONLY;
        let truncate = writable && flags & libc::O_TRUNC != 0;
        let file = {
            let mut l = node.local.lock().unwrap();
            match &l.file {
                Some(f) if l.file_version == l.version => f.clone(),
                _ => {
                    let path = self.disk.path(ino, l.version);
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
                    l.file = Some(f.clone());
                    l.file_version = l.version;
                    f
                }
            }
        };
        if truncate && file.metadata()?.len() > 0 {
            file.set_len(0)?;
            self.mark_dirty(node, 0)?;
            node.local.lock().unwrap().clean_stamp = None;
        }
        if writable && self.passthrough.load(Ordering::SeqCst) {
            // Writes will go straight to the copy: record what it is now, and mark it dirty
            // durably before the first byte can change (flush tells whether anything did).
            let meta = file.metadata()?;
            let was_clean = !node.local.lock().unwrap().dirty;
            if was_clean {
                node.local.lock().unwrap().clean_stamp = stamp_of(&meta);
                self.mark_dirty(node, meta.len())?;
            }
        }
        // The only open, for writing, of an empty copy: its writes come through us (plain,
        // and past the kernel's page cache), so that they can be uploaded as they come.
        let behind = writable
            && node.local.lock().unwrap().opens == 0
            && file.metadata()?.len() == 0
            && self.writes_behind(&Who::of(node.local.lock().unwrap().writer_uid));
        let (keep_cache, plain) = {
            let mut l = node.local.lock().unwrap();
            l.opens += 1;
            if writable {
                l.writers += 1;
            }
            if behind {
                l.behind = Some(super::behind::WriteBehind::new());
                // The kernel's pages, if any, are not of what this handle writes.
                l.contents += 1;
                l.plain_opens += 1;
            } else if l.plain_opens > 0 {
                l.plain_opens += 1;
            }
            let plain = l.plain_opens > 0;
            let keep = l.kernel_contents == Some(l.contents);
            l.kernel_contents = Some(l.contents);
            (keep, plain)
        };
        let fh = self.next_handle.fetch_add(1, Ordering::Relaxed);
        let handle = Arc::new(FileHandle {
            ino,
            writable,
            append: flags & libc::O_APPEND != 0,
            version: node.local.lock().unwrap().file_version,
            node: node.clone(),
            file,
            filling: None,
            plain,
        });
        self.handles.lock().unwrap().insert(fh, handle);
        Ok(OpenResult {
            fh,
            keep_cache,
            plain,
            direct: behind,
        })
    }

    /// An open that the cache can answer at once, without waiting on anything: read-only,
    /// the copy current under a live promise, nobody busy with the inode. `None`: take the
    /// ordinary (async) path. Lets the FUSE thread answer such opens in place.
    pub fn try_open_cached(&self, ino: Ino, flags: i32) -> Option<Result<OpenResult, FsError>> {
        if flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0 {
            return None;
        }
        let node = self.nodes.lock().unwrap().get(&ino).cloned();
        let node = match node {
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
            let mut l = node.local.lock().unwrap();
            if l.plain_opens > 0 && self.passthrough.load(Ordering::SeqCst) {
                // The async path gives their release a moment first.
                false
            } else if l.dirty || l.writers > 0 || l.opens > 0 {
                true
            } else {
                match (self.trusted_attr(ino), self.disk.get(ino)) {
                    (Some(attr), Some(entry)) if entry.version == attr.version => {
                        l.version = entry.version;
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

    /// Records, durably, that the copy of `node` has unstored changes (an open-unlinked
    /// file has nowhere to store them: they live in its copy until the last close).
    pub(super) fn mark_dirty(&self, node: &FileNode, size: u64) -> Result<(), FsError> {
        let version = {
            let mut l = node.local.lock().unwrap();
            if l.dirty || l.gone {
                return Ok(());
            }
            l.dirty = true;
            l.version
        };
        self.small_files.lock().unwrap().forget(node.ino, version);
        self.disk.put(
            node.ino,
            CacheEntry {
                version,
                size,
                dirty: true,
                mtime_ns: 0,
            },
        )
    }

    /// Closes a handle. Unstored changes stay in the cache for the retry loop.
    pub fn release(&self, fh: u64) {
        let Some(h) = self.handles.lock().unwrap().remove(&fh) else {
            return;
        };
        let (unchanged_copy, last_close) = {
            let mut l = h.node.local.lock().unwrap();
            l.opens = l.opens.saturating_sub(1);
            if h.writable {
                l.writers = l.writers.saturating_sub(1);
            }
            if h.plain {
                l.plain_opens = l.plain_opens.saturating_sub(1);
                if l.plain_opens == 0 {
                    h.node.plain_gone.notify_waiters();
                }
            }
            if l.opens == 0 {
                l.file = None;
            }
            let last_close = l.opens == 0 && !l.gone;
            if l.writers == 0 {
                l.abandon_behind();
            }
            // The last writer is gone. A copy still marked dirty only because passthrough
            // writers might have written (it was stored at their flush, or never changed)
            // is clean if it still matches its clean stamp.
            let unchanged = l.writers == 0
                && l.dirty
                && l.clean_stamp.is_some()
                && h.file.metadata().ok().as_ref().and_then(stamp_of) == l.clean_stamp;
            let unchanged_copy = if unchanged {
                l.dirty = false;
                Some((l.version, l.clean_stamp.map(|c| c.0).unwrap_or_default()))
            } else {
                None
            };
            (unchanged_copy, last_close)
        };
        if let Some((version, size)) = unchanged_copy {
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
        if last_close {
            self.reclaim_after_close(&node);
        }
        self.release_open_lock_later(&node);
        self.maybe_drop_node(&node);
    }

    /// Forgets a node nobody uses any more (no handle, nothing unstored).
    pub(super) fn maybe_drop_node(&self, node: &Arc<FileNode>) {
        let mut nodes = self.nodes.lock().unwrap();
        let idle = {
            let l = node.local.lock().unwrap();
            l.opens == 0 && !l.dirty
        };
        // The map and our caller hold the only references: nobody is between lookup and use.
        if idle && Arc::strong_count(node) == 2 && node.op.try_lock().is_ok() {
            nodes.remove(&node.ino);
            let l = node.local.lock().unwrap();
            if let Some(kernel) = l.kernel_contents {
                self.kernel_pages
                    .lock()
                    .unwrap()
                    .put(node.ino, (l.contents, kernel));
            }
        }
    }
}
