//! The Raft log of the directory, with the vote and the committed position, in its own redb
//! database (`raft-log.redb`) on the project's write-ahead backend (`crate::wal::WalFile`:
//! one sequential append and fdatasync per durable commit, as the namespace's).
//!
//! Owns: the `raft_log` table (index -> entry) and the `raft_state` table (vote, committed
//! log id, last purged log id), and openraft's storage rules over them: a vote is durable
//! before `save_vote` returns (so before it is answered); appended entries are durable
//! before the flush callback is called; entries are kept without holes (an append follows
//! the last entry or a truncation; a purge removes a prefix and records its last id in the
//! same transaction). Must not touch the state machine or the namespace.
//!
//! What needs no fsync: the committed position (only a hint: a restart re-applies up to
//! it, and a lower one is always safe) and purges (a purged prefix that comes back after a
//! crash comes back with its old purge mark, in the same transaction). Truncations are made
//! durable, although an append right after would carry them.

use super::codec::{decode, encode};
use super::{NodeId, StorageError, TypeConfig};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{Entry, LogId, OptionalSend, RaftLogReader, StorageIOError, Vote};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;

/// log index -> the entry (bincode).
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
/// `VOTE`, `COMMITTED`, `PURGED` -> bincode of the value.
const STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_state");
const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const PURGED: &str = "purged";

/// The log storage; clones share the database (a clone is the log reader).
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
}

type Verb = fn(openraft::AnyError) -> StorageIOError<NodeId>;

fn failed(verb: Verb, e: impl std::error::Error + 'static) -> StorageError {
    verb(openraft::AnyError::new(&e)).into()
}

impl LogStore {
    /// Opens (or creates) the log at `path` (the file is locked: one server per log).
    pub fn open(path: &Path) -> Result<LogStore, StorageError> {
        let backend =
            crate::wal::WalFile::open(path).map_err(|e| failed(StorageIOError::read, e))?;
        let db = redb::Builder::new()
            .create_with_backend(backend)
            .map_err(|e| failed(StorageIOError::read, e))?;
        let txn = db
            .begin_write()
            .map_err(|e| failed(StorageIOError::write, e))?;
        txn.open_table(LOG)
            .map_err(|e| failed(StorageIOError::write, e))?;
        txn.open_table(STATE)
            .map_err(|e| failed(StorageIOError::write, e))?;
        txn.commit().map_err(|e| failed(StorageIOError::write, e))?;
        Ok(LogStore { db: Arc::new(db) })
    }

    /// Runs `f` on a blocking thread (redb calls block, and some fsync).
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, StorageError> {
        let db = self.db.clone();
        match tokio::task::spawn_blocking(move || f(&db)).await {
            Ok(out) => out,
            Err(e) => Err(failed(StorageIOError::write, e)),
        }
    }

    /// One write transaction over both tables, committed with `durability`.
    fn write(
        db: &Database,
        durability: Durability,
        verb: Verb,
        f: impl FnOnce(
            &mut redb::Table<u64, &[u8]>,
            &mut redb::Table<&str, &[u8]>,
        ) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        let mut txn = db.begin_write().map_err(|e| failed(verb, e))?;
        txn.set_durability(durability)
            .map_err(|e| failed(verb, e))?;
        {
            let mut log = txn.open_table(LOG).map_err(|e| failed(verb, e))?;
            let mut state = txn.open_table(STATE).map_err(|e| failed(verb, e))?;
            f(&mut log, &mut state)?;
        }
        txn.commit().map_err(|e| failed(verb, e))
    }

    fn get_state<T: serde::de::DeserializeOwned>(
        db: &Database,
        key: &str,
        verb: Verb,
    ) -> Result<Option<T>, StorageError> {
        let txn = db.begin_read().map_err(|e| failed(verb, e))?;
        let state = txn.open_table(STATE).map_err(|e| failed(verb, e))?;
        match state.get(key).map_err(|e| failed(verb, e))? {
            None => Ok(None),
            Some(g) => decode(g.value()).map(Some).map_err(|e| failed(verb, e)),
        }
    }

    fn put_state<T: serde::Serialize>(
        db: &Database,
        key: &'static str,
        value: &T,
        durability: Durability,
        verb: Verb,
    ) -> Result<(), StorageError> {
        let bytes = encode(value).map_err(|e| failed(verb, e))?;
        LogStore::write(db, durability, verb, |_, state| {
            state
                .insert(key, bytes.as_slice())
                .map_err(|e| failed(verb, e))?;
            Ok(())
        })
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError> {
        let lower = range.start_bound().cloned();
        let upper = range.end_bound().cloned();
        self.blocking(move |db| {
            let verb: Verb = StorageIOError::read_logs;
            let txn = db.begin_read().map_err(|e| failed(verb, e))?;
            let log = txn.open_table(LOG).map_err(|e| failed(verb, e))?;
            let mut out = Vec::new();
            for item in log
                .range::<u64>((lower, upper))
                .map_err(|e| failed(verb, e))?
            {
                let (_, v) = item.map_err(|e| failed(verb, e))?;
                out.push(decode(v.value()).map_err(|e| failed(verb, e))?);
            }
            Ok(out)
        })
        .await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        self.blocking(|db| {
            let verb: Verb = StorageIOError::read_logs;
            let purged: Option<LogId<NodeId>> = LogStore::get_state(db, PURGED, verb)?;
            let txn = db.begin_read().map_err(|e| failed(verb, e))?;
            let log = txn.open_table(LOG).map_err(|e| failed(verb, e))?;
            let last = match log.last().map_err(|e| failed(verb, e))? {
                None => purged,
                Some((_, v)) => {
                    let entry: Entry<TypeConfig> =
                        decode(v.value()).map_err(|e| failed(verb, e))?;
                    Some(entry.log_id)
                }
            };
            Ok(LogState {
                last_purged_log_id: purged,
                last_log_id: last,
            })
        })
        .await
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        let vote = *vote;
        self.blocking(move |db| {
            LogStore::put_state(
                db,
                VOTE,
                &vote,
                Durability::Immediate,
                StorageIOError::write_vote,
            )
        })
        .await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.blocking(|db| LogStore::get_state(db, VOTE, StorageIOError::read_vote))
            .await
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError> {
        self.blocking(move |db| {
            LogStore::put_state(
                db,
                COMMITTED,
                &committed,
                Durability::None,
                StorageIOError::write,
            )
        })
        .await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError> {
        self.blocking(|db| {
            let committed: Option<Option<LogId<NodeId>>> =
                LogStore::get_state(db, COMMITTED, StorageIOError::read)?;
            Ok(committed.flatten())
        })
        .await
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let verb: Verb = StorageIOError::write_logs;
        let mut rows = Vec::new();
        for entry in entries {
            rows.push((
                entry.log_id.index,
                encode(&entry).map_err(|e| failed(verb, e))?,
            ));
        }
        let written = self
            .blocking(move |db| {
                LogStore::write(db, Durability::Immediate, verb, |log, _| {
                    for (index, bytes) in &rows {
                        log.insert(*index, bytes.as_slice())
                            .map_err(|e| failed(verb, e))?;
                    }
                    Ok(())
                })
            })
            .await;
        // The callback tells openraft the entries are on disk: only after the commit.
        match &written {
            Ok(()) => callback.log_io_completed(Ok(())),
            Err(e) => callback.log_io_completed(Err(std::io::Error::other(e.clone()))),
        }
        written
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError> {
        self.blocking(move |db| {
            let verb: Verb = StorageIOError::write_logs;
            LogStore::write(db, Durability::Immediate, verb, |log, _| {
                log.retain_in::<u64, _>(
                    (Bound::Included(log_id.index), Bound::Unbounded),
                    |_, _| false,
                )
                .map_err(|e| failed(verb, e))
            })
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError> {
        self.blocking(move |db| {
            let verb: Verb = StorageIOError::write_logs;
            let mark = encode(&log_id).map_err(|e| failed(verb, e))?;
            LogStore::write(db, Durability::None, verb, |log, state| {
                log.retain_in::<u64, _>(..=log_id.index, |_, _| false)
                    .map_err(|e| failed(verb, e))?;
                state
                    .insert(PURGED, mark.as_slice())
                    .map_err(|e| failed(verb, e))?;
                Ok(())
            })
        })
        .await
    }
}
