//! When namespace commits reach the disk: group commit, and the journal of small blobs.
//!
//! Owns: the commit sequence (every command commits without an fsync and gets a sequence
//! number; `sync_through(seq)` returns once a durable commit covers it, so requests that
//! commit while another one's fsync runs share the next fsync), and the `blob_journal`
//! table: the bytes of small blobs whose files were written without an fsync, committed
//! in the same transaction as the store that references them, so one fsync makes both
//! durable. The blob store's checkpoint (`blobs::journal`) syncs the files and clears the
//! rows. Must not touch blob files.

use super::store::db_err;
use super::Namespace;
use dfs_common::{BlobId, FsError};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

/// blob id -> the blob's bytes, until its file is known to be on disk.
pub(super) const JOURNAL: TableDefinition<&[u8], &[u8]> = TableDefinition::new("blob_journal");

/// A commit's place in the sequence of namespace commits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct CommitSeq(u64);

impl CommitSeq {
    /// A place no one needs to wait for: a commit already durable elsewhere (in the
    /// directory's Raft log, before it was applied).
    pub const DURABLE: CommitSeq = CommitSeq(0);
}

/// The sequence of commits and how far of it is durable.
#[derive(Default)]
pub(super) struct GroupCommit {
    /// The last sequence number handed out (its commit has returned).
    committed: AtomicU64,
    /// Every commit up to this one is durable.
    durable: AtomicU64,
    /// One fsync at a time; the ones waiting behind it usually find their work done.
    syncing: Mutex<()>,
    /// Durable write transactions begun and not yet ended (`DurableWriter`s alive).
    durable_writers: AtomicUsize,
}

/// Counts a durable write transaction as under way while it lives.
pub(super) struct DurableWriter<'a>(&'a AtomicUsize);

impl Drop for DurableWriter<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl GroupCommit {
    /// Marks a durable write transaction as under way until the result is dropped: held
    /// from before it begins until after it commits or aborts.
    pub(super) fn durable_writer(&self) -> DurableWriter<'_> {
        self.durable_writers.fetch_add(1, Ordering::SeqCst);
        DurableWriter(&self.durable_writers)
    }

    /// Called after a non-durable commit returned.
    pub(super) fn committed(&self) -> CommitSeq {
        crate::metrics::COMMITS.inc();
        CommitSeq(self.committed.fetch_add(1, Ordering::SeqCst) + 1)
    }

    /// Returns once a durable commit covers `seq` (blocking: may fsync).
    pub(super) fn sync_through(&self, db: &Database, seq: CommitSeq) -> Result<(), FsError> {
        if self.durable.load(Ordering::SeqCst) >= seq.0 {
            return Ok(());
        }
        let _one = self.syncing.lock().unwrap_or_else(|e| e.into_inner());
        if self.durable.load(Ordering::SeqCst) >= seq.0 {
            return Ok(());
        }
        // Every commit up to `target` has returned, so the durable commit below, which
        // begins after them, makes them durable too.
        let target = self.committed.load(Ordering::SeqCst);
        let started = std::time::Instant::now();
        let _durable = self.durable_writer();
        let mut txn = db.begin_write().map_err(db_err)?;
        txn.set_durability(Durability::Immediate)
            .map_err(|e| FsError::Io(format!("metadata database: {e}")))?;
        txn.commit().map_err(db_err)?;
        let before = self.durable.fetch_max(target, Ordering::SeqCst);
        crate::metrics::FSYNCS.inc();
        crate::metrics::FSYNC_LATENCY.observe(started.elapsed());
        crate::metrics::GROUP_COMMIT_SIZE.record(target.saturating_sub(before));
        Ok(())
    }
}

impl Namespace {
    /// Returns once commit `seq` is durable (blocking).
    pub fn sync_through(&self, seq: CommitSeq) -> Result<(), FsError> {
        self.group.sync_through(&self.db, seq)
    }

    /// Whether a durable write transaction is under way. A write transaction begun now
    /// waits for it to end: for its fsync, or a checkpoint of the log (`wal`). Without
    /// one, `apply_unsynced` touches only memory; that is when an async thread may call
    /// it. (One may begin right after this returns false; that wait is then the cost.)
    pub fn durable_commit_in_flight(&self) -> bool {
        self.group.durable_writers.load(Ordering::SeqCst) > 0
    }

    /// The ids of the blobs in the journal.
    pub fn journal_ids(&self) -> Result<Vec<BlobId>, FsError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = match tx.open_table(JOURNAL) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(db_err(e)),
        };
        let mut out = Vec::new();
        for item in t.iter().map_err(db_err)? {
            let (k, _) = item.map_err(db_err)?;
            if let Ok(arr) = <[u8; 32]>::try_from(k.value()) {
                out.push(BlobId(arr));
            }
        }
        Ok(out)
    }

    /// The bytes journalled for `id`, if any.
    pub fn journal_get(&self, id: &BlobId) -> Result<Option<Vec<u8>>, FsError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = match tx.open_table(JOURNAL) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(db_err(e)),
        };
        let found = t.get(id.0.as_slice()).map_err(db_err)?;
        Ok(found.map(|g| g.value().to_vec()))
    }

    /// Drops the journal rows of blobs whose files are now durable. Not synced itself: a
    /// row that comes back after a crash only makes the start-up replay check that file.
    pub fn journal_forget(&self, ids: &[BlobId]) -> Result<(), FsError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut txn = self.db.begin_write().map_err(db_err)?;
        txn.set_durability(Durability::None)
            .map_err(|e| FsError::Io(format!("metadata database: {e}")))?;
        {
            let mut t = txn.open_table(JOURNAL).map_err(db_err)?;
            for id in ids {
                t.remove(id.0.as_slice()).map_err(db_err)?;
            }
        }
        txn.commit().map_err(db_err)?;
        self.group.committed();
        Ok(())
    }
}
