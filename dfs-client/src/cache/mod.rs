//! The cache manager: the client library of dfs. It turns inode operations into whole-file
//! fetch on open and store on close, answers from its caches while it holds the server's
//! callback promise, and applies callback breaks. The FUSE adapter and the path API are
//! thin layers over it. Owns: which cached facts may be trusted (`Validity`); its parts
//! each have one owner: the node table (`nodes`), each file's state and its transitions
//! (`file_state`), open handles (`files`), the disk cache (`disk`), metadata caches
//! (`meta`), write-behind (`behind`), the writers' lock (`writelock`), namespace calls
//! (`namespace`). It must not know about FUSE types.

mod behind;
mod create;
pub mod disk;
mod error;
mod file_state;
mod files;
pub(crate) mod filling;
mod index_writer;
mod io;
pub mod locks;
pub mod meta;
mod namespace;
mod nodes;
mod orphans;
mod special;
mod store;
#[cfg(all(test, feature = "testing"))]
mod tests;
pub(crate) mod writelock;
mod xattrs;

use crate::port::{Server, Who};
use dfs_common::{Attr, FsError, Ino};
use disk::DiskCache;
use meta::{MetaCache, Stamp};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

pub use error::{CacheError, CacheResult};
pub use files::{FileHandle, OpenResult};
pub use meta::{DirItem, XattrSet};
pub use special::{special_kind, Creator};

/// What the kernel must forget after a callback break. The FUSE adapter delivers these.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invalidation {
    /// Attributes and cached pages of an inode.
    Inode(Ino),
    /// Only the attributes of an inode (our own store gave it a new ctime and version;
    /// the pages the kernel holds are of those very contents).
    Attrs(Ino),
    /// One name in one directory.
    Entry(Ino, Vec<u8>),
}

pub type InvalidationSink = Box<dyn Fn(Invalidation) + Send + Sync>;

/// Which facts the client may trust without asking the server.
///
/// `generation` changes whenever the callback channel connects or is lost; a fact stamped
/// with an older generation is stale. `breaks` counts callback breaks, so that an answer
/// that raced with a break is stored as stale rather than trusted.
pub(crate) struct Validity {
    generation: AtomicU64,
    channel_up: AtomicBool,
    breaks: AtomicU64,
}

/// Taken before a call to the server; turned into the stamp for its answer afterwards.
#[derive(Clone, Copy)]
pub(crate) struct Ticket {
    generation: u64,
    breaks: u64,
    up: bool,
}

impl Validity {
    fn ticket(&self) -> Ticket {
        Ticket {
            up: self.channel_up.load(Ordering::SeqCst),
            generation: self.generation.load(Ordering::SeqCst),
            breaks: self.breaks.load(Ordering::SeqCst),
        }
    }

    fn stamp(&self, t: Ticket) -> Stamp {
        if t.up
            && self.channel_up.load(Ordering::SeqCst)
            && self.generation.load(Ordering::SeqCst) == t.generation
            && self.breaks.load(Ordering::SeqCst) == t.breaks
        {
            Stamp(t.generation)
        } else {
            Stamp::STALE
        }
    }

    fn trusted(&self, s: Stamp) -> bool {
        s != Stamp::STALE
            && self.channel_up.load(Ordering::SeqCst)
            && self.generation.load(Ordering::SeqCst) == s.0
    }
}

/// Options of a cache manager.
#[derive(Clone, Debug)]
pub struct CacheOptions {
    /// Most bytes of clean cached files kept on disk.
    pub cache_bytes: u64,
    /// Entries in each in-memory metadata LRU.
    pub meta_entries: usize,
    /// Memory for whole small files (up to 64 KiB each) read through the daemon.
    pub small_file_bytes: usize,
    /// How long an open for writing (or a blocking flock/F_SETLKW) waits for a conflicting
    /// holder before failing with EAGAIN.
    pub lock_wait: std::time::Duration,
}

impl Default for CacheOptions {
    fn default() -> Self {
        CacheOptions {
            cache_bytes: 10 << 30,
            meta_entries: 100_000,
            small_file_bytes: 32 << 20,
            lock_wait: std::time::Duration::from_secs(30),
        }
    }
}

/// What a mount reports to `dfs status` (over its control socket).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct MountStatus {
    pub server: String,
    pub client_id: u64,
    pub callback_channel_up: bool,
    pub cached_files: usize,
    pub cached_bytes: u64,
    pub unstored_files: usize,
}

pub struct CacheManager {
    /// The server, through the port (`crate::port`): the only way out of the cache.
    pub(crate) server: Arc<dyn Server>,
    pub(crate) disk: DiskCache,
    pub(crate) meta: Mutex<MetaCache>,
    pub(crate) small_files: Mutex<meta::SmallFiles>,
    pub(crate) validity: Validity,
    pub(crate) nodes: Mutex<HashMap<Ino, Arc<nodes::FileNode>>>,
    /// For inodes whose node was dropped: what the kernel's pages were, so that a later
    /// open can still tell the kernel to keep them (FOPEN_KEEP_CACHE).
    pub(crate) kernel_pages: Mutex<lru::LruCache<Ino, file_state::KernelPages>>,
    pub(crate) handles: Mutex<HashMap<u64, Arc<FileHandle>>>,
    pub(crate) next_handle: AtomicU64,
    sink: Mutex<Option<InvalidationSink>>,
    epoch: Mutex<Option<u64>>,
    /// Advisory locks this client holds: (ino, owner), renewed together.
    pub(crate) advisory: Mutex<std::collections::HashSet<(Ino, u64)>>,
    /// The lock service's lease, learnt from its answers.
    pub(crate) lease_ms: AtomicU64,
    /// How long an open for writing waits for another client's write lock.
    pub(crate) lock_wait: std::time::Duration,
    /// Writers' locks given back, not yet sent (see `writelock`).
    pub(crate) releases: Mutex<Vec<Arc<nodes::FileNode>>>,
    pub(crate) release_due: tokio::sync::Notify,
    pub(crate) cache_dir: std::path::PathBuf,
    pub(crate) rt: tokio::runtime::Handle,
    /// The kernel reads and writes open files directly (FUSE passthrough): writes never
    /// reach `write`, so changes are detected at flush.
    pub(crate) passthrough: AtomicBool,
    /// This manager, for work that outlives the call that starts it (a fetch that goes
    /// on after its open has been answered).
    pub(crate) me: Weak<CacheManager>,
}

impl CacheManager {
    /// A manager that reaches its server through `server`, with its cache in `cache_dir`.
    /// Dirty files left by an earlier run are picked up and stored once the server answers.
    /// Call inside a tokio runtime (its handle runs work started from FUSE threads).
    pub fn with_server(
        server: Arc<dyn Server>,
        cache_dir: &Path,
        opts: CacheOptions,
    ) -> Result<Arc<Self>, CacheError> {
        dfs_common::private_files::create_dir_all(cache_dir)?;
        let disk = DiskCache::open(cache_dir, opts.cache_bytes)?;
        let rt = tokio::runtime::Handle::try_current()
            .map_err(|_| FsError::Io("CacheManager::new needs a tokio runtime".into()))?;
        let mgr = Arc::new_cyclic(|me| CacheManager {
            me: me.clone(),
            server,
            disk,
            meta: Mutex::new(MetaCache::new(opts.meta_entries)),
            small_files: Mutex::new(meta::SmallFiles::new(opts.small_file_bytes)),
            validity: Validity {
                generation: AtomicU64::new(1),
                channel_up: AtomicBool::new(false),
                breaks: AtomicU64::new(0),
            },
            nodes: Mutex::new(HashMap::new()),
            kernel_pages: Mutex::new(lru::LruCache::new(
                std::num::NonZeroUsize::new(opts.meta_entries.max(1)).expect("at least 1"),
            )),
            handles: Mutex::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
            sink: Mutex::new(None),
            epoch: Mutex::new(None),
            advisory: Mutex::new(std::collections::HashSet::new()),
            lease_ms: AtomicU64::new(15_000),
            lock_wait: opts.lock_wait,
            releases: Mutex::new(Vec::new()),
            release_due: tokio::sync::Notify::new(),
            cache_dir: cache_dir.to_path_buf(),
            passthrough: AtomicBool::new(false),
            rt,
        });
        mgr.adopt_dirty_files();
        Ok(mgr)
    }

    pub fn client_id(&self) -> u64 {
        self.server.client_id()
    }

    /// One directory-service call for `who`, its error as the cache reports it.
    pub(crate) async fn dir_call(
        &self,
        who: &Who,
        req: &dfs_common::proto::DirRequest,
    ) -> Result<dfs_common::proto::DirReply, CacheError> {
        Ok(self.server.dir(who, req).await?)
    }

    /// What the mount reports to `dfs status`.
    pub fn status(&self, server: &str) -> MountStatus {
        let all = self.disk.all();
        MountStatus {
            server: server.to_string(),
            client_id: self.client_id(),
            callback_channel_up: self.validity.channel_up.load(Ordering::SeqCst),
            cached_files: all.len(),
            cached_bytes: self.disk.total_bytes(),
            unstored_files: self.dirty_count(),
        }
    }

    /// How full the disk cache is: bytes held, the limit of clean bytes, copies.
    pub fn cache_fill(&self) -> (u64, u64, usize) {
        self.disk.fill()
    }

    /// Makes the cache index durable, so the next mount revalidates these copies instead
    /// of fetching them again (called at a clean unmount).
    pub fn persist_cache_index(&self) -> Result<(), CacheError> {
        self.disk.persist_now()
    }

    /// Called by the FUSE adapter when the kernel serves open files directly from their
    /// cached copies (passthrough), so that writes bypass this manager.
    pub fn set_passthrough(&self, on: bool) {
        self.passthrough.store(on, Ordering::SeqCst);
    }

    /// Where kernel invalidations go (set by the FUSE adapter once mounted).
    pub fn set_invalidation_sink(&self, sink: InvalidationSink) {
        *self.sink.lock().unwrap() = Some(sink);
    }

    pub(crate) fn invalidate(&self, inv: Invalidation) {
        if let Some(sink) = self.sink.lock().unwrap().as_ref() {
            sink(inv);
        }
    }

    pub(crate) fn ticket(&self) -> Ticket {
        self.validity.ticket()
    }

    pub(crate) fn remember_attr(&self, attr: &Attr, t: Ticket) {
        let stamp = self.validity.stamp(t);
        self.meta.lock().unwrap().put_attr(attr.clone(), stamp);
        self.node_saw_attr(attr);
    }

    /// Cached attributes of `ino` if the promise that covers them still holds.
    pub(crate) fn trusted_attr(&self, ino: Ino) -> Option<Attr> {
        let (attr, stamp) = self.meta.lock().unwrap().attr(ino)?;
        self.validity.trusted(stamp).then_some(attr)
    }

    /// Whether facts about `ino` learnt now would be trusted (the kernel may cache long).
    pub fn holds_promise(&self, ino: Ino) -> bool {
        self.trusted_attr(ino).is_some()
    }

    // ---- the callback channel reports here (see crate::callbacks) ----

    /// A `Hello` arrived. A different epoch means the server restarted and forgot every
    /// promise; in every case promises made before this connection are void.
    pub(crate) fn channel_connected(&self, epoch: u64) -> bool {
        let restarted = {
            let mut e = self.epoch.lock().unwrap();
            let restarted = e.is_some_and(|old| old != epoch);
            *e = Some(epoch);
            restarted
        };
        self.validity.generation.fetch_add(1, Ordering::SeqCst);
        self.validity.channel_up.store(true, Ordering::SeqCst);
        crate::metrics::CHANNEL_CONNECTS.inc();
        restarted
    }

    pub(crate) fn channel_lost(&self) {
        crate::metrics::CHANNEL_LOSSES.inc();
        self.validity.channel_up.store(false, Ordering::SeqCst);
        self.validity.generation.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn revalidate_all_promises(&self) {
        self.validity.generation.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn break_ino(&self, ino: Ino) {
        crate::metrics::BREAKS_RECEIVED.inc();
        self.validity.breaks.fetch_add(1, Ordering::SeqCst);
        self.meta.lock().unwrap().forget_ino(ino);
        self.invalidate(Invalidation::Inode(ino));
    }

    pub(crate) fn break_entry(&self, dir: Ino, name: Vec<u8>) {
        self.validity.breaks.fetch_add(1, Ordering::SeqCst);
        self.meta.lock().unwrap().forget_entry(dir, &name);
        self.invalidate(Invalidation::Entry(dir, name));
        self.invalidate(Invalidation::Inode(dir));
    }

    /// The breaks of one commit (a transaction), applied together: the metadata cache
    /// forgets all of them under one lock, so no reader trusts some of them and not others.
    pub(crate) fn break_group(&self, frames: Vec<dfs_common::proto::CallbackFrame>) {
        use dfs_common::proto::CallbackFrame;
        let mut kernel = Vec::new();
        {
            let mut meta = self.meta.lock().unwrap();
            self.validity.breaks.fetch_add(1, Ordering::SeqCst);
            for frame in frames {
                match frame {
                    CallbackFrame::Break { ino } => {
                        meta.forget_ino(ino);
                        kernel.push(Invalidation::Inode(ino));
                    }
                    CallbackFrame::EntryBreak { dir, name } => {
                        meta.forget_entry(dir, &name);
                        kernel.push(Invalidation::Entry(dir, name));
                        kernel.push(Invalidation::Inode(dir));
                    }
                    CallbackFrame::RevalidateAll => {
                        self.validity.generation.fetch_add(1, Ordering::SeqCst);
                    }
                    other => log::warn!("unexpected frame in a group: {other:?}"),
                }
            }
        }
        for inv in kernel {
            self.invalidate(inv);
        }
    }

    /// After a new connection: ask the server, in batches, for the current attributes of
    /// every cached file (a version compare, no data). Unchanged copies become trusted again
    /// (the server renewed the promise), so the next open makes no round trip; changed or
    /// deleted ones are dropped, and the kernel is told to forget them.
    pub(crate) async fn revalidate_cached(&self, who: &Who) -> Result<(), CacheError> {
        use dfs_common::proto::{DirReply, DirRequest};
        let held: Vec<(Ino, u64)> = self
            .disk
            .all()
            .into_iter()
            .filter(|(_, e)| !e.dirty)
            .map(|(i, e)| (i, e.version))
            .collect();
        for batch in held.chunks(2000) {
            let t = self.ticket();
            let reply = self
                .dir_call(
                    who,
                    &DirRequest::Validate {
                        held: batch.to_vec(),
                    },
                )
                .await?;
            let DirReply::Validated { current } = reply else {
                return Err(FsError::Io("unexpected answer to validate".into()).into());
            };
            for ((ino, held_version), (answered, attr)) in batch.iter().zip(current) {
                if *ino != answered {
                    return Err(FsError::Io("validate answered out of order".into()).into());
                }
                let before = self.meta.lock().unwrap().attr(*ino).map(|(a, _)| a);
                match attr {
                    Some(attr) if attr.version == *held_version => {
                        if before.as_ref().is_some_and(|b| *b != attr) {
                            self.invalidate(Invalidation::Inode(*ino));
                        }
                        self.remember_attr(&attr, t);
                    }
                    other => {
                        self.meta.lock().unwrap().forget_ino(*ino);
                        let in_use = self.nodes.lock().unwrap().contains_key(ino);
                        if !in_use {
                            let _ = self.disk.remove(*ino);
                        }
                        if let Some(attr) = other {
                            self.remember_attr(&attr, t);
                        }
                        self.invalidate(Invalidation::Inode(*ino));
                    }
                }
            }
        }
        Ok(())
    }
}
