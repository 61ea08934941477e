//! FUSE passthrough: the kernel reads and writes an open file's cached copy directly, so a
//! cached file is used at local-disk speed. Owns the backing ids: one per inode, shared by
//! every live open of it (the kernel refuses two backing files for one inode). At the last
//! release a backing id of a small copy that was only read is parked rather than closed,
//! and the next open of the same copy (the same file, by device and inode number) takes
//! it back: a warm open then costs no `FUSE_DEV_IOC_BACKING_OPEN`/`_CLOSE` pair, a fifth
//! of the daemon's samples in a loop of warm opens of small files. When the kernel or our
//! privileges refuse passthrough, it switches off for good and opens fall back to plain
//! read/write handlers with FOPEN_KEEP_CACHE.

use fuser::BackingId;
use std::collections::HashMap;
use std::fs::File;
use std::num::NonZeroUsize;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// Most backing ids parked at once.
const PARKED_MAX: usize = 16384;
/// Copies larger than this are not parked: a parked id keeps its file, even one the cache
/// has evicted, on disk.
const PARK_SIZE_MAX: u64 = 1 << 20;
/// Most bytes of copies parked at once (by their size when they were opened).
const PARKED_BYTES_MAX: u64 = 256 << 20;

#[derive(Default)]
pub struct Backings {
    enabled: AtomicBool,
    ids: Mutex<Ids>,
}

/// Which file a backing id reads: device and inode number.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct FileKey {
    dev: u64,
    ino: u64,
}

/// A live backing id's file, its size when first opened, and whether a writer used it.
struct Live {
    id: Weak<BackingId>,
    key: Option<FileKey>,
    size: u64,
    written: bool,
}

struct Parked {
    key: FileKey,
    size: u64,
    id: Arc<BackingId>,
}

struct Ids {
    by_ino: HashMap<u64, Live>,
    by_handle: HashMap<u64, Arc<BackingId>>,
    /// Backing ids of inodes with no open handle, least recently released first.
    parked: lru::LruCache<u64, Parked>,
    parked_bytes: u64,
}

impl Default for Ids {
    fn default() -> Ids {
        Ids {
            by_ino: HashMap::new(),
            by_handle: HashMap::new(),
            parked: lru::LruCache::new(NonZeroUsize::new(PARKED_MAX).expect("not zero")),
            parked_bytes: 0,
        }
    }
}

impl Backings {
    pub fn enable(&self) {
        self.enabled.store(true, Ordering::SeqCst);
    }

    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::SeqCst)
    }

    /// The backing id for a new open `fh` of `ino` whose copy is `file`: the live one if
    /// the inode has open handles, the parked one if it reads this same file, else one
    /// made with `make`. `None`: serve this open with plain handlers.
    pub fn attach(
        &self,
        ino: u64,
        fh: u64,
        file: &File,
        writable: bool,
        make: impl FnOnce(&File) -> std::io::Result<BackingId>,
    ) -> Option<Arc<BackingId>> {
        if !self.enabled() {
            return None;
        }
        let mut ids = self.ids.lock().unwrap();
        let live = ids
            .by_ino
            .get_mut(&ino)
            .and_then(|l| l.id.upgrade().map(|id| (id, l)));
        let id = match live {
            Some((id, l)) => {
                l.written |= writable;
                id
            }
            None => {
                let meta = file.metadata().ok();
                let key = meta.as_ref().map(|m| FileKey {
                    dev: m.dev(),
                    ino: m.ino(),
                });
                let size = meta.map_or(u64::MAX, |m| m.len());
                let parked = ids.parked.pop(&ino).and_then(|p| {
                    ids.parked_bytes -= p.size;
                    (Some(p.key) == key).then_some(p.id)
                });
                let id = match parked {
                    Some(id) => id,
                    None => match make(file) {
                        Ok(id) => Arc::new(id),
                        Err(e) => {
                            self.enabled.store(false, Ordering::SeqCst);
                            log::warn!(
                                "FUSE passthrough refused ({e}); using plain read/write handlers with the kernel page cache"
                            );
                            return None;
                        }
                    },
                };
                let live = Live {
                    id: Arc::downgrade(&id),
                    key,
                    size,
                    written: writable,
                };
                ids.by_ino.insert(ino, live);
                id
            }
        };
        ids.by_handle.insert(fh, id.clone());
        Some(id)
    }

    /// Drops the handle's reference. With the last one the backing id is parked if its copy
    /// is small and was only read, else the kernel forgets the backing file.
    pub fn detach(&self, ino: u64, fh: u64) {
        let mut ids = self.ids.lock().unwrap();
        let Some(id) = ids.by_handle.remove(&fh) else {
            return;
        };
        if Arc::strong_count(&id) > 1 {
            return;
        }
        let Some(live) = ids.by_ino.remove(&ino) else {
            return;
        };
        let Some(key) = live
            .key
            .filter(|_| !live.written && live.size <= PARK_SIZE_MAX)
        else {
            return;
        };
        ids.parked_bytes += live.size;
        let parked = Parked {
            key,
            size: live.size,
            id,
        };
        if let Some((_, old)) = ids.parked.push(ino, parked) {
            ids.parked_bytes -= old.size;
        }
        while ids.parked_bytes > PARKED_BYTES_MAX {
            match ids.parked.pop_lru() {
                Some((_, old)) => ids.parked_bytes -= old.size,
                None => break,
            }
        }
    }
}
