//! File contents on the client: open makes the local copy current (no round trip while a
//! promise holds, a version compare otherwise, a fetch only when the version changed);
//! reads and writes go to the local copy; flush/fsync of a changed file stores it whole.
//! A copy whose store failed stays dirty (durably marked in the cache index) and is stored
//! by a later flush or by the retry loop once the server answers. Owns per-inode open state
//! (`FileNode`) and handles. Must not touch the namespace.

use super::disk::CacheEntry;
use super::locks::label_for;
use super::CacheManager;
use crate::remote::Fetched;
use dfs_common::locks::{LockClass, LockMode, LockRange, LockRequest, ReleaseRequest};
use dfs_common::{FsError, Ino, Timestamp};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

/// The owner, within this client, of every writers' `Open` lock it takes.
pub(crate) const OPEN_OWNER: u64 = 0;

/// Per-inode state while a file is open on this client or holds unstored changes.
pub(crate) struct FileNode {
    ino: Ino,
    /// Serializes taking and giving back the writers' lock of this inode.
    grant: tokio::sync::Mutex<()>,
    /// Serializes the slow steps on one inode: making the copy current, storing it,
    /// truncating it.
    op: tokio::sync::Mutex<()>,
    /// `write` shares it; a store in flight holds it exclusively so the upload is a
    /// consistent snapshot.
    gate: tokio::sync::RwLock<()>,
    local: Mutex<Local>,
}

#[derive(Default)]
struct Local {
    /// Server version the local copy is based on (its file is `disk.path(ino, version)`).
    version: u64,
    /// The copy's read-write descriptor, shared by new handles while any is open.
    file: Option<Arc<File>>,
    /// The version `file` holds (older handles may still read an older copy).
    file_version: u64,
    dirty: bool,
    opens: u32,
    writers: u32,
    /// Bumped when the copy is replaced by a fetched version: the kernel's pages are stale.
    contents: u64,
    /// `contents` when the kernel last opened the file.
    kernel_contents: Option<u64>,
    /// Fencing token of the writers' lock this client holds on the inode.
    fence: Option<u64>,
}

/// An open file: what a FUSE file handle or a `DfsFile` refers to.
pub struct FileHandle {
    pub ino: Ino,
    pub writable: bool,
    node: Arc<FileNode>,
    file: Arc<File>,
}

pub struct OpenResult {
    pub fh: u64,
    /// The kernel may keep the pages it has: the contents did not change since.
    pub keep_cache: bool,
}

impl CacheManager {
    fn node(&self, ino: Ino) -> Arc<FileNode> {
        self.nodes
            .lock()
            .unwrap()
            .entry(ino)
            .or_insert_with(|| {
                Arc::new(FileNode {
                    ino,
                    grant: tokio::sync::Mutex::new(()),
                    op: tokio::sync::Mutex::new(()),
                    gate: tokio::sync::RwLock::new(()),
                    local: Mutex::new(Local::default()),
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

    fn in_use(&self, ino: Ino) -> bool {
        self.nodes.lock().unwrap().get(&ino).is_some_and(|n| {
            let l = n.local.lock().unwrap();
            l.opens > 0 || l.dirty
        })
    }

    /// Size and mtime of the local copy, when it has changes the server does not have.
    pub(crate) fn local_size(&self, ino: Ino) -> Option<(u64, Timestamp)> {
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
        Some((meta.len(), mtime))
    }

    /// Makes the on-disk copy of `ino` current with the server (or keeps a stale one when
    /// the server cannot be reached), and records its version in `node`.
    async fn make_current(&self, node: &FileNode) -> Result<(), FsError> {
        let ino = node.ino;
        let entry = self.disk.get(ino);
        if let (Some(entry), Some(attr)) = (&entry, self.trusted_attr(ino)) {
            if entry.version == attr.version {
                node.local.lock().unwrap().version = entry.version;
                return Ok(());
            }
        }
        let t = self.ticket();
        let part = self.disk.part_path(ino);
        let fetched = self
            .remote
            .fetch(ino, entry.as_ref().map(|e| e.version), &part)
            .await;
        match fetched {
            Ok(Fetched::NotModified(attr)) => {
                self.remember_attr(&attr, t);
                node.local.lock().unwrap().version = attr.version;
                Ok(())
            }
            Ok(Fetched::Fetched(attr)) => {
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
    async fn start_truncated(&self, node: &FileNode) -> Result<(), FsError> {
        let attr = self.getattr(node.ino).await?;
        if attr.kind != dfs_common::FileKind::File {
            return Err(FsError::IsDir);
        }
        File::create(self.disk.path(node.ino, attr.version))?;
        {
            let mut l = node.local.lock().unwrap();
            l.version = attr.version;
            l.contents += 1;
        }
        self.mark_dirty(node, 0)
    }

    /// Opens `ino` with open(2) `flags` for user `uid`. An open for writing first takes the
    /// file's write lock (waiting, bounded, for another client's writer to close).
    pub async fn open(&self, ino: Ino, flags: i32, uid: u32) -> Result<OpenResult, FsError> {
        let writable = flags & libc::O_ACCMODE != libc::O_RDONLY;
        let truncate = writable && flags & libc::O_TRUNC != 0;
        let node = self.node(ino);
        if writable {
            if let Err(e) = self.take_open_lock(&node, uid).await {
                self.maybe_drop_node(&node);
                return Err(e);
            }
        }
        let _op = node.op.lock().await;
        // Local changes win until stored; otherwise every open sees the current version,
        // while handles opened earlier keep reading the copy they opened.
        let local_changes = {
            let l = node.local.lock().unwrap();
            l.dirty || l.writers > 0
        };
        if !local_changes {
            let ready = if truncate {
                self.start_truncated(&node).await
            } else {
                self.make_current(&node).await
            };
            if let Err(e) = ready {
                drop(_op);
                self.release_open_lock_later(&node);
                self.maybe_drop_node(&node);
                return Err(e);
            }
        }
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
                            let f = OpenOptions::new()
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
            self.mark_dirty(&node, 0)?;
        }
        let keep_cache = {
            let mut l = node.local.lock().unwrap();
            l.opens += 1;
            if writable {
                l.writers += 1;
            }
            let keep = l.kernel_contents == Some(l.contents);
            l.kernel_contents = Some(l.contents);
            keep
        };
        let fh = self.next_handle.fetch_add(1, Ordering::Relaxed);
        let handle = Arc::new(FileHandle {
            ino,
            writable,
            node: node.clone(),
            file,
        });
        self.handles.lock().unwrap().insert(fh, handle);
        Ok(OpenResult { fh, keep_cache })
    }

    /// Creates `name` in `parent` and opens it (O_CREAT; O_EXCL honoured).
    #[allow(clippy::too_many_arguments)]
    pub async fn create(
        &self,
        parent: Ino,
        name: &[u8],
        mode: u32,
        uid: u32,
        gid: u32,
        flags: i32,
    ) -> Result<(dfs_common::Attr, OpenResult), FsError> {
        if name.len() > dfs_common::types::NAME_MAX {
            return Err(FsError::NameTooLong);
        }
        let t = self.ticket();
        let req = dfs_common::proto::DirRequest::Create {
            parent,
            name: name.to_vec(),
            mode,
            uid,
            gid,
            exclusive: flags & libc::O_EXCL != 0,
        };
        let attr = match self.remote.dir(&req).await? {
            dfs_common::proto::DirReply::Attr(a) => a,
            _ => return Err(FsError::Io("unexpected answer to create".into())),
        };
        self.remember_attr(&attr, t);
        {
            let stamp = self.validity.stamp(t);
            let mut meta = self.meta.lock().unwrap();
            meta.forget_ino(parent);
            meta.put_name(parent, name.to_vec(), attr.ino, stamp);
        }
        if attr.size == 0 && self.disk.get(attr.ino).is_none() {
            // A new empty file needs no fetch: its copy is an empty local file.
            let path = self.disk.path(attr.ino, attr.version);
            File::create(&path)?;
            self.disk.put(
                attr.ino,
                CacheEntry {
                    version: attr.version,
                    size: 0,
                    dirty: false,
                },
            )?;
        }
        let opened = self.open(attr.ino, flags, uid).await?;
        let attr = self.overlay(attr);
        Ok((attr, opened))
    }

    pub(crate) fn handle(&self, fh: u64) -> Result<Arc<FileHandle>, FsError> {
        self.handles
            .lock()
            .unwrap()
            .get(&fh)
            .cloned()
            .ok_or_else(|| FsError::Invalid(format!("no open file handle {fh}")))
    }

    /// Reads from the local copy. Never touches the network.
    pub fn read(&self, fh: u64, offset: u64, size: u32) -> Result<Vec<u8>, FsError> {
        let h = self.handle(fh)?;
        let mut buf = vec![0u8; size as usize];
        let mut filled = 0;
        while filled < buf.len() {
            match h.file.read_at(&mut buf[filled..], offset + filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
        }
        buf.truncate(filled);
        Ok(buf)
    }

    /// Writes to the local copy. Blocks (the calling thread, not the network) while a store
    /// of the same file is uploading. Must not be called from inside the async runtime.
    pub fn write(&self, fh: u64, offset: u64, data: &[u8]) -> Result<u32, FsError> {
        let h = self.handle(fh)?;
        if !h.writable {
            return Err(FsError::PermissionDenied(
                "file not open for writing".into(),
            ));
        }
        let _shared = match h.node.gate.try_read() {
            Ok(g) => g,
            Err(_) => h.node.gate.blocking_read(),
        };
        h.file.write_all_at(data, offset)?;
        let dirty = h.node.local.lock().unwrap().dirty;
        if !dirty {
            let len = h.file.metadata()?.len();
            self.mark_dirty(&h.node, len)?;
        }
        Ok(data.len() as u32)
    }

    /// Records, durably, that the copy of `node` has unstored changes.
    fn mark_dirty(&self, node: &FileNode, size: u64) -> Result<(), FsError> {
        let version = {
            let mut l = node.local.lock().unwrap();
            if l.dirty {
                return Ok(());
            }
            l.dirty = true;
            l.version
        };
        self.disk.put(
            node.ino,
            CacheEntry {
                version,
                size,
                dirty: true,
            },
        )
    }

    /// Truncates the local copy if the file is open for writing or dirty here (the change is
    /// stored with the rest). Returns false when the server should do it instead.
    pub(crate) async fn truncate_open_file(&self, ino: Ino, len: u64) -> Result<bool, FsError> {
        let Some(node) = self.nodes.lock().unwrap().get(&ino).cloned() else {
            return Ok(false);
        };
        let _op = node.op.lock().await;
        let file = {
            let l = node.local.lock().unwrap();
            if !(l.dirty || l.writers > 0) {
                return Ok(false);
            }
            l.file.clone().filter(|_| l.file_version == l.version)
        };
        let _excl = node.gate.write().await;
        match file {
            Some(f) => f.set_len(len)?,
            None => {
                let version = node.local.lock().unwrap().version;
                OpenOptions::new()
                    .write(true)
                    .open(self.disk.path(ino, version))?
                    .set_len(len)?
            }
        }
        self.mark_dirty(&node, len)?;
        self.disk.set_size(ino, len);
        Ok(true)
    }

    /// Sets the times of a copy with unstored changes, which its store then carries.
    /// Returns false when the file has no unstored changes (the server sets them instead).
    pub(crate) fn set_local_times(
        &self,
        ino: Ino,
        atime: Option<dfs_common::types::SetTime>,
        mtime: Option<dfs_common::types::SetTime>,
    ) -> Result<bool, FsError> {
        use dfs_common::types::SetTime;
        let Some(node) = self.nodes.lock().unwrap().get(&ino).cloned() else {
            return Ok(false);
        };
        let l = node.local.lock().unwrap();
        if !l.dirty {
            return Ok(false);
        }
        let resolve = |t: SetTime| match t {
            SetTime::Now => std::time::SystemTime::now(),
            SetTime::At(t) => t.to_system(),
        };
        let mut times = std::fs::FileTimes::new();
        if let Some(t) = atime {
            times = times.set_accessed(resolve(t));
        }
        if let Some(t) = mtime {
            times = times.set_modified(resolve(t));
        }
        let file = match &l.file {
            Some(f) if l.file_version == l.version => f.clone(),
            _ => Arc::new(
                OpenOptions::new()
                    .write(true)
                    .open(self.disk.path(ino, l.version))?,
            ),
        };
        file.set_times(times)?;
        Ok(true)
    }

    /// Stores the file if this handle may have changed it. Called on every close(2).
    pub async fn flush(&self, fh: u64) -> Result<(), FsError> {
        let h = self.handle(fh)?;
        if !h.writable {
            return Ok(());
        }
        self.store_node(&h.node).await
    }

    /// Stores the file if it has unstored changes, whichever handle made them.
    pub async fn fsync(&self, fh: u64) -> Result<(), FsError> {
        let h = self.handle(fh)?;
        self.store_node(&h.node).await
    }

    /// Closes a handle. Unstored changes stay in the cache for the retry loop.
    pub fn release(&self, fh: u64) {
        let Some(h) = self.handles.lock().unwrap().remove(&fh) else {
            return;
        };
        {
            let mut l = h.node.local.lock().unwrap();
            l.opens = l.opens.saturating_sub(1);
            if h.writable {
                l.writers = l.writers.saturating_sub(1);
            }
            if l.opens == 0 {
                l.file = None;
            }
        }
        let node = h.node.clone();
        drop(h);
        self.release_open_lock_later(&node);
        self.maybe_drop_node(&node);
    }

    /// Takes the writers' lock of `node` for this client unless it already holds it.
    /// Afterwards the cached attributes are not trusted: the previous writer's store may
    /// have landed just before the grant, its break still on the way.
    async fn take_open_lock(&self, node: &FileNode, uid: u32) -> Result<(), FsError> {
        let _grant = node.grant.lock().await;
        if node.local.lock().unwrap().fence.is_some() {
            return Ok(());
        }
        let req = LockRequest {
            ino: node.ino,
            class: LockClass::Open,
            mode: LockMode::Exclusive,
            range: LockRange::WHOLE,
            owner: OPEN_OWNER,
            pid: 0,
            label: label_for(uid),
            wait_ms: 0,
        };
        match self.lock_acquire(req, self.lock_wait).await {
            Ok(token) => {
                node.local.lock().unwrap().fence = Some(token);
                self.meta.lock().unwrap().forget_ino(node.ino);
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
    fn release_open_lock_later(&self, node: &Arc<FileNode>) {
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

    /// Our write lock lapsed (or was never had). Win it back, but store only if nobody else
    /// stored since our copy's base version; otherwise keep our copy aside and report it.
    async fn rewin_open_lock(&self, node: &FileNode, base: u64) -> Result<Option<u64>, FsError> {
        let _grant = node.grant.lock().await;
        if let Some(token) = node.local.lock().unwrap().fence {
            return Ok(Some(token));
        }
        // SAFETY: getuid cannot fail.
        let uid = unsafe { libc::getuid() };
        let req = LockRequest {
            ino: node.ino,
            class: LockClass::Open,
            mode: LockMode::Exclusive,
            range: LockRange::WHOLE,
            owner: OPEN_OWNER,
            pid: 0,
            label: label_for(uid),
            wait_ms: 0,
        };
        let token = match self.lock_acquire(req, std::time::Duration::ZERO).await {
            Ok(token) => token,
            Err(FsError::Unavailable(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        node.local.lock().unwrap().fence = Some(token);
        let current = self
            .remote
            .dir(&dfs_common::proto::DirRequest::GetAttr { ino: node.ino })
            .await?;
        let dfs_common::proto::DirReply::Attr(attr) = current else {
            return Err(FsError::Io("unexpected answer to getattr".into()));
        };
        if attr.version == base {
            return Ok(Some(token));
        }
        let kept = self.keep_aside(node, base)?;
        let msg = format!(
            "inode {}: another writer stored version {} while our write lock had lapsed;              our copy (based on version {base}) is kept at {}",
            node.ino,
            attr.version,
            kept.display()
        );
        log::error!("{msg}");
        Err(FsError::Stale(msg))
    }

    /// Moves a dirty copy that can no longer be stored to `lost+found` in the cache.
    fn keep_aside(&self, node: &FileNode, version: u64) -> Result<std::path::PathBuf, FsError> {
        let dir = self.cache_dir.join("lost+found");
        std::fs::create_dir_all(&dir)?;
        let secs = Timestamp::now().secs;
        let dest = dir.join(format!("{}-v{version}-{secs}", node.ino));
        std::fs::rename(self.disk.path(node.ino, version), &dest)?;
        node.local.lock().unwrap().dirty = false;
        let _ = self.disk.remove(node.ino);
        Ok(dest)
    }

    /// Forgets a node nobody uses any more (no handle, nothing unstored).
    fn maybe_drop_node(&self, node: &Arc<FileNode>) {
        let mut nodes = self.nodes.lock().unwrap();
        let idle = {
            let l = node.local.lock().unwrap();
            l.opens == 0 && !l.dirty
        };
        // The map and our caller hold the only references: nobody is between lookup and use.
        if idle && Arc::strong_count(node) == 2 && node.op.try_lock().is_ok() {
            nodes.remove(&node.ino);
        }
    }

    /// Stores the copy of `node` if it is dirty: upload, then adopt the server's new version.
    async fn store_node(&self, node: &FileNode) -> Result<(), FsError> {
        let ino = node.ino;
        let _op = node.op.lock().await;
        let _excl = node.gate.write().await;
        let version = {
            let l = node.local.lock().unwrap();
            if !l.dirty {
                return Ok(());
            }
            l.version
        };
        let path = self.disk.path(ino, version);
        let mut fence = node.local.lock().unwrap().fence;
        if fence.is_none() {
            fence = self.rewin_open_lock(node, version).await?;
        }
        let t = self.ticket();
        let mut stored = self.remote.store(ino, &path, fence).await;
        if let Err(FsError::Stale(why)) = &stored {
            log::warn!("inode {ino}: store refused, write lock lapsed: {why}");
            node.local.lock().unwrap().fence = None;
            let fence = self.rewin_open_lock(node, version).await?;
            stored = self.remote.store(ino, &path, fence).await;
        }
        match stored {
            Ok(attr) => {
                let new_path = self.disk.path(ino, attr.version);
                std::fs::rename(&path, &new_path)?;
                {
                    let mut l = node.local.lock().unwrap();
                    if l.file.is_some() && l.file_version == l.version {
                        l.file_version = attr.version;
                    }
                    l.version = attr.version;
                }
                self.disk.put(
                    ino,
                    CacheEntry {
                        version: attr.version,
                        size: attr.size,
                        dirty: false,
                    },
                )?;
                node.local.lock().unwrap().dirty = false;
                self.remember_attr(&attr, t);
                Ok(())
            }
            Err(FsError::NotFound) => {
                // Deleted on the server while we wrote: there is nowhere to store it.
                log::info!("inode {ino} was deleted on the server; dropping local changes");
                node.local.lock().unwrap().dirty = false;
                let _ = self.disk.remove(ino);
                Ok(())
            }
            Err(e) => {
                log::warn!("store of inode {ino} failed, changes kept in the cache: {e}");
                Err(e)
            }
        }
    }

    /// Stores every dirty file nobody has open for writing. Returns how many are left.
    pub async fn store_dirty(&self) -> usize {
        let dirty: Vec<Arc<FileNode>> = self
            .nodes
            .lock()
            .unwrap()
            .values()
            .filter(|n| {
                let l = n.local.lock().unwrap();
                l.dirty && l.writers == 0
            })
            .cloned()
            .collect();
        let mut left = 0;
        for node in dirty {
            match self.store_node(&node).await {
                Ok(()) => {
                    self.release_open_lock_later(&node);
                    self.maybe_drop_node(&node);
                }
                Err(_) => left += 1,
            }
        }
        left
    }

    /// How many files have changes the server has not acknowledged.
    pub fn dirty_count(&self) -> usize {
        self.nodes
            .lock()
            .unwrap()
            .values()
            .filter(|n| n.local.lock().unwrap().dirty)
            .count()
    }
}
