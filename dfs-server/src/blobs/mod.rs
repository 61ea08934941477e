//! The content-addressed blob store: immutable files named by the SHA-256 of their bytes,
//! under `DATA/blobs/<first two hex>/<64 hex>`, with temp files in `DATA/blobs/tmp/` and
//! the emptied files of deleted blobs, kept to become new temp files, in
//! `DATA/blobs/spare/` (`spares`).
//!
//! Owns: blob files (receiving a streamed body into a temp file while hashing, fsync and
//! install, streamed and checked reads (`read`), resized copies for truncate), pins that keep the garbage
//! collector away from a blob between its install and its metadata commit, and the
//! garbage collector (`gc`). Must not touch: the namespace rules (it only reads refcounts
//! and tells the namespace which garbage rows it deleted), HTTP, callbacks.

pub mod gc;
pub mod index;
pub mod journal;
#[cfg(test)]
mod journal_tests;
mod read;
mod spares;
#[cfg(test)]
mod tests;
mod writer;

use bytes::Bytes;
use dfs_common::hash::BlobHasher;
use dfs_common::{BlobId, FsError};
use http_body_util::BodyExt;
use hyper::body::Body;
use spares::SpareFiles;
use std::collections::HashMap;
use std::fmt::Display;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use index::{BlobIndex, Held};

/// Size of one chunk of a streamed read.
pub const READ_CHUNK: usize = 256 * 1024;

/// The blob store of one data directory.
pub struct BlobStore {
    root: PathBuf,
    tmp: PathBuf,
    /// Blob ids between install and metadata commit, with the number of holders.
    pins: Mutex<HashMap<BlobId, usize>>,
    next_tmp: AtomicU64,
    tmp_prefix: u64,
    /// What this node holds (ids, sizes, mtimes), kept in step with the files.
    index: Mutex<BlobIndex>,
    /// Small blobs stored through the journal whose files the checkpoint has not written
    /// yet (see `journal`).
    pending: journal::Pending,
    spares: SpareFiles,
}

/// Most emptied blob files kept for reuse.
const SPARES: usize = 32 << 10;

/// A received blob in `blobs/tmp/`, fsynced unless it carries its bytes for the journal
/// (`journal`); deleted on drop unless installed.
#[derive(Debug)]
pub struct TempBlob {
    path: PathBuf,
    pub id: BlobId,
    pub size: u64,
    armed: bool,
    /// A small blob written without an fsync: its bytes, which the store's commit records
    /// in the namespace's blob journal (see `journal`).
    journal: Option<Bytes>,
}

impl TempBlob {
    /// Where the received bytes are.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempBlob {
    fn drop(&mut self) {
        if self.armed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Keeps the garbage collector away from one blob while held.
pub struct Pin {
    store: Arc<BlobStore>,
    pub id: BlobId,
}

impl Drop for Pin {
    fn drop(&mut self) {
        let mut pins = self.store.pins.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = pins.get_mut(&self.id) {
            *n -= 1;
            if *n == 0 {
                pins.remove(&self.id);
            }
        }
    }
}

fn fsync_dir(path: &Path) -> io::Result<()> {
    fs::File::open(path)?.sync_all()
}

/// How long a body must be: its content-length, or (a body streamed while its file is
/// still being written, whose length nobody knows yet) at most the largest file.
#[derive(Clone, Copy, Debug)]
pub enum BodyLen {
    Exactly(u64),
    AtMost(u64),
}

/// A request body read chunk by chunk, hashed on the way and held to its length.
struct CheckedBody<B> {
    body: B,
    len: BodyLen,
    total: u64,
    hasher: BlobHasher,
}

impl<B> CheckedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Display,
{
    fn new(body: B, len: BodyLen) -> Self {
        CheckedBody {
            body,
            len,
            total: 0,
            hasher: BlobHasher::new(),
        }
    }

    /// The next chunk (`None` at the end); an error if the body fails or runs past its
    /// length.
    async fn next(&mut self) -> Result<Option<Bytes>, FsError> {
        while let Some(frame) = self.body.frame().await {
            let frame = frame.map_err(|e| FsError::BadRequest(format!("request body: {e}")))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            self.total += data.len() as u64;
            match self.len {
                BodyLen::Exactly(n) if self.total > n => {
                    return Err(FsError::BadRequest(format!(
                        "body longer than its content-length {n}"
                    )));
                }
                BodyLen::AtMost(n) if self.total > n => {
                    return Err(FsError::TooLarge(format!(
                        "body past {n} bytes, the largest file"
                    )));
                }
                _ => {}
            }
            self.hasher.update(&data);
            return Ok(Some(data));
        }
        Ok(None)
    }

    /// After the last chunk: the blob id and size, or an error if the body was short or
    /// does not hash to `expected`.
    fn finish(self, expected: Option<BlobId>) -> Result<(BlobId, u64), FsError> {
        if let BodyLen::Exactly(n) = self.len {
            if self.total != n {
                return Err(FsError::BadRequest(format!(
                    "body of {} bytes, content-length said {n}",
                    self.total
                )));
            }
        }
        let id = self.hasher.finish();
        if let Some(want) = expected {
            if want != id {
                return Err(FsError::Corrupt(format!(
                    "body hashes to {id}, x-dfs-sha256 said {want}"
                )));
            }
        }
        Ok((id, self.total))
    }
}

impl BlobStore {
    /// Opens the store under `data_dir/blobs`, creating it, and empties `blobs/tmp`.
    pub fn open(data_dir: &Path) -> io::Result<BlobStore> {
        let root = data_dir.join("blobs");
        let tmp = root.join("tmp");
        dfs_common::private_files::create_dir_all(&tmp)?;
        for entry in fs::read_dir(&tmp)? {
            let entry = entry?;
            if let Err(e) = fs::remove_file(entry.path()) {
                log::warn!("cannot remove stale temp file {:?}: {e}", entry.path());
            }
        }
        let mut seed = [0u8; 8];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed)
            .map_err(|_| io::Error::other("no randomness"))?;
        let spares = SpareFiles::open(&root.join("spare"), SPARES)?;
        let store = BlobStore {
            root,
            tmp,
            pins: Mutex::new(HashMap::new()),
            next_tmp: AtomicU64::new(0),
            tmp_prefix: u64::from_le_bytes(seed),
            index: Mutex::new(BlobIndex::default()),
            pending: journal::Pending::default(),
            spares,
        };
        let mut index = BlobIndex::default();
        for (id, size, mtime_ms) in store.scan()? {
            index.insert(id, Held { size, mtime_ms });
        }
        *store.index.lock().unwrap_or_else(|e| e.into_inner()) = index;
        Ok(store)
    }

    /// The index of what this node holds.
    pub fn index(&self) -> std::sync::MutexGuard<'_, BlobIndex> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Deletes the local copy of `id` (blocking); a missing file is not an error.
    pub fn remove(&self, id: &BlobId) -> io::Result<()> {
        self.forget(&mut self.index(), id)
    }

    /// Drops `id` from memory, from `index` (the caller's guard) and from disk. Its file
    /// becomes a spare (emptied, then a later temp file): callers make sure nobody reads
    /// it (unreferenced and unpinned, or at start-up).
    fn forget(&self, index: &mut BlobIndex, id: &BlobId) -> io::Result<()> {
        self.pending.remove(id);
        match self.spares.retire(&self.path(id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        index.remove(id);
        Ok(())
    }

    /// Deletes the local copy of `id` unless it is pinned or was written or touched at or
    /// after `listed_at_ms` (blocking). Returns whether it was deleted.
    pub fn remove_if_older(&self, id: &BlobId, listed_at_ms: u64) -> io::Result<bool> {
        // Held to the end: no reader can pin the blob (and open its file) between the
        // check and the delete.
        let pins = self.pins.lock().unwrap_or_else(|e| e.into_inner());
        if pins.contains_key(id) {
            return Ok(false);
        }
        let mut index = self.index();
        match index.get(id) {
            Some(h) if h.mtime_ms < listed_at_ms => {}
            _ => return Ok(false),
        }
        self.forget(&mut index, id)?;
        Ok(true)
    }

    /// Whether this node holds a copy of `id`: installed, with its file written or its
    /// bytes still waiting in memory for the journal's checkpoint (`journal`).
    pub fn holds(&self, id: &BlobId) -> bool {
        self.index().get(id).is_some() && (self.pending.get(id).is_some() || self.path(id).exists())
    }

    /// Whether a blob id is pinned (between install and commit, or mid-store).
    pub fn is_pinned(&self, id: &BlobId) -> bool {
        self.pins
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(id)
    }

    /// Where blob `id` lives.
    pub fn path(&self, id: &BlobId) -> PathBuf {
        let hex = id.to_hex();
        self.root.join(&hex[..2]).join(hex)
    }

    fn tmp_path(&self) -> PathBuf {
        let n = self.next_tmp.fetch_add(1, Ordering::Relaxed);
        self.tmp.join(format!("{:016x}-{n}", self.tmp_prefix))
    }

    fn new_temp(&self) -> io::Result<(fs::File, TempBlob)> {
        let path = self.tmp_path();
        // Named uniquely: nothing is there to replace.
        let file = self.spares.create(&path)?;
        let temp = TempBlob {
            path,
            id: BlobId([0; 32]),
            size: 0,
            armed: true,
            journal: None,
        };
        Ok((file, temp))
    }

    /// Streams `body` into a temp file while hashing it. The body must be as long as `len`
    /// says and, if `expected` is given, hash to it; otherwise (or if the body fails
    /// mid-way) the temp file is deleted and an error returned.
    pub async fn receive<B>(
        &self,
        body: B,
        len: BodyLen,
        expected: Option<BlobId>,
    ) -> Result<TempBlob, FsError>
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: Display,
    {
        let (file, mut temp) = self.new_temp()?;
        let mut out = writer::Writer::start(file);
        let mut src = CheckedBody::new(body, len);
        let received = async {
            while let Some(data) = src.next().await? {
                out.write(data).await?;
            }
            src.finish(expected)
        }
        .await;
        let (id, total) = match received {
            Ok(r) => r,
            Err(e) => {
                out.abandon().await;
                return Err(e);
            }
        };
        out.finish().await?;
        temp.id = id;
        temp.size = total;
        Ok(temp)
    }

    /// Keeps the garbage collector (here and, through the repair round, on every node)
    /// away from `id` until the pin is dropped.
    pub fn pin(self: &Arc<Self>, id: BlobId) -> Pin {
        let mut pins = self.pins.lock().unwrap_or_else(|e| e.into_inner());
        *pins.entry(id).or_insert(0) += 1;
        Pin {
            store: self.clone(),
            id,
        }
    }

    /// Moves a received blob into place (blocking). If the blob already exists the temp
    /// file is just dropped. The returned pin keeps the GC away until the commit is done.
    pub fn install(self: &Arc<Self>, mut temp: TempBlob) -> Result<Pin, FsError> {
        let pin = self.pin(temp.id);
        let dest = self.path(&temp.id);
        let dir = dest.parent().expect("blob path has a parent").to_path_buf();
        if temp.journal.is_none() && !dir.is_dir() {
            match dfs_common::private_files::create_dir(&dir) {
                Ok(()) => fsync_dir(&self.root)?,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e.into()),
            }
        }
        // The new copy always replaces an existing one (atomically): an old copy of the
        // same size may have rotted, and this one was just checked against its hash. Under
        // the index lock, so that a delete deciding on the copy's age sees either the old
        // copy or this one with its new time; the directory fsync comes after the lock.
        let mut index = self.index();
        if let Some(bytes) = temp.journal.take() {
            // Its file is written by the next checkpoint; until then it is served from memory.
            self.pending.insert(temp.id, bytes);
            index.insert(temp.id, held_now(temp.size));
            return Ok(pin);
        }
        fs::rename(&temp.path, &dest)?;
        temp.armed = false;
        index.insert(temp.id, held_now(temp.size));
        drop(index);
        fsync_dir(&dir)?;
        Ok(pin)
    }

    /// After a failed commit: deletes the blob if nothing references it and nobody else
    /// holds a pin on it (blocking).
    pub fn discard_unreferenced(
        &self,
        pin: Pin,
        refcount: impl FnOnce(&BlobId) -> Result<Option<u64>, FsError>,
    ) {
        let pins = self.pins.lock().unwrap_or_else(|e| e.into_inner());
        if pins.get(&pin.id).copied() == Some(1) {
            if let Ok(None) = refcount(&pin.id) {
                let _ = self.remove(&pin.id);
            }
        }
        drop(pins);
        drop(pin);
    }

    /// A new temp blob holding the first `new_size` bytes of `old` (of `old_size` bytes),
    /// zero-extended (as a hole) if longer (blocking).
    pub fn resized(
        &self,
        old: Option<&BlobId>,
        old_size: u64,
        new_size: u64,
    ) -> Result<TempBlob, FsError> {
        let (mut out, mut temp) = self.new_temp()?;
        let mut hasher = BlobHasher::new();
        let keep = old_size.min(new_size);
        if let (Some(id), true) = (old, keep > 0) {
            let mut src = self.open_blob(id, old_size)?.take(keep);
            let mut buf = vec![0u8; READ_CHUNK];
            loop {
                let n = src.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                out.write_all(&buf[..n])?;
            }
        }
        if new_size > keep {
            out.set_len(new_size)?;
            let zeros = vec![0u8; READ_CHUNK];
            let mut left = new_size - keep;
            while left > 0 {
                let n = (left as usize).min(READ_CHUNK);
                hasher.update(&zeros[..n]);
                left -= n as u64;
            }
        }
        out.sync_all()?;
        temp.id = hasher.finish();
        temp.size = new_size;
        Ok(temp)
    }

    /// Every blob file, with its modification time in unix seconds (blocking).
    pub fn list(&self) -> io::Result<Vec<(BlobId, u64)>> {
        Ok(self
            .scan()?
            .into_iter()
            .map(|(id, _, ms)| (id, ms / 1000))
            .collect())
    }

    /// Every blob file on disk, with its size and mtime in unix ms (blocking).
    fn scan(&self) -> io::Result<Vec<(BlobId, u64, u64)>> {
        let mut out = Vec::new();
        for sub in fs::read_dir(&self.root)? {
            let sub = sub?;
            let name = sub.file_name();
            let name = name.to_string_lossy();
            if name.len() != 2 || !sub.file_type()?.is_dir() {
                continue;
            }
            for f in fs::read_dir(sub.path())? {
                let f = f?;
                let Some(id) = BlobId::from_hex(&f.file_name().to_string_lossy()) else {
                    continue;
                };
                let meta = f.metadata()?;
                out.push((id, meta.len(), mtime_ms(&meta)));
            }
        }
        Ok(out)
    }

    /// Total and available bytes of the file system holding the store.
    pub fn space(&self) -> Result<(u64, u64), FsError> {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(self.root.as_os_str().as_bytes())
            .map_err(|_| FsError::Io("data dir path contains NUL".into()))?;
        // SAFETY: statvfs fills the zeroed struct; `c` is a valid NUL-terminated path.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
        if rc != 0 {
            return Err(io::Error::last_os_error().into());
        }
        let frsize = st.f_frsize as u64;
        Ok((st.f_blocks as u64 * frsize, st.f_bavail as u64 * frsize))
    }
}

fn mtime_ms(meta: &fs::Metadata) -> u64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn held_now(size: u64) -> Held {
    let mtime_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    Held { size, mtime_ms }
}
