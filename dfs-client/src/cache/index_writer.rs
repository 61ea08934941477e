//! Persistence of the cache index off the callers' path: `DiskCache` changes its in-memory
//! index at once and queues the change here; one thread applies everything queued since
//! its last commit in one redb transaction. The index is not fsynced anyway (see
//! `DiskCache::put`; redb drops commits made without a sync when it reopens after a crash),
//! so a commit some milliseconds later changes nothing a crash could tell apart, and a
//! create-write-close no longer pays two or three commits of its own.
//! `sync` makes everything queued before it durable and reports the outcome. After the
//! first change of a batch the writer sleeps for `GATHER` (a sync wakes it at once), then
//! takes everything queued: a loop of create-write-closes shares one commit among several
//! files, and the changes queued meanwhile wake nobody.
//!
//! Owns: the queue, the writer thread and the index table's writes. Must not decide what
//! the index holds (`disk`).

use super::disk::CacheEntry;
use super::error::CacheError;
use dfs_common::Ino;
use redb::{Database, Durability, TableDefinition};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long the writer gathers changes before it commits them.
const GATHER: Duration = Duration::from_millis(20);

pub(super) const INDEX: TableDefinition<u64, &[u8]> = TableDefinition::new("cache_index");

enum Op {
    Put(Ino, CacheEntry),
    Remove(Ino),
    /// Commit durably what came before, and say how it went.
    Sync(mpsc::Sender<Result<(), Arc<redb::Error>>>),
}

pub(super) struct IndexWriter {
    queue: Mutex<Option<mpsc::Sender<Op>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Set (and the thread unparked) when someone waits for the writer: end the gathering.
    hurry: Arc<AtomicBool>,
}

impl IndexWriter {
    pub(super) fn start(db: Arc<Database>) -> Result<IndexWriter, CacheError> {
        let (tx, rx) = mpsc::channel();
        let hurry = Arc::new(AtomicBool::new(false));
        let flag = hurry.clone();
        let thread = std::thread::Builder::new()
            .name("dfs-cache-index".into())
            .spawn(move || run(&db, rx, &flag))?;
        Ok(IndexWriter {
            queue: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            hurry,
        })
    }

    /// Ends the writer's current gathering at once.
    fn wake(&self) {
        self.hurry.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.lock().unwrap().as_ref() {
            thread.thread().unpark();
        }
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
    pub(super) fn sync(&self) -> Result<(), CacheError> {
        let (tx, rx) = mpsc::channel();
        self.send(Op::Sync(tx));
        self.wake();
        rx.recv()
            .map_err(|_| CacheError::IndexStopped)?
            .map_err(CacheError::Index)
    }

    /// Applies everything queued, then stops the thread.
    pub(super) fn finish(&self) {
        drop(self.queue.lock().unwrap().take());
        self.wake();
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

/// Waits until `GATHER` has passed since the first change of a batch arrived, or until
/// `hurry` is set.
fn gather(hurry: &AtomicBool) {
    let until = Instant::now() + GATHER;
    while !hurry.swap(false, Ordering::SeqCst) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::park_timeout(left);
    }
}

fn run(db: &Database, rx: mpsc::Receiver<Op>, hurry: &AtomicBool) {
    while let Ok(first) = rx.recv() {
        if !matches!(first, Op::Sync(_)) {
            gather(hurry);
        }
        let mut ops = vec![first];
        ops.extend(rx.try_iter());
        let mut waiting = Vec::new();
        let mut changes = Vec::new();
        for op in ops {
            match op {
                Op::Sync(reply) => waiting.push(reply),
                change => changes.push(change),
            }
        }
        let durable = !waiting.is_empty();
        let outcome = commit(db, &changes, durable).map_err(Arc::new);
        // A sync that came as the first op of a batch set the flag without ending a
        // gathering: clear it, so that the next batch gathers. A sync sent meanwhile is
        // still queued and starts a batch of its own, which does not gather.
        hurry.store(false, Ordering::SeqCst);
        if let Err(e) = &outcome {
            log::warn!("cache index: {e}");
        }
        for reply in waiting {
            let _ = reply.send(outcome.clone());
        }
    }
}

fn commit(db: &Database, changes: &[Op], durable: bool) -> Result<(), redb::Error> {
    let mut txn = db.begin_write()?;
    if !durable {
        txn.set_durability(Durability::None)?;
    }
    {
        let mut table = txn.open_table(INDEX)?;
        for change in changes {
            match change {
                Op::Put(ino, entry) => {
                    let bytes = dfs_common::codec::encode(entry);
                    table.insert(*ino, bytes.as_slice())?;
                }
                Op::Remove(ino) => {
                    table.remove(*ino)?;
                }
                Op::Sync(_) => {}
            }
        }
    }
    Ok(txn.commit()?)
}
