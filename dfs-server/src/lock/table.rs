//! The on-disk lock table (its own redb file, `DATA/locks.redb`) and the group-commit
//! writer.
//!
//! Tables:
//! - `locks`: ino -> bincode `InoRecord` (only file ids with at least one holder).
//! - `lock_clients`: (client, ino) -> () for every client holding something on ino, so a
//!   client's locks can be renewed in one request without scanning the table.
//! - `lock_expiry`: (earliest expiry ms of the record, ino) -> (), for the sweep.
//! - `lock_meta`: "next_token" -> the next fencing token (tokens come from one counter, so
//!   they increase per file id even after a record is deleted and recreated).
//!
//! Writes: callers decide under their stripe mutexes and hand the new records to the ONE
//! writer thread with `Writer::submit`; it takes every pending batch off its queue, applies
//! them all (maintaining both indexes) in one durable write transaction, i.e. one fsync,
//! then releases the batches' stripe guards, wakes the stripes' waiters and answers.
//!
//! A batch may be *not durable* (`Durability::Lapsable`): the writers' turn of an open
//! file, which fencing already protects. Commits of only such batches skip the fsync (the
//! next durable one carries them), so a crash may forget such a grant (the holder's store
//! is refused, and it wins the lock back if nobody stored in between) or such a release
//! (the lock lingers until its lease ends). Tokens stay unique across such a crash: each
//! start moves the counter `TOKEN_GAP` past its durable value. Such a batch is answered
//! as soon as it is queued, not committed (a failed commit is then like that crash), and
//! nobody reads it before it is committed: deciders wait for its stripes' guards, which
//! the writer holds until then, and every other reader first waits for `caught_up`.
//!
//! Owns: table layout, the indexes' consistency, the token counter's persistence. Must
//! not decide conflicts (`record`) nor take stripe mutexes (`mod`).

use super::record::InoRecord;
use dfs_common::{codec, FsError, Ino};
use redb::{Database, Durability as DbDurability};
use redb::{ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Notify, OwnedMutexGuard};

pub const LOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("locks");
pub const BY_CLIENT: TableDefinition<(u64, u64), ()> = TableDefinition::new("lock_clients");
pub const BY_EXPIRY: TableDefinition<(u64, u64), ()> = TableDefinition::new("lock_expiry");
const META: TableDefinition<&str, u64> = TableDefinition::new("lock_meta");
const NEXT_TOKEN: &str = "next_token";

/// How far each start moves the token counter past its durable value: more than the
/// tokens a run can hand out between two durable commits (`DURABLE_AT_LEAST_EVERY`
/// commits of at most `MAX_BATCHES_PER_COMMIT` batches).
const TOKEN_GAP: u64 = 1 << 40;

/// Every this many commits, one is durable even if its batches need not be, so that the
/// database's free space is recycled and not-durable changes do not pile up.
const DURABLE_AT_LEAST_EVERY: u32 = 256;

/// Whether a batch must be on disk before it is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Locks that survive a crash of the server (advisory locks, expiries).
    Durable,
    /// Writers' turns of open files: fencing covers a crash that forgets them.
    Lapsable,
}

/// Memory redb may use for caching pages of the lock table. Fixed, so the server's memory
/// does not grow with the number of locks; the OS page cache serves the rest.
pub const CACHE_BYTES: usize = 16 << 20;

/// Most batches one commit takes off the queue.
const MAX_BATCHES_PER_COMMIT: usize = 4096;

/// Maps any redb error of the lock database to the error users see.
pub fn db_err<E: Into<redb::Error>>(e: E) -> FsError {
    crate::errors::db_err("lock database", e)
}

/// Opens (or creates) the lock database; returns it and the next fencing token.
pub fn open(path: &Path) -> Result<(Database, u64), FsError> {
    // Durable grants cost one append to a log beside the file (crate::wal).
    let backend = crate::wal::WalFile::open(path).map_err(|e| db_err(redb::Error::Io(e)))?;
    let db = Database::builder()
        .set_cache_size(CACHE_BYTES)
        .create_with_backend(backend)
        .map_err(db_err)?;
    let txn = db.begin_write().map_err(db_err)?;
    let next = {
        txn.open_table(LOCKS).map_err(db_err)?;
        txn.open_table(BY_CLIENT).map_err(db_err)?;
        txn.open_table(BY_EXPIRY).map_err(db_err)?;
        let meta = txn.open_table(META).map_err(db_err)?;
        let v = meta.get(NEXT_TOKEN).map_err(db_err)?.map(|g| g.value());
        v.unwrap_or(1).max(1)
    };
    // Tokens handed out by not-durable grants before a crash are all below this.
    let next = next.saturating_add(TOKEN_GAP);
    {
        let mut meta = txn.open_table(META).map_err(db_err)?;
        meta.insert(NEXT_TOKEN, next).map_err(db_err)?;
    }
    txn.commit().map_err(db_err)?;
    Ok((db, next))
}

/// Reads one record (`None`: nothing held on `ino`).
pub fn load<T: ReadableTable<u64, &'static [u8]>>(
    t: &T,
    ino: Ino,
) -> Result<Option<InoRecord>, FsError> {
    match t.get(ino).map_err(db_err)? {
        None => Ok(None),
        Some(g) => codec::decode(g.value())
            .map(Some)
            .map_err(|e| FsError::Io(format!("lock record of inode {ino} unreadable: {e}"))),
    }
}

/// A read snapshot of the lock table.
pub struct Snapshot {
    txn: ReadTransaction,
}

impl Snapshot {
    pub fn new(db: &Database) -> Result<Snapshot, FsError> {
        Ok(Snapshot {
            txn: db.begin_read().map_err(db_err)?,
        })
    }

    pub fn record(&self, ino: Ino) -> Result<Option<InoRecord>, FsError> {
        let t = self.txn.open_table(LOCKS).map_err(db_err)?;
        load(&t, ino)
    }

    /// Up to `limit` inos on which `client` holds something, after `after`.
    pub fn client_inos(
        &self,
        client: u64,
        after: Option<Ino>,
        limit: usize,
    ) -> Result<Vec<Ino>, FsError> {
        let t = self.txn.open_table(BY_CLIENT).map_err(db_err)?;
        let start = match after {
            None => (client, 0),
            Some(u64::MAX) => return Ok(Vec::new()),
            Some(a) => (client, a + 1),
        };
        let mut out = Vec::new();
        for item in t.range(start..=(client, u64::MAX)).map_err(db_err)? {
            let (k, _) = item.map_err(db_err)?;
            out.push(k.value().1);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Up to `limit` (expiry, ino) index keys after `cursor` whose expiry is at most `now_ms`.
    pub fn expired(
        &self,
        cursor: (u64, u64),
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Ino)>, FsError> {
        let t = self.txn.open_table(BY_EXPIRY).map_err(db_err)?;
        let mut out = Vec::new();
        let range = (
            std::ops::Bound::Excluded(cursor),
            std::ops::Bound::Included((now_ms, u64::MAX)),
        );
        for item in t.range(range).map_err(db_err)? {
            let (k, _) = item.map_err(db_err)?;
            out.push(k.value());
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Feeds `f` the records in ino order after `after`, until it returns false.
    pub fn records(
        &self,
        after: Option<Ino>,
        mut f: impl FnMut(Ino, InoRecord) -> bool,
    ) -> Result<(), FsError> {
        let t = self.txn.open_table(LOCKS).map_err(db_err)?;
        let start = match after {
            None => 0,
            Some(u64::MAX) => return Ok(()),
            Some(a) => a + 1,
        };
        for item in t.range(start..).map_err(db_err)? {
            let (k, v) = item.map_err(db_err)?;
            let ino = k.value();
            let rec: InoRecord = codec::decode(v.value())
                .map_err(|e| FsError::Io(format!("lock record of inode {ino} unreadable: {e}")))?;
            if !f(ino, rec) {
                break;
            }
        }
        Ok(())
    }
}

/// The new state of one file id (`None` or empty: nothing held any more).
pub struct Put {
    pub ino: Ino,
    pub record: Option<InoRecord>,
}

/// One unit handed to the writer: its puts, the stripe guards to release and the stripes
/// to wake once they are durable.
struct Batch {
    puts: Vec<Put>,
    durability: Durability,
    guards: Vec<OwnedMutexGuard<()>>,
    wake: Vec<Arc<Notify>>,
    done: oneshot::Sender<Result<(), FsError>>,
}

/// The handle to the writer thread. Dropping it stops the thread (after the batches
/// already queued) and waits for it, so the database is closed afterwards.
pub struct Writer {
    tx: Option<mpsc::UnboundedSender<Batch>>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub tokens: Arc<AtomicU64>,
    progress: Arc<Progress>,
}

/// How many batches were queued and how many the writer has finished (committed or
/// failed): a reader waits for the second to reach what the first was when it began.
#[derive(Default)]
struct Progress {
    queued: AtomicU64,
    finished: AtomicU64,
    advanced: Notify,
}

impl Progress {
    fn finish(&self, batches: u64) {
        self.finished.fetch_add(batches, Ordering::SeqCst);
        self.advanced.notify_waiters();
    }
}

/// Marks every batch finished when the writer thread ends, however it ends, so that no
/// reader waits for it forever.
struct FinishAll(Arc<Progress>);

impl Drop for FinishAll {
    fn drop(&mut self) {
        self.0.finish(u64::MAX / 2);
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Writer {
    /// Starts the writer thread over `db`; `next_token` is the counter's durable value.
    pub fn start(db: Arc<Database>, next_token: u64) -> Result<Writer, FsError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let tokens = Arc::new(AtomicU64::new(next_token));
        let progress = Arc::new(Progress::default());
        let (t, p) = (tokens.clone(), progress.clone());
        let thread = std::thread::Builder::new()
            .name("dfs-lock-writer".into())
            .spawn(move || run(db, rx, t, p))
            .map_err(|e| FsError::Io(format!("cannot start the lock writer: {e}")))?;
        Ok(Writer {
            tx: Some(tx),
            thread: Some(thread),
            tokens,
            progress,
        })
    }

    /// Returns once every batch queued before the call is committed (or failed): a read
    /// after it sees every change answered before it, including the not-durable ones,
    /// which are answered when queued.
    pub async fn caught_up(&self) {
        let p = &self.progress;
        let target = p.queued.load(Ordering::SeqCst);
        loop {
            let advanced = p.advanced.notified();
            tokio::pin!(advanced);
            advanced.as_mut().enable();
            if p.finished.load(Ordering::SeqCst) >= target {
                return;
            }
            advanced.await;
        }
    }

    /// Writes `puts` (with whatever else is pending, in one commit), durably unless
    /// `durability` allows otherwise. The guards are held until the commit is done (or
    /// failed), even if the caller stops waiting; then they are released and `wake`
    /// notified. Returns when the commit is done, or for a `Lapsable` batch as soon as it
    /// is queued: its grant is answered without waiting for the writer thread, a wake-up
    /// there and one back (a create waited 220 µs for its grant on a slow hour here).
    pub async fn submit(
        &self,
        puts: Vec<Put>,
        durability: Durability,
        guards: Vec<OwnedMutexGuard<()>>,
        wake: Vec<Arc<Notify>>,
    ) -> Result<(), FsError> {
        if puts.is_empty() {
            return Ok(());
        }
        let (done, rx) = oneshot::channel();
        let stopped = || FsError::Unavailable("the lock writer has stopped".into());
        let tx = self.tx.as_ref().ok_or_else(stopped)?;
        self.progress.queued.fetch_add(1, Ordering::SeqCst);
        let batch = Batch {
            puts,
            durability,
            guards,
            wake,
            done,
        };
        if tx.send(batch).is_err() {
            self.progress.finish(1);
            return Err(stopped());
        }
        if durability == Durability::Lapsable {
            return Ok(());
        }
        rx.await
            .map_err(|_| FsError::Io("the lock writer dropped a batch".into()))?
    }
}

fn run(
    db: Arc<Database>,
    mut rx: mpsc::UnboundedReceiver<Batch>,
    tokens: Arc<AtomicU64>,
    progress: Arc<Progress>,
) {
    let _finish_all = FinishAll(progress.clone());
    let mut persisted = 0u64;
    let mut since_durable = 0u32;
    while let Some(first) = rx.blocking_recv() {
        let mut batches = vec![first];
        while batches.len() < MAX_BATCHES_PER_COMMIT {
            match rx.try_recv() {
                Ok(b) => batches.push(b),
                Err(_) => break,
            }
        }
        // Every token handed out for these batches was taken before they were queued.
        let next = tokens.load(Ordering::SeqCst);
        since_durable += 1;
        let durable = since_durable >= DURABLE_AT_LEAST_EVERY
            || batches.iter().any(|b| b.durability == Durability::Durable);
        let durability = if durable {
            since_durable = 0;
            DbDurability::Immediate
        } else {
            DbDurability::None
        };
        let result = commit(
            &db,
            &batches,
            (next != persisted).then_some(next),
            durability,
        );
        match &result {
            Ok(()) => persisted = next,
            Err(e) => log::error!("lock table commit of {} batches failed: {e}", batches.len()),
        }
        let count = batches.len() as u64;
        for b in batches {
            drop(b.guards);
            for n in &b.wake {
                n.notify_waiters();
            }
            let _ = b.done.send(result.clone());
        }
        progress.finish(count);
    }
    log::debug!("lock writer stopped");
}

fn commit(
    db: &Database,
    batches: &[Batch],
    next_token: Option<u64>,
    durability: DbDurability,
) -> Result<(), FsError> {
    let mut txn = db.begin_write().map_err(db_err)?;
    txn.set_durability(durability)
        .map_err(|e| FsError::Io(format!("lock database: {e}")))?;
    {
        let mut locks = txn.open_table(LOCKS).map_err(db_err)?;
        let mut by_client = txn.open_table(BY_CLIENT).map_err(db_err)?;
        let mut by_expiry = txn.open_table(BY_EXPIRY).map_err(db_err)?;
        for put in batches.iter().flat_map(|b| b.puts.iter()) {
            let ino = put.ino;
            // A record that cannot be read is replaced; its index entries may linger, and
            // readers of the indexes always re-check the record.
            let old = match load(&locks, ino) {
                Ok(r) => r.unwrap_or_default(),
                Err(e) => {
                    log::error!("{e}; replacing it");
                    InoRecord::default()
                }
            };
            let new = put.record.clone().unwrap_or_default();
            let (old_min, new_min) = (old.min_expiry(), new.min_expiry());
            if old_min != new_min {
                if let Some(m) = old_min {
                    by_expiry.remove((m, ino)).map_err(db_err)?;
                }
                if let Some(m) = new_min {
                    by_expiry.insert((m, ino), ()).map_err(db_err)?;
                }
            }
            let (old_c, new_c) = (old.clients(), new.clients());
            for c in old_c.iter().filter(|c| new_c.binary_search(c).is_err()) {
                by_client.remove((*c, ino)).map_err(db_err)?;
            }
            for c in new_c.iter().filter(|c| old_c.binary_search(c).is_err()) {
                by_client.insert((*c, ino), ()).map_err(db_err)?;
            }
            if new.is_empty() {
                locks.remove(ino).map_err(db_err)?;
            } else {
                locks
                    .insert(ino, codec::encode(&new).as_slice())
                    .map_err(db_err)?;
            }
        }
        if let Some(next) = next_token {
            let mut meta = txn.open_table(META).map_err(db_err)?;
            let stored = meta.get(NEXT_TOKEN).map_err(db_err)?.map(|g| g.value());
            meta.insert(NEXT_TOKEN, next.max(stored.unwrap_or(0)))
                .map_err(db_err)?;
        }
    }
    txn.commit().map_err(db_err)
}
