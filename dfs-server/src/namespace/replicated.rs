//! The namespace as the state machine of a replicated log (`crate::raft`): what a log needs
//! from it beyond `apply`.
//!
//! Owns: opening a replica (no start-up gap in the inode counter: every replica must hand
//! out the same numbers), applying a command together with the log's own record of it in
//! one transaction (`ApplyRecord`), writes and reads of the log's tables beside the
//! namespace's, and copying every table into another database and back (snapshots).
//! Must not: know the log's tables or their layout (the caller passes them as
//! `TableCopy`), decide anything about consensus, or fsync beyond what it is asked.

use super::store::{begin, begin_unsynced, db_err};
use super::{durable, ops, store, CommitSeq, Namespace, NsCommand, NsOutcome};
use dfs_common::{FsError, Timestamp};
use redb::{
    Database, Key, ReadTransaction, ReadableDatabase, TableDefinition, TableError, Value,
    WriteTransaction,
};
use std::path::Path;

/// What a replicated log keeps beside each command it applies: its position in the log,
/// and the outcome of the command for a retry of it.
pub trait ApplyRecord {
    /// Read first, in the command's own transaction: the outcome of an earlier application
    /// of this same command (a client's retry), if there was one; it is then not applied
    /// again.
    fn earlier(
        &self,
        txn: &WriteTransaction,
    ) -> Result<Option<Result<NsOutcome, FsError>>, FsError>;

    /// Written last, in the transaction that commits: the record of `outcome` (`repeated`:
    /// it is the outcome `earlier` gave, the command was not applied).
    fn record(
        &self,
        txn: &WriteTransaction,
        outcome: &Result<NsOutcome, FsError>,
        repeated: bool,
    ) -> Result<(), FsError>;
}

/// What `Namespace::apply_recorded` did.
#[derive(Debug)]
pub struct Recorded {
    /// The command's outcome (the earlier one for a repeated command).
    pub outcome: Result<NsOutcome, FsError>,
    /// The command had been applied before: only the record was written this time.
    pub repeated: bool,
    pub seq: CommitSeq,
}

/// One table copied whole from one database to another (its rows, typed).
pub trait TableCopy {
    fn name(&self) -> &str;
    /// Replaces the table in `to` by the one in `from` (an empty one if `from` has none).
    fn copy(&self, from: &ReadTransaction, to: &WriteTransaction) -> Result<(), FsError>;
}

impl<K: Key + 'static, V: Value + 'static> TableCopy for TableDefinition<'static, K, V> {
    fn name(&self) -> &str {
        redb::TableHandle::name(self)
    }

    fn copy(&self, from: &ReadTransaction, to: &WriteTransaction) -> Result<(), FsError> {
        to.delete_table(*self).map_err(db_err)?;
        let mut dst = to.open_table(*self).map_err(db_err)?;
        let src = match from.open_table(*self) {
            Ok(src) => src,
            Err(TableError::TableDoesNotExist(_)) => return Ok(()),
            Err(e) => return Err(db_err(e)),
        };
        for item in redb::ReadableTable::iter(&src).map_err(db_err)? {
            let (k, v) = item.map_err(db_err)?;
            dst.insert(k.value(), v.value()).map_err(db_err)?;
        }
        Ok(())
    }
}

/// Every table of the namespace's own.
fn own_tables() -> [&'static dyn TableCopy; 12] {
    [
        &store::INODES,
        &store::DIRENTS,
        &store::REFS,
        &store::GARBAGE,
        &store::XATTRS,
        &store::NAMES,
        &store::META,
        &super::clients::CLIENTS,
        &super::txn::TX_OPEN,
        &super::txn::TX_DONE,
        &super::txn::TX_OWNER,
        &durable::JOURNAL,
    ]
}

/// Whether a command's error comes from the database rather than from the command: such
/// an error is no outcome of the command (another replica would not meet it), so it is
/// never recorded as one.
fn from_storage(e: &FsError) -> bool {
    matches!(e, FsError::Io(_) | FsError::NoSpace)
}

impl Namespace {
    /// Opens (or creates) a replica of a replicated namespace at `path`. Unlike `open`, a
    /// fresh root gets the fixed time 0 (every replica creates the same root on its own)
    /// and a start does not move the inode counter (commits are durable in the log before
    /// they are applied, so no number handed out is ever forgotten).
    pub fn open_replicated(path: &Path, root_mode: u32) -> Result<Namespace, FsError> {
        let epoch = Timestamp { secs: 0, nanos: 0 };
        Namespace::open_with(path, root_mode, epoch, false)
    }

    /// Applies `cmd` and `rec`'s record of it in one transaction committed without waiting
    /// for the disk (durable after `sync_through`). A command the record knows is not
    /// applied again: its earlier outcome is returned. A command that fails leaves the
    /// namespace as it was, and its error is recorded (in a second transaction: the first
    /// is dropped whole). `Err` only for a failure of the database, with nothing recorded.
    pub fn apply_recorded(
        &self,
        cmd: NsCommand,
        rec: &dyn ApplyRecord,
    ) -> Result<Recorded, FsError> {
        let done = |outcome, repeated| Recorded {
            outcome,
            repeated,
            seq: self.group.committed(),
        };
        let txn = begin_unsynced(&self.db)?;
        if let Some(earlier) = rec.earlier(&txn)? {
            rec.record(&txn, &earlier, true)?;
            txn.commit().map_err(db_err)?;
            return Ok(done(earlier, true));
        }
        let applied = {
            let mut w = store::Writer::open(&txn)?;
            ops::apply(&mut w, cmd)
        };
        let outcome = match applied {
            Err(e) if from_storage(&e) => return Err(e),
            Err(e) => {
                drop(txn);
                let txn = begin_unsynced(&self.db)?;
                let failed = Err(e);
                rec.record(&txn, &failed, false)?;
                txn.commit().map_err(db_err)?;
                return Ok(done(failed, false));
            }
            Ok(outcome) => Ok(outcome),
        };
        rec.record(&txn, &outcome, false)?;
        txn.commit().map_err(db_err)?;
        Ok(done(outcome, false))
    }

    /// Runs `f` (writes to tables beside the namespace's) in one transaction committed
    /// without waiting for the disk.
    pub fn write_beside<T>(
        &self,
        f: impl FnOnce(&WriteTransaction) -> Result<T, FsError>,
    ) -> Result<(T, CommitSeq), FsError> {
        let txn = begin_unsynced(&self.db)?;
        let out = f(&txn)?;
        txn.commit().map_err(db_err)?;
        Ok((out, self.group.committed()))
    }

    /// Runs `f` over one read transaction.
    pub fn read_beside<T>(
        &self,
        f: impl FnOnce(&ReadTransaction) -> Result<T, FsError>,
    ) -> Result<T, FsError> {
        f(&self.read()?)
    }

    /// Returns once every commit made so far is durable.
    pub fn sync_all(&self) -> Result<(), FsError> {
        let seq = self.group.committed();
        self.sync_through(seq)
    }

    /// Copies the namespace as of one instant, with `beside` (the caller's tables), into
    /// `to` (an empty database), and commits it there durably. The instant is durable here
    /// too before this returns. Refuses a database holding a table neither the namespace
    /// nor `beside` names, so that no table is ever left out of a copy.
    pub fn export(&self, beside: &[&dyn TableCopy], to: &Database) -> Result<(), FsError> {
        let from = self.read()?;
        // Everything the copy sees has committed, so this makes it durable: a log may
        // forget the entries before the copy once it has it.
        self.sync_all()?;
        let tables: Vec<&dyn TableCopy> = own_tables()
            .into_iter()
            .chain(beside.iter().copied())
            .collect();
        for t in from.list_tables().map_err(db_err)? {
            let name = redb::TableHandle::name(&t);
            if !tables.iter().any(|k| k.name() == name) {
                return Err(FsError::Io(format!("namespace copy: unknown table {name}")));
            }
        }
        let txn = to.begin_write().map_err(db_err)?;
        for t in &tables {
            t.copy(&from, &txn)?;
        }
        txn.commit().map_err(db_err)
    }

    /// Replaces every table of the namespace and `beside` by those of `from` (a database
    /// `export` wrote), in one durable transaction.
    pub fn import(&self, beside: &[&dyn TableCopy], from: &Database) -> Result<(), FsError> {
        let src = from.begin_read().map_err(db_err)?;
        let _durable = self.group.durable_writer();
        let txn = begin(&self.db)?;
        for t in own_tables().iter().chain(beside.iter()) {
            t.copy(&src, &txn)?;
        }
        txn.commit().map_err(db_err)?;
        self.group.committed();
        Ok(())
    }
}
