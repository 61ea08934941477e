//! Small blobs stored with one fsync. A store of at most `JOURNAL_MAX` bytes on a node on
//! its own keeps the bytes in memory (`Pending`) and records them in the namespace's blob
//! journal in the same commit as the store that references them, so that commit's one
//! fsync makes both durable. A checkpoint every `CHECKPOINT_EVERY` (sooner when much is
//! pending) writes their files, syncs them all with one `syncfs`, and drops the journal
//! rows and the memory. At start-up, before serving, `replay` writes (with fsyncs) every
//! journalled blob that is still referenced and whose file is missing or wrong.
//!
//! Owns: receiving small bodies into memory, the pending map, the checkpoint and the
//! replay. Must not: decide what a store commits (files) or what is garbage (gc).

use super::{BlobStore, CheckedBody, TempBlob};
use crate::namespace::Namespace;
use bytes::{Bytes, BytesMut};
use dfs_common::{BlobId, FsError};
use hyper::body::Body;
use std::collections::HashMap;
use std::fmt::Display;
use std::fs;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// Bodies up to this size are stored through the journal.
pub const JOURNAL_MAX: u64 = 64 * 1024;

/// How often the checkpoint runs.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// A checkpoint starts early once this many bytes are pending.
const PENDING_HIGH: usize = 16 << 20;

/// Journalled blobs whose files are not written yet, served from here meanwhile.
#[derive(Default)]
pub(super) struct Pending {
    blobs: Mutex<HashMap<BlobId, Bytes>>,
    bytes: std::sync::atomic::AtomicUsize,
    /// Wakes the checkpoint early.
    full: Notify,
}

impl Pending {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<BlobId, Bytes>> {
        self.blobs.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn insert(&self, id: BlobId, bytes: Bytes) {
        use std::sync::atomic::Ordering;
        let len = bytes.len();
        if self.lock().insert(id, bytes).is_none() {
            let total = self.bytes.fetch_add(len, Ordering::Relaxed) + len;
            if total >= PENDING_HIGH {
                self.full.notify_one();
            }
        }
    }

    pub(super) fn get(&self, id: &BlobId) -> Option<Bytes> {
        self.lock().get(id).cloned()
    }

    pub(super) fn remove(&self, id: &BlobId) {
        if let Some(b) = self.lock().remove(id) {
            self.bytes
                .fetch_sub(b.len(), std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// Whether the file at `path` holds exactly `bytes`.
fn same_copy(path: &std::path::Path, bytes: &[u8]) -> bool {
    matches!(fs::read(path), Ok(found) if found == bytes)
}

impl BlobStore {
    /// Receives a body of at most `JOURNAL_MAX` bytes into memory and checks its length
    /// and hash like `receive`. No file is written: `install` keeps it pending, and the
    /// caller's commit must record its bytes in the journal (`TempBlob::journal_bytes`).
    pub async fn receive_small<B>(
        &self,
        body: B,
        expected_len: u64,
        expected: Option<BlobId>,
    ) -> Result<TempBlob, FsError>
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: Display,
    {
        debug_assert!(expected_len <= JOURNAL_MAX);
        let mut buf = BytesMut::with_capacity(expected_len as usize);
        let mut src = CheckedBody::new(body, super::BodyLen::Exactly(expected_len));
        while let Some(data) = src.next().await? {
            buf.extend_from_slice(&data);
        }
        let (id, _) = src.finish(expected)?;
        let bytes = buf.freeze();
        Ok(TempBlob {
            path: PathBuf::new(),
            id,
            size: expected_len,
            armed: false,
            journal: Some(bytes),
        })
    }

    /// Writes the file of pending blob `id`, if it is pending and its file is not there
    /// yet, without an fsync: its journal row keeps it durable until the checkpoint
    /// (blocking).
    pub(super) fn write_pending(&self, id: &BlobId) -> Result<(), FsError> {
        let Some(bytes) = self.pending.get(id) else {
            return Ok(());
        };
        let dest = self.path(id);
        if dest.exists() {
            return Ok(());
        }
        let dir = dest.parent().expect("blob path has a parent");
        if !dir.is_dir() {
            match dfs_common::private_files::create_dir(dir) {
                Ok(()) => super::fsync_dir(&self.root)?,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e.into()),
            }
        }
        let (mut file, mut temp) = self.new_temp()?;
        file.write_all(&bytes)?;
        drop(file);
        fs::rename(&temp.path, &dest)?;
        temp.armed = false;
        Ok(())
    }

    /// Makes every blob file written so far durable: one `syncfs` of the store's file
    /// system (blocking).
    fn sync_files(&self) -> io::Result<()> {
        let dir = fs::File::open(&self.root)?;
        // SAFETY: a valid descriptor for the duration of the call.
        if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Writes `bytes` as blob `id`, fsynced (blocking; replay).
    pub(crate) fn restore(self: &Arc<Self>, id: BlobId, bytes: &[u8]) -> Result<(), FsError> {
        let (mut file, mut temp) = self.new_temp()?;
        file.write_all(bytes)?;
        file.sync_all()?;
        temp.id = id;
        temp.size = bytes.len() as u64;
        // `install` fsyncs the directory of a synced temp file.
        drop(self.install(temp)?);
        Ok(())
    }
}

impl TempBlob {
    /// The bytes to journal with the store's commit, if this blob has no file yet.
    pub fn journal_bytes(&self) -> Option<Bytes> {
        self.journal.clone()
    }
}

/// At start-up (blocking, before serving): every journalled blob that is still referenced
/// gets a checked, fsynced file; then the journal is emptied.
pub fn replay(store: &Arc<BlobStore>, ns: &Namespace) -> Result<usize, FsError> {
    let ids = ns.journal_ids()?;
    let mut rewritten = 0;
    for id in &ids {
        let Some(bytes) = ns.journal_get(id)? else {
            continue;
        };
        if dfs_common::hash::blob_id_of(&bytes) != *id {
            log::error!("journal row for blob {id} holds other bytes; skipped");
            continue;
        }
        let referenced = ns.refcount(id)?.is_some_and(|n| n > 0);
        if referenced && !same_copy(&store.path(id), &bytes) {
            store.restore(*id, &bytes)?;
            rewritten += 1;
        }
    }
    store.sync_files()?;
    ns.journal_forget(&ids)?;
    if !ids.is_empty() {
        log::info!(
            "blob journal: {} rows, {rewritten} blob files rewritten",
            ids.len()
        );
    }
    Ok(rewritten)
}

/// One checkpoint (blocking): write the files of the blobs journalled so far, sync them,
/// then drop their rows and their pending bytes.
pub fn checkpoint(store: &BlobStore, ns: &Namespace) -> Result<usize, FsError> {
    // Only committed rows: a blob pending for a store still in flight waits its turn.
    let ids = ns.journal_ids()?;
    if ids.is_empty() {
        return Ok(0);
    }
    for id in &ids {
        store.write_pending(id)?;
    }
    store.sync_files()?;
    ns.journal_forget(&ids)?;
    for id in &ids {
        store.pending.remove(id);
    }
    Ok(ids.len())
}

/// Runs `checkpoint` every `CHECKPOINT_EVERY` (or when much is pending) until `stop`
/// turns true, and once more then.
pub fn spawn(
    store: Arc<BlobStore>,
    ns: Arc<Namespace>,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let stopping = tokio::select! {
                _ = tokio::time::sleep(CHECKPOINT_EVERY) => false,
                _ = store.pending.full.notified() => false,
                _ = stop.changed() => true,
            };
            let (s, n) = (store.clone(), ns.clone());
            match tokio::task::spawn_blocking(move || checkpoint(&s, &n)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => log::error!("blob journal checkpoint failed: {e}"),
                Err(e) => log::error!("blob journal checkpoint task failed: {e}"),
            }
            if stopping || *stop.borrow() {
                return;
            }
        }
    })
}
