//! FUSE passthrough: the kernel reads and writes an open file's cached copy directly, so a
//! cached file is used at local-disk speed. Owns the backing ids: one per inode, shared by
//! every live open of it (the kernel refuses two backing files for one inode), dropped at
//! the last release. When the kernel or our privileges refuse passthrough, it switches off
//! for good and opens fall back to plain read/write handlers with FOPEN_KEEP_CACHE.

use fuser::BackingId;
use std::collections::HashMap;
use std::fs::File;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

#[derive(Default)]
pub struct Backings {
    enabled: AtomicBool,
    ids: Mutex<Ids>,
}

#[derive(Default)]
struct Ids {
    by_ino: HashMap<u64, Weak<BackingId>>,
    by_handle: HashMap<u64, Arc<BackingId>>,
}

impl Backings {
    pub fn enable(&self) {
        self.enabled.store(true, Ordering::SeqCst);
    }

    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::SeqCst)
    }

    /// The backing id for a new open `fh` of `ino` whose copy is `file`, made with `make`
    /// unless a live one exists. `None`: serve this open with plain handlers.
    pub fn attach(
        &self,
        ino: u64,
        fh: u64,
        file: &File,
        make: impl FnOnce(&File) -> std::io::Result<BackingId>,
    ) -> Option<Arc<BackingId>> {
        if !self.enabled() {
            return None;
        }
        let mut ids = self.ids.lock().unwrap();
        let id = match ids.by_ino.get(&ino).and_then(Weak::upgrade) {
            Some(id) => id,
            None => match make(file) {
                Ok(id) => {
                    let id = Arc::new(id);
                    ids.by_ino.insert(ino, Arc::downgrade(&id));
                    id
                }
                Err(e) => {
                    self.enabled.store(false, Ordering::SeqCst);
                    log::warn!(
                        "FUSE passthrough refused ({e}); using plain read/write handlers with the kernel page cache"
                    );
                    return None;
                }
            },
        };
        ids.by_handle.insert(fh, id.clone());
        Some(id)
    }

    /// Drops the handle's reference; the kernel forgets the backing file with the last one.
    pub fn detach(&self, ino: u64, fh: u64) {
        let mut ids = self.ids.lock().unwrap();
        if ids.by_handle.remove(&fh).is_some()
            && ids.by_ino.get(&ino).is_some_and(|w| w.strong_count() == 0)
        {
            ids.by_ino.remove(&ino);
        }
    }
}
