//! Transactions in the namespace database: the records of open transactions (who began
//! them, until when they live, which staged blobs they hold), the outcomes of finished ones,
//! and the batch commit. They live in the same redb file as the namespace so that a whole
//! batch, its preconditions and the end of its transaction are ONE durable write
//! transaction: a crash leaves all of it or none of it.
//!
//! A staged blob counts as one reference held by its transaction (so the garbage collector
//! leaves it alone) until the transaction ends; then that reference goes, and a blob no
//! file took becomes garbage like any other unreferenced blob.
//!
//! Commands (`TxCommand`) are deterministic like `NsCommand`: every time and expiry is in
//! the command. Owns: the `tx_open` / `tx_done` / `tx_owner` tables, the transaction commands, and the
//! one write transaction of a commit; the batch inside it (path resolution,
//! preconditions, operations in order, all or nothing) is `batch`'s. Must not touch: blob
//! files, locks, HTTP, callbacks, the clock.

mod batch;

use super::store::{self, db_err, Writer, DIRENTS, INODES};
use super::{Namespace, NsOutcome};
use crate::auth::Caller;
pub use batch::components;
use batch::{batch, walk};
use dfs_common::tx::{AbortReason, Committed, TxFailure, TxId, TxOp, TxStatus};
use dfs_common::{codec, BlobId, FileKind, FsError, Ino, Timestamp};
use redb::{ReadableTable, Table, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

/// tx id -> bincode `OpenTx`.
pub const TX_OPEN: TableDefinition<u64, &[u8]> = TableDefinition::new("tx_open");
/// tx id -> bincode `DoneTx` (outcomes of finished transactions, pruned after a while).
pub const TX_DONE: TableDefinition<u64, &[u8]> = TableDefinition::new("tx_done");
/// tx id -> uid of the principal that began it (`TxOwner`), kept as long as the
/// transaction's record or outcome. A table of its own so that the records keep their
/// layout; a transaction begun before it has no row and belongs to its client alone.
pub const TX_OWNER: TableDefinition<u64, u32> = TableDefinition::new("tx_owner");
const META_NEXT_TX: &str = "next_tx";

/// An open transaction as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenTx {
    pub client: u64,
    pub label: String,
    /// Wall-clock expiry (ms since the Unix epoch), so it keeps counting across restarts.
    pub expires_ms: u64,
    /// Staged blobs and their sizes, each once.
    pub staged: Vec<(BlobId, u64)>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct DoneTx {
    client: u64,
    at_ms: u64,
    status: TxStatus,
}

/// Milliseconds since the Unix epoch of a timestamp (0 before it).
pub fn ms_of(t: Timestamp) -> u64 {
    if t.secs < 0 {
        return 0;
    }
    (t.secs as u64)
        .saturating_mul(1000)
        .saturating_add(t.nanos as u64 / 1_000_000)
}

/// Who a transaction belongs to: the client (mount) that began it and the principal (uid)
/// it acted for. To anyone else the transaction does not exist, so another user cannot
/// commit, abort or read a transaction (nor put its staged contents into a file of theirs)
/// even with its client id and number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxOwner {
    pub client: u64,
    pub uid: u32,
}

/// A batch to commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxBatch {
    pub tx: TxId,
    pub client: u64,
    pub ops: Vec<TxOp>,
    /// Who commits (the transaction must be theirs: `client` and `caller.uid`): each
    /// operation is checked against these rights (`batch`).
    pub caller: Caller,
    /// Owner of what the batch creates.
    pub uid: u32,
    pub gid: u32,
    /// Inodes whose writers' lock the caller holds for this batch. Replacing the contents
    /// of any other file that existed before the batch is refused with `NeedLocks`.
    pub locked: Vec<Ino>,
    pub now: Timestamp,
}

impl TxBatch {
    /// Whose transaction the batch must be.
    pub fn owner(&self) -> TxOwner {
        TxOwner {
            client: self.client,
            uid: self.caller.uid,
        }
    }
}

/// One mutation of the transaction records (and, for `Commit`, of the namespace).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxCommand {
    Begin {
        owner: TxOwner,
        label: String,
        expires_ms: u64,
    },
    /// `blob` (installed and pinned by the caller) is held by `tx` from now on.
    Stage {
        tx: TxId,
        owner: TxOwner,
        blob: BlobId,
        size: u64,
        expires_ms: u64,
    },
    Renew {
        tx: TxId,
        owner: TxOwner,
        expires_ms: u64,
    },
    Commit(TxBatch),
    /// Ends an open transaction without committing (`by: None` = the server itself).
    Abort {
        tx: TxId,
        by: Option<TxOwner>,
        reason: AbortReason,
        now: Timestamp,
    },
    /// Aborts those of `txs` that are still open and whose lease ended by `now`.
    Expire {
        txs: Vec<TxId>,
        now: Timestamp,
    },
    /// Forgets outcomes of transactions that ended before `before_ms`.
    PruneDone {
        before_ms: u64,
    },
}

/// What a `TxCommand` came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxApplied {
    Begun(TxId),
    Done,
    /// What the transaction came to (an abort of a finished one changes nothing).
    Ended(TxStatus),
    Expired(Vec<TxId>),
    Committed {
        committed: Committed,
        outcome: NsOutcome,
    },
    /// The commit failed; nothing changed and the transaction is aborted.
    Failed(TxFailure),
    /// Nothing changed and the transaction is still open: the batch replaces the contents
    /// of these pre-existing files (with the index of the first operation that does), whose
    /// writers' locks were not in `locked`.
    NeedLocks(Vec<(Ino, u32)>),
}

/// Why a batch stopped.
enum Stop {
    Fatal(FsError),
    Failed(TxFailure),
    NeedLocks(Vec<(Ino, u32)>),
}

impl From<FsError> for Stop {
    fn from(e: FsError) -> Stop {
        Stop::Fatal(e)
    }
}

struct Tables<'t> {
    open: Table<'t, u64, &'static [u8]>,
    done: Table<'t, u64, &'static [u8]>,
    owner: Table<'t, u64, u32>,
}

/// Whether transaction `tx`, begun by `client` (its record says) with `uid` recorded (if
/// any), is `who`'s.
fn belongs(client: u64, uid: Option<u32>, who: TxOwner) -> bool {
    client == who.client && uid.is_none_or(|u| u == who.uid)
}

impl<'t> Tables<'t> {
    fn open(txn: &'t WriteTransaction) -> Result<Tables<'t>, FsError> {
        Ok(Tables {
            open: txn.open_table(TX_OPEN).map_err(db_err)?,
            done: txn.open_table(TX_DONE).map_err(db_err)?,
            owner: txn.open_table(TX_OWNER).map_err(db_err)?,
        })
    }

    fn uid_of(&self, tx: TxId) -> Result<Option<u32>, FsError> {
        Ok(self.owner.get(tx).map_err(db_err)?.map(|g| g.value()))
    }

    fn get_open(&self, tx: TxId) -> Result<Option<OpenTx>, FsError> {
        decode_row(
            self.open
                .get(tx)
                .map_err(db_err)?
                .map(|g| g.value().to_vec()),
            tx,
        )
    }

    fn put_open(&mut self, tx: TxId, rec: &OpenTx) -> Result<(), FsError> {
        let bytes = codec::encode(rec);
        self.open.insert(tx, bytes.as_slice()).map_err(db_err)?;
        Ok(())
    }

    fn get_done(&self, tx: TxId) -> Result<Option<DoneTx>, FsError> {
        decode_row(
            self.done
                .get(tx)
                .map_err(db_err)?
                .map(|g| g.value().to_vec()),
            tx,
        )
    }

    /// Ends open transaction `tx`: drops its hold on its staged blobs, records `status`.
    fn end(
        &mut self,
        w: &mut Writer<'_>,
        tx: TxId,
        rec: &OpenTx,
        status: TxStatus,
        now: Timestamp,
        unreferenced: &mut Vec<BlobId>,
    ) -> Result<(), FsError> {
        for (blob, _) in &rec.staged {
            if w.blob_unref(blob, now)? {
                unreferenced.push(*blob);
            }
        }
        self.open.remove(tx).map_err(db_err)?;
        let done = DoneTx {
            client: rec.client,
            at_ms: ms_of(now),
            status,
        };
        let bytes = codec::encode(&done);
        self.done.insert(tx, bytes.as_slice()).map_err(db_err)?;
        Ok(())
    }
}

fn decode_row<T: serde::de::DeserializeOwned>(
    bytes: Option<Vec<u8>>,
    tx: TxId,
) -> Result<Option<T>, FsError> {
    match bytes {
        None => Ok(None),
        Some(b) => codec::decode(&b)
            .map(Some)
            .map_err(|e| FsError::Io(format!("transaction {tx} record unreadable: {e}"))),
    }
}

fn not_open(tx: TxId, done: Option<DoneTx>, uid: Option<u32>, who: TxOwner) -> FsError {
    match done {
        Some(d) if belongs(d.client, uid, who) => match d.status {
            TxStatus::Committed(_) => {
                FsError::Stale(format!("transaction {tx} is already committed"))
            }
            TxStatus::Aborted(why) => FsError::Stale(format!("transaction {tx} {why}")),
            TxStatus::Open { .. } => FsError::Stale(format!("transaction {tx} is not open")),
        },
        _ => FsError::NotFound,
    }
}

/// The open transaction `tx` of `who`, or the error that says why there is none.
fn owned(t: &Tables<'_>, tx: TxId, who: TxOwner) -> Result<OpenTx, FsError> {
    let uid = t.uid_of(tx)?;
    match t.get_open(tx)? {
        Some(rec) if belongs(rec.client, uid, who) => Ok(rec),
        Some(_) => Err(FsError::NotFound),
        None => Err(not_open(tx, t.get_done(tx)?, uid, who)),
    }
}

/// Every command but `Commit`, inside one write transaction.
fn simple(w: &mut Writer<'_>, t: &mut Tables<'_>, cmd: TxCommand) -> Result<TxApplied, FsError> {
    match cmd {
        TxCommand::Begin {
            owner,
            label,
            expires_ms,
        } => {
            let tx = w.meta(META_NEXT_TX)?.unwrap_or(1).max(1);
            w.set_meta(META_NEXT_TX, tx + 1)?;
            let rec = OpenTx {
                client: owner.client,
                label,
                expires_ms,
                staged: Vec::new(),
            };
            t.put_open(tx, &rec)?;
            t.owner.insert(tx, owner.uid).map_err(db_err)?;
            Ok(TxApplied::Begun(tx))
        }
        TxCommand::Stage {
            tx,
            owner,
            blob,
            size,
            expires_ms,
        } => {
            let mut rec = owned(t, tx, owner)?;
            if !rec.staged.iter().any(|(b, _)| *b == blob) {
                w.blob_ref(&blob)?;
                rec.staged.push((blob, size));
            }
            rec.expires_ms = rec.expires_ms.max(expires_ms);
            t.put_open(tx, &rec)?;
            Ok(TxApplied::Done)
        }
        TxCommand::Renew {
            tx,
            owner,
            expires_ms,
        } => {
            let mut rec = owned(t, tx, owner)?;
            rec.expires_ms = rec.expires_ms.max(expires_ms);
            t.put_open(tx, &rec)?;
            Ok(TxApplied::Done)
        }
        TxCommand::Abort {
            tx,
            by,
            reason,
            now,
        } => {
            let uid = t.uid_of(tx)?;
            let allowed = |client| by.is_none_or(|who| belongs(client, uid, who));
            match t.get_open(tx)? {
                Some(rec) if allowed(rec.client) => {
                    let status = TxStatus::Aborted(reason);
                    t.end(w, tx, &rec, status.clone(), now, &mut Vec::new())?;
                    Ok(TxApplied::Ended(status))
                }
                Some(_) => Err(FsError::NotFound),
                None => match t.get_done(tx)? {
                    Some(d) if allowed(d.client) => Ok(TxApplied::Ended(d.status)),
                    _ => Err(FsError::NotFound),
                },
            }
        }
        TxCommand::Expire { txs, now } => {
            let now_ms = ms_of(now);
            let mut ended = Vec::new();
            for tx in txs {
                if let Some(rec) = t.get_open(tx)? {
                    if rec.expires_ms <= now_ms {
                        let status = TxStatus::Aborted(AbortReason::Expired);
                        t.end(w, tx, &rec, status, now, &mut Vec::new())?;
                        ended.push(tx);
                    }
                }
            }
            Ok(TxApplied::Expired(ended))
        }
        TxCommand::PruneDone { before_ms } => {
            let mut old = Vec::new();
            for item in t.done.iter().map_err(db_err)? {
                let (k, v) = item.map_err(db_err)?;
                let d: DoneTx = codec::decode(v.value())
                    .map_err(|e| FsError::Io(format!("transaction record unreadable: {e}")))?;
                if d.at_ms < before_ms {
                    old.push(k.value());
                }
            }
            for tx in old {
                t.done.remove(tx).map_err(db_err)?;
                t.owner.remove(tx).map_err(db_err)?;
            }
            Ok(TxApplied::Done)
        }
        TxCommand::Commit(_) => Err(FsError::Io("commit is not a simple command".into())),
    }
}

impl Namespace {
    /// Applies one transaction command. Everything but `Commit` is one durable write
    /// transaction. `Commit` is one write transaction that applies the whole batch and
    /// ends the transaction, committed only if every precondition and operation held; if
    /// one failed, that write transaction is dropped and a second one records the abort
    /// (releasing the staged blobs). On `Err` nothing changed.
    pub fn apply_tx(&self, cmd: TxCommand) -> Result<TxApplied, FsError> {
        let _durable = self.group.durable_writer();
        let batch_cmd = match cmd {
            TxCommand::Commit(b) => b,
            other => {
                let txn = store::begin(&self.db)?;
                let result = {
                    let mut w = Writer::open(&txn)?;
                    let mut t = Tables::open(&txn)?;
                    simple(&mut w, &mut t, other)
                };
                return match result {
                    Ok(applied) => {
                        txn.commit().map_err(db_err)?;
                        Ok(applied)
                    }
                    Err(e) => {
                        let _ = txn.abort();
                        Err(e)
                    }
                };
            }
        };
        let txn = store::begin(&self.db)?;
        let result = {
            let mut w = Writer::open(&txn)?;
            let mut t = Tables::open(&txn)?;
            batch(&mut w, &mut t, &batch_cmd)
        };
        match result {
            Ok(applied) => {
                txn.commit().map_err(db_err)?;
                Ok(applied)
            }
            Err(stop) => {
                let _ = txn.abort();
                match stop {
                    Stop::Fatal(e) => Err(e),
                    Stop::NeedLocks(v) => Ok(TxApplied::NeedLocks(v)),
                    Stop::Failed(f) => {
                        let end = TxCommand::Abort {
                            tx: batch_cmd.tx,
                            by: Some(batch_cmd.owner()),
                            reason: AbortReason::Failed(f.clone()),
                            now: batch_cmd.now,
                        };
                        self.apply_tx(end)?;
                        Ok(TxApplied::Failed(f))
                    }
                }
            }
        }
    }

    fn tx_read<T>(
        &self,
        f: impl FnOnce(
            &redb::ReadOnlyTable<u64, &'static [u8]>,
            &redb::ReadOnlyTable<u64, &'static [u8]>,
        ) -> Result<T, FsError>,
        empty: impl FnOnce() -> Result<T, FsError>,
    ) -> Result<T, FsError> {
        let tx = self.read()?;
        let open = match tx.open_table(TX_OPEN) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return empty(),
            Err(e) => return Err(db_err(e)),
        };
        let done = match tx.open_table(TX_DONE) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return empty(),
            Err(e) => return Err(db_err(e)),
        };
        f(&open, &done)
    }

    /// The open transaction `tx`, if it is open.
    pub fn tx_open(&self, tx: TxId) -> Result<Option<OpenTx>, FsError> {
        self.tx_read(
            |open, _| {
                decode_row(
                    open.get(tx).map_err(db_err)?.map(|g| g.value().to_vec()),
                    tx,
                )
            },
            || Ok(None),
        )
    }

    /// What transaction `tx` of `who` is or came to; `NotFound` if unknown (or someone
    /// else's).
    pub fn tx_status(&self, tx: TxId, who: TxOwner, now_ms: u64) -> Result<TxStatus, FsError> {
        let uid = self.tx_uid(tx)?;
        self.tx_read(
            |open, done| {
                let o: Option<OpenTx> = decode_row(
                    open.get(tx).map_err(db_err)?.map(|g| g.value().to_vec()),
                    tx,
                )?;
                if let Some(o) = o {
                    if !belongs(o.client, uid, who) {
                        return Err(FsError::NotFound);
                    }
                    return Ok(TxStatus::Open {
                        expires_in_ms: o.expires_ms.saturating_sub(now_ms),
                        staged: o.staged.len() as u32,
                    });
                }
                let d: Option<DoneTx> = decode_row(
                    done.get(tx).map_err(db_err)?.map(|g| g.value().to_vec()),
                    tx,
                )?;
                match d {
                    Some(d) if belongs(d.client, uid, who) => Ok(d.status),
                    _ => Err(FsError::NotFound),
                }
            },
            || Err(FsError::NotFound),
        )
    }

    /// The uid recorded as the owner of `tx`, if any.
    fn tx_uid(&self, tx: TxId) -> Result<Option<u32>, FsError> {
        let read = self.read()?;
        match read.open_table(TX_OWNER) {
            Ok(t) => Ok(t.get(tx).map_err(db_err)?.map(|g| g.value())),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
            Err(e) => Err(db_err(e)),
        }
    }

    /// Open transactions whose lease ended by `now_ms`.
    pub fn tx_due(&self, now_ms: u64) -> Result<Vec<TxId>, FsError> {
        self.tx_read(
            |open, _| {
                let mut out = Vec::new();
                for item in open.iter().map_err(db_err)? {
                    let (k, v) = item.map_err(db_err)?;
                    let rec: OpenTx = codec::decode(v.value())
                        .map_err(|e| FsError::Io(format!("transaction record unreadable: {e}")))?;
                    if rec.expires_ms <= now_ms {
                        out.push(k.value());
                    }
                }
                Ok(out)
            },
            || Ok(Vec::new()),
        )
    }

    /// The existing regular files whose contents `ops` replace, as the namespace is now
    /// (with the index of the first operation that does), in inode order: the writers'
    /// locks a commit takes first (of those its caller may write, which the caller picks
    /// out: see `tx`). The commit itself checks again (`NeedLocks`).
    pub fn tx_lock_targets(&self, ops: &[TxOp]) -> Result<Vec<(Ino, u32)>, FsError> {
        let tx = self.read()?;
        let inodes = tx.open_table(INODES).map_err(db_err)?;
        let dirents = tx.open_table(DIRENTS).map_err(db_err)?;
        let mut out: Vec<(Ino, u32)> = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            let TxOp::Put { path, .. } = op else { continue };
            let Ok(comps) = components(path) else {
                continue;
            };
            let found = walk(
                &comps,
                |d, n| Ok(dirents.get((d, n)).map_err(db_err)?.map(|g| g.value())),
                |i| Ok(store::load_inode(&inodes, i)?.map(|r| r.attr.kind)),
                |_| Ok(()),
            )?;
            if let Some(ino) = found {
                let is_file =
                    store::load_inode(&inodes, ino)?.is_some_and(|r| r.attr.kind == FileKind::File);
                if is_file && !out.iter().any(|(n, _)| *n == ino) {
                    out.push((ino, i as u32));
                }
            }
        }
        out.sort_unstable();
        Ok(out)
    }
}
