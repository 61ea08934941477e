//! Persistence of the cache index off the callers' path: `DiskCache` changes its in-memory
//! index at once and queues the change here; one thread applies everything queued since
//! its last commit in one redb transaction. The index is not fsynced anyway (see
//! `DiskCache::put`), so a commit a few microseconds later changes nothing a crash could
//! tell apart, and a create-write-close no longer pays two or three commits of its own.
//! `sync` makes everything queued before it durable and reports the outcome. A commit
//! waits up to `GATHER` for more changes (a sync ends the wait), so a loop of
//! create-write-closes shares one commit among several files instead of paying one each.
//!
//! Owns: the queue, the writer thread and the index table's writes. Must not decide what
//! the index holds (`disk`).

use super::disk::CacheEntry;
use dfs_common::{FsError, Ino};
use redb::{Database, Durability, TableDefinition};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long the writer gathers changes before it commits them.
const GATHER: Duration = Duration::from_millis(20);

/// A commit starts at once when this many changes are waiting.
const GATHER_MAX: usize = 4096;

pub(super) const INDEX: TableDefinition<u64, &[u8]> = TableDefinition::new("cache_index");

enum Op {
    Put(Ino, CacheEntry),
    Remove(Ino),
    /// Commit durably what came before, and say how it went.
    Sync(mpsc::Sender<Result<(), FsError>>),
}

pub(super) struct IndexWriter {
    queue: Mutex<Option<mpsc::Sender<Op>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

fn io_err(e: impl std::fmt::Display) -> FsError {
    FsError::Io(format!("cache index: {e}"))
}

impl IndexWriter {
    pub(super) fn start(db: Arc<Database>) -> Result<IndexWriter, FsError> {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("dfs-cache-index".into())
            .spawn(move || run(&db, rx))
            .map_err(io_err)?;
        Ok(IndexWriter {
            queue: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
        })
    }

    fn send(&self, op: Op) {
        if let Some(tx) = self.queue.lock().unwrap().as_ref() {
            let _ = tx.send(op);
        }
    }

    /// Queues `entry` as the record of `ino`. Callers queue in the order their changes
    /// reach the in-memory index (they hold its lock).
    pub(super) fn put(&self, ino: Ino, entry: CacheEntry) {
        self.send(Op::Put(ino, entry));
    }

    pub(super) fn remove(&self, ino: Ino) {
        self.send(Op::Remove(ino));
    }

    /// Makes every change queued so far durable (one fsynced commit).
    pub(super) fn sync(&self) -> Result<(), FsError> {
        let (tx, rx) = mpsc::channel();
        self.send(Op::Sync(tx));
        rx.recv()
            .map_err(|_| FsError::Io("cache index: its writer has stopped".into()))?
    }

    /// Applies everything queued, then stops the thread.
    pub(super) fn finish(&self) {
        drop(self.queue.lock().unwrap().take());
        if let Some(thread) = self.thread.lock().unwrap().take() {
            let _ = thread.join();
        }
    }
}

impl Drop for IndexWriter {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The changes queued within `GATHER` of `first`, up to the first sync or `GATHER_MAX`.
fn gather(first: Op, rx: &mpsc::Receiver<Op>) -> Vec<Op> {
    let until = Instant::now() + GATHER;
    let mut ops = vec![first];
    while !matches!(ops.last(), Some(Op::Sync(_))) && ops.len() < GATHER_MAX {
        let left = until.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(op) => ops.push(op),
            Err(_) => break,
        }
    }
    ops
}

fn run(db: &Database, rx: mpsc::Receiver<Op>) {
    while let Ok(first) = rx.recv() {
        let ops = gather(first, &rx);
        let mut waiting = Vec::new();
        let mut changes = Vec::new();
        for op in ops {
            match op {
                Op::Sync(reply) => waiting.push(reply),
                change => changes.push(change),
            }
        }
        let durable = !waiting.is_empty();
        let outcome = commit(db, &changes, durable);
        if let Err(e) = &outcome {
            log::warn!("{e}");
        }
        for reply in waiting {
            let _ = reply.send(outcome.clone());
        }
    }
}

fn commit(db: &Database, changes: &[Op], durable: bool) -> Result<(), FsError> {
    let mut txn = db.begin_write().map_err(io_err)?;
    if !durable {
        txn.set_durability(Durability::None).map_err(io_err)?;
    }
    {
        let mut table = txn.open_table(INDEX).map_err(io_err)?;
        for change in changes {
            match change {
                Op::Put(ino, entry) => {
                    let bytes = dfs_common::codec::encode(entry);
                    table.insert(*ino, bytes.as_slice()).map_err(io_err)?;
                }
                Op::Remove(ino) => {
                    table.remove(*ino).map_err(io_err)?;
                }
                Op::Sync(_) => {}
            }
        }
    }
    txn.commit().map_err(io_err)
}
