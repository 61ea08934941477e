//! The on-disk cache of whole files: one file per (inode, version) under `CACHE/files/`,
//! and an index (redb, `CACHE/index.redb`) of what each holds, so that a remount
//! revalidates by version instead of refetching. Owns size accounting and LRU eviction,
//! which never touches a dirty file or one the caller says is open. It must not talk to
//! the server.

use super::error::CacheError;
use super::index_writer::{IndexWriter, INDEX};
use dfs_common::{private_files, Ino};
use redb::{Database, Durability, ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// What the cache holds for one inode.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheEntry {
    /// The server version the file was fetched or last stored as.
    pub version: u64,
    pub size: u64,
    /// Changed locally and not yet stored on the server.
    pub dirty: bool,
    /// The clean copy's mtime in ns when recorded (filled in by `put`): a copy whose file no
    /// longer matches size and mtime was changed by a writer that crashed before its mark
    /// reached the disk, and is dropped at open rather than trusted.
    pub mtime_ns: u64,
}

fn mtime_ns(meta: &std::fs::Metadata) -> u64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

struct Index {
    entries: HashMap<Ino, (CacheEntry, u64)>,
    total_bytes: u64,
    tick: u64,
}

pub struct DiskCache {
    files_dir: PathBuf,
    /// Writes the index's changes to `index.redb`, in the order they were made here.
    writer: IndexWriter,
    limit_bytes: u64,
    index: Mutex<Index>,
}

/// Tightens the modes under the cache dir `dir` (0700 directories, 0600 files), saying
/// what was open to others.
fn make_private(dir: &Path) -> Result<(), CacheError> {
    let done = private_files::tighten(dir)?;
    if done.changed_anything() {
        log::warn!(
            "{} directories and {} files of the cache {} were open to other local users; \
             they are now 0700 and 0600",
            done.dirs,
            done.files,
            dir.display()
        );
    }
    if !done.others.is_empty() {
        log::warn!(
            "the cache {} holds entries that are neither files nor directories: {:?}",
            dir.display(),
            done.others
        );
    }
    Ok(())
}

impl DiskCache {
    /// Opens (or creates) the cache at `dir`, dropping index entries whose file is gone or
    /// has the wrong size, and files that no entry claims (leftovers of a crash). Everything
    /// in it is made private to this user first (it holds copies of other users' files).
    pub fn open(dir: &Path, limit_bytes: u64) -> Result<DiskCache, CacheError> {
        let files_dir = dir.join("files");
        private_files::create_dir_all(&files_dir)?;
        make_private(dir)?;
        let index = dir.join("index.redb");
        // redb creates its file with the umask's mode; an empty private one it takes as is.
        private_files::options()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&index)?;
        let db = Database::create(index)?;
        let mut entries = HashMap::new();
        {
            let txn = db.begin_write()?;
            txn.open_table(INDEX)?;
            txn.commit()?;
            let txn = db.begin_read()?;
            let table = txn.open_table(INDEX)?;
            for row in table.iter()? {
                let (k, v) = row?;
                if let Ok(entry) = dfs_common::codec::decode::<CacheEntry>(v.value()) {
                    entries.insert(k.value(), entry);
                }
            }
        }
        let path_of = |ino: Ino, version: u64| files_dir.join(format!("{ino}.{version}"));
        let mut keep: HashMap<Ino, CacheEntry> = HashMap::new();
        let mut gone = Vec::new();
        for (ino, entry) in entries {
            let ok = std::fs::metadata(path_of(ino, entry.version))
                .map(|m| entry.dirty || (m.len() == entry.size && mtime_ns(&m) == entry.mtime_ns))
                .unwrap_or(false);
            if ok {
                keep.insert(ino, entry);
            } else {
                gone.push(ino);
            }
        }
        if !gone.is_empty() {
            let mut txn = db.begin_write()?;
            txn.set_durability(Durability::None)?;
            {
                let mut table = txn.open_table(INDEX)?;
                for ino in gone {
                    table.remove(ino)?;
                }
            }
            txn.commit()?;
        }
        let cache = DiskCache {
            files_dir,
            writer: IndexWriter::start(Arc::new(db))?,
            limit_bytes,
            index: Mutex::new(Index {
                entries: HashMap::new(),
                total_bytes: 0,
                tick: 0,
            }),
        };
        for file in std::fs::read_dir(&cache.files_dir)?.flatten() {
            let name = file.file_name().to_string_lossy().into_owned();
            let claimed = name
                .split_once('.')
                .and_then(|(i, v)| Some((i.parse::<u64>().ok()?, v.parse::<u64>().ok()?)))
                .is_some_and(|(i, v)| keep.get(&i).is_some_and(|e| e.version == v));
            if !claimed {
                let _ = std::fs::remove_file(file.path());
            }
        }
        {
            let mut idx = cache.index.lock().unwrap();
            for (ino, entry) in keep {
                idx.total_bytes += entry.size;
                idx.tick += 1;
                let t = idx.tick;
                idx.entries.insert(ino, (entry, t));
            }
        }
        Ok(cache)
    }

    /// Where the copy of `ino` at `version` lives.
    pub fn path(&self, ino: Ino, version: u64) -> PathBuf {
        self.files_dir.join(format!("{ino}.{version}"))
    }

    /// A fresh name to download into before the copy is complete.
    pub fn part_path(&self, ino: Ino) -> PathBuf {
        let mut r = [0u8; 8];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut r).ok();
        self.files_dir
            .join(format!("{ino}.part-{}", dfs_common::codec::to_hex(&r)))
    }

    pub fn get(&self, ino: Ino) -> Option<CacheEntry> {
        let mut idx = self.index.lock().unwrap();
        idx.tick += 1;
        let t = idx.tick;
        idx.entries.get_mut(&ino).map(|(e, used)| {
            *used = t;
            e.clone()
        })
    }

    /// Every entry, for revalidation and for storing dirty files.
    pub fn all(&self) -> Vec<(Ino, CacheEntry)> {
        let idx = self.index.lock().unwrap();
        idx.entries
            .iter()
            .map(|(i, (e, _))| (*i, e.clone()))
            .collect()
    }

    pub fn total_bytes(&self) -> u64 {
        self.index.lock().unwrap().total_bytes
    }

    /// Bytes held, the limit of clean bytes, and the number of copies.
    pub fn fill(&self) -> (u64, u64, usize) {
        let idx = self.index.lock().unwrap();
        (idx.total_bytes, self.limit_bytes, idx.entries.len())
    }

    /// Records `ino` as held at `entry`, replacing (and deleting the file of) any other
    /// version. The file at `path(ino, entry.version)` must already be complete.
    ///
    /// Not fsynced, and written to disk by the index writer just after: a lost clean entry
    /// costs a refetch, and a lost dirty mark is caught at open by the size/mtime check.
    /// `persist_now` makes everything so far durable (done when a store fails, so a failed
    /// close's data survives a client crash).
    pub fn put(&self, ino: Ino, mut entry: CacheEntry) -> Result<(), CacheError> {
        if !entry.dirty {
            entry.mtime_ns = std::fs::metadata(self.path(ino, entry.version))
                .map(|m| mtime_ns(&m))
                .unwrap_or(0);
        }
        if let Some(old) = self.record(ino, entry.clone()) {
            if old.version != entry.version {
                let _ = std::fs::remove_file(self.path(ino, old.version));
            }
        }
        Ok(())
    }

    /// Like `put`, after the caller renamed the file of version `from` to
    /// `path(ino, entry.version)` and read its metadata `meta` there: that file needs no
    /// delete and no second stat.
    pub fn put_renamed(
        &self,
        ino: Ino,
        from: u64,
        mut entry: CacheEntry,
        meta: &std::fs::Metadata,
    ) {
        if !entry.dirty {
            entry.mtime_ns = mtime_ns(meta);
        }
        if let Some(old) = self.record(ino, entry.clone()) {
            if old.version != entry.version && old.version != from {
                let _ = std::fs::remove_file(self.path(ino, old.version));
            }
        }
    }

    /// Puts `entry` in the index and queues it for the index writer; returns the entry it
    /// replaced.
    fn record(&self, ino: Ino, entry: CacheEntry) -> Option<CacheEntry> {
        let mut idx = self.index.lock().unwrap();
        idx.tick += 1;
        let t = idx.tick;
        idx.total_bytes += entry.size;
        let old = idx.entries.insert(ino, (entry.clone(), t));
        if let Some((o, _)) = &old {
            idx.total_bytes -= o.size;
        }
        self.writer.put(ino, entry);
        old.map(|(o, _)| o)
    }

    /// Makes every index change so far durable (one fsynced commit).
    pub fn persist_now(&self) -> Result<(), CacheError> {
        self.writer.sync()
    }

    /// Updates the recorded size of a dirty copy (no fsync: dirty is already durable).
    pub fn set_size(&self, ino: Ino, size: u64) {
        let mut idx = self.index.lock().unwrap();
        let mut delta: i128 = 0;
        if let Some((e, _)) = idx.entries.get_mut(&ino) {
            delta = size as i128 - e.size as i128;
            e.size = size;
        }
        idx.total_bytes = (idx.total_bytes as i128 + delta).max(0) as u64;
    }

    /// Forgets `ino` and deletes its file.
    pub fn remove(&self, ino: Ino) -> Result<(), CacheError> {
        let old = {
            let mut idx = self.index.lock().unwrap();
            let old = idx.entries.remove(&ino);
            if let Some((o, _)) = &old {
                idx.total_bytes -= o.size;
                self.writer.remove(ino);
            }
            old
        };
        if let Some((o, _)) = old {
            let _ = std::fs::remove_file(self.path(ino, o.version));
        }
        Ok(())
    }

    /// Evicts least recently used clean copies until the cache fits its limit.
    /// `in_use(ino)` protects files that are open.
    pub fn evict(&self, in_use: &dyn Fn(Ino) -> bool) {
        let victims: Vec<Ino> = {
            let idx = self.index.lock().unwrap();
            if idx.total_bytes <= self.limit_bytes {
                return;
            }
            let mut clean: Vec<(u64, Ino, u64)> = idx
                .entries
                .iter()
                .filter(|(_, (e, _))| !e.dirty)
                .map(|(i, (e, used))| (*used, *i, e.size))
                .collect();
            clean.sort_unstable();
            let mut excess = idx.total_bytes - self.limit_bytes;
            let mut out = Vec::new();
            for (_, ino, size) in clean {
                if excess == 0 {
                    break;
                }
                if in_use(ino) {
                    continue;
                }
                out.push(ino);
                excess = excess.saturating_sub(size.max(1));
            }
            out
        };
        for ino in victims {
            if let Err(e) = self.remove(ino) {
                log::warn!("cache eviction of {ino}: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(version: u64, size: u64, dirty: bool) -> CacheEntry {
        CacheEntry {
            version,
            size,
            dirty,
            mtime_ns: 0,
        }
    }

    /// Writes `bytes` as the copy of `ino` at `version` and records it in the index.
    fn holding(c: &DiskCache, ino: Ino, version: u64, bytes: impl AsRef<[u8]>, dirty: bool) {
        let bytes = bytes.as_ref();
        std::fs::write(c.path(ino, version), bytes).unwrap();
        c.put(ino, entry(version, bytes.len() as u64, dirty))
            .unwrap();
    }

    #[test]
    fn index_survives_reopen_and_drops_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        {
            let c = DiskCache::open(dir.path(), 1 << 30).unwrap();
            holding(&c, 5, 2, b"hello", false);
            holding(&c, 6, 1, b"dirty!", true);
            c.put(7, entry(1, 3, false)).unwrap(); // no file: dropped at reopen
            std::fs::write(c.part_path(8), b"partial").unwrap();
            holding(&c, 10, 1, b"same", false);
            // A writer changed it in place (same size) and crashed before marking it dirty.
            std::thread::sleep(std::time::Duration::from_millis(5));
            std::fs::write(c.path(10, 1), b"SAME").unwrap();
            c.persist_now().unwrap();
        }
        let c = DiskCache::open(dir.path(), 1 << 30).unwrap();
        assert_eq!(c.get(5).map(|e| (e.version, e.size)), Some((2, 5)));
        assert_eq!(c.get(6), Some(entry(1, 6, true)));
        assert_eq!(c.get(7), None);
        assert_eq!(
            c.get(10),
            None,
            "a copy changed behind a clean entry was trusted"
        );
        assert_eq!(
            std::fs::read_dir(dir.path().join("files")).unwrap().count(),
            2
        );
    }

    #[test]
    fn the_last_of_many_changes_to_an_entry_is_the_one_kept() {
        let dir = tempfile::tempdir().unwrap();
        {
            let c = DiskCache::open(dir.path(), 1 << 30).unwrap();
            for version in 1..=50u64 {
                holding(&c, 3, version, b"abc", version % 2 == 0);
            }
            holding(&c, 4, 1, b"x", true);
            c.remove(4).unwrap();
            c.persist_now().unwrap();
        }
        let c = DiskCache::open(dir.path(), 1 << 30).unwrap();
        assert_eq!(c.get(3), Some(entry(50, 3, true)));
        assert_eq!(c.get(4), None);
    }

    #[test]
    fn eviction_is_lru_and_spares_dirty_and_open_files() {
        let dir = tempfile::tempdir().unwrap();
        let c = DiskCache::open(dir.path(), 25).unwrap();
        for ino in 1..=4u64 {
            holding(&c, ino, 1, [0u8; 10], ino == 1);
        }
        c.get(2); // 3 is now the least recently used clean file after 2 was touched
        c.evict(&|ino| ino == 4);
        assert!(c.get(1).is_some(), "dirty file evicted");
        assert!(c.get(4).is_some(), "open file evicted");
        assert!(c.get(3).is_none(), "LRU file kept");
        assert!(c.total_bytes() <= 30);
    }

    #[test]
    fn a_new_version_replaces_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let c = DiskCache::open(dir.path(), 1 << 30).unwrap();
        holding(&c, 9, 1, b"a", false);
        holding(&c, 9, 2, b"bb", false);
        assert!(!c.path(9, 1).exists());
        assert_eq!(c.total_bytes(), 2);
    }

    #[test]
    fn put_renamed_keeps_the_moved_copy_and_deletes_only_other_versions() {
        let dir = tempfile::tempdir().unwrap();
        let c = DiskCache::open(dir.path(), 1 << 30).unwrap();
        // The copy of version 1 is renamed to version 2 (a store), then recorded.
        holding(&c, 9, 1, b"abc", true);
        std::fs::rename(c.path(9, 1), c.path(9, 2)).unwrap();
        let meta = std::fs::metadata(c.path(9, 2)).unwrap();
        c.put_renamed(9, 1, entry(2, 3, false), &meta);
        assert!(c.path(9, 2).exists(), "the renamed copy was deleted");
        let got = c.get(9).unwrap();
        assert_eq!((got.version, got.size, got.dirty), (2, 3, false));
        assert_eq!(got.mtime_ns, super::mtime_ns(&meta));
        assert_eq!(c.total_bytes(), 3);
        // The index held a third version meanwhile: its file is deleted, the moved one kept.
        holding(&c, 9, 3, b"zz", false);
        assert!(!c.path(9, 2).exists());
        std::fs::write(c.path(9, 4), b"abcd").unwrap();
        let meta = std::fs::metadata(c.path(9, 4)).unwrap();
        c.put_renamed(9, 2, entry(4, 4, false), &meta);
        assert!(!c.path(9, 3).exists(), "a stale version was left behind");
        assert!(c.path(9, 4).exists());
        assert_eq!(c.total_bytes(), 4);
    }
}
