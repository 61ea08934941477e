//! The directory's Raft state machine: the namespace (`Namespace`), driven by the log.
//!
//! Owns: two tables in the namespace database, written in the same transaction as the
//! command they record (`Namespace::apply_recorded`): `raft_applied` (the last applied log
//! id and the last membership) and `raft_requests` (request id -> the outcome of its first
//! application, so a retry is answered again and not applied twice); building a snapshot
//! (a copy of the namespace database as of one applied position) and installing one.
//! Must not: touch the log (`log_store`), fsync what apply commits (the log is durable
//! before an entry is applied: a restart re-applies from the recorded position), or read
//! the clock.
//!
//! Not yet: the request table grows without bound (it needs a deterministic expiry, by the
//! time stamped in the commands).

use super::codec::{decode, encode};
use super::snapshot::{self, Meta, SnapshotFile, Snapshots};
use super::{NodeId, Proposal, Reply, RequestId, StorageError, TypeConfig};
use crate::namespace::{ApplyRecord, Namespace, NsOutcome, TableCopy};
use dfs_common::FsError;
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, StorageIOError,
    StoredMembership,
};
use redb::{
    Database, ReadTransaction, ReadableTable, TableDefinition, TableError, WriteTransaction,
};
use std::path::Path;
use std::sync::Arc;

/// `LAST_APPLIED` -> bincode `LogId`; `MEMBERSHIP` -> bincode `StoredMembership`.
const APPLIED: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_applied");
const LAST_APPLIED: &str = "last_applied";
const MEMBERSHIP: &str = "membership";
/// (client, serial) -> bincode `Result<NsOutcome, FsError>` of the request's first application.
const REQUESTS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("raft_requests");

type Membership = StoredMembership<NodeId, BasicNode>;

/// The tables this module keeps beside the namespace's, copied with it in snapshots.
fn beside() -> [&'static dyn TableCopy; 2] {
    [&APPLIED, &REQUESTS]
}

fn failed(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_state_machine(openraft::AnyError::new(&e)).into()
}

fn read_failed(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::read_state_machine(openraft::AnyError::new(&e)).into()
}

/// Maps a record that cannot be encoded or decoded to the namespace's error type (it ends
/// the apply as a storage failure).
fn record_err(what: &str, e: impl std::fmt::Display) -> FsError {
    FsError::Io(format!("raft {what} record: {e}"))
}

/// The applied position and membership recorded in a database (the namespace's, or a
/// snapshot file's copy of it).
pub fn applied_in(
    txn: &ReadTransaction,
) -> Result<(Option<LogId<NodeId>>, Membership), StorageError> {
    let t = match txn.open_table(APPLIED) {
        Ok(t) => t,
        Err(TableError::TableDoesNotExist(_)) => return Ok((None, Membership::default())),
        Err(e) => return Err(read_failed(e)),
    };
    let last = match t.get(LAST_APPLIED).map_err(read_failed)? {
        Some(g) => Some(decode(g.value()).map_err(read_failed)?),
        None => None,
    };
    let membership = match t.get(MEMBERSHIP).map_err(read_failed)? {
        Some(g) => decode(g.value()).map_err(read_failed)?,
        None => Membership::default(),
    };
    Ok((last, membership))
}

/// Records `log_id` as applied (and `membership` as the last one) in `txn`.
fn mark_applied(
    txn: &WriteTransaction,
    log_id: &LogId<NodeId>,
    membership: Option<&Membership>,
) -> Result<(), FsError> {
    let mut t = txn
        .open_table(APPLIED)
        .map_err(|e| record_err("applied", e))?;
    let bytes = encode(log_id).map_err(|e| record_err("applied", e))?;
    t.insert(LAST_APPLIED, bytes.as_slice())
        .map_err(|e| record_err("applied", e))?;
    if let Some(m) = membership {
        let bytes = encode(m).map_err(|e| record_err("membership", e))?;
        t.insert(MEMBERSHIP, bytes.as_slice())
            .map_err(|e| record_err("membership", e))?;
    }
    Ok(())
}

/// The record of one command entry: its log id and its request id.
struct Record {
    log_id: LogId<NodeId>,
    id: RequestId,
}

impl ApplyRecord for Record {
    fn earlier(
        &self,
        txn: &WriteTransaction,
    ) -> Result<Option<Result<NsOutcome, FsError>>, FsError> {
        let t = txn
            .open_table(REQUESTS)
            .map_err(|e| record_err("request", e))?;
        let found = t
            .get((self.id.client, self.id.serial))
            .map_err(|e| record_err("request", e))?;
        match found {
            None => Ok(None),
            Some(g) => decode(g.value())
                .map(Some)
                .map_err(|e| record_err("request", e)),
        }
    }

    fn record(
        &self,
        txn: &WriteTransaction,
        outcome: &Result<NsOutcome, FsError>,
        repeated: bool,
    ) -> Result<(), FsError> {
        if !repeated {
            let bytes = encode(outcome).map_err(|e| record_err("request", e))?;
            let mut t = txn
                .open_table(REQUESTS)
                .map_err(|e| record_err("request", e))?;
            t.insert((self.id.client, self.id.serial), bytes.as_slice())
                .map_err(|e| record_err("request", e))?;
        }
        mark_applied(txn, &self.log_id, None)
    }
}

/// Applies one entry (blocking). A namespace error here is a storage failure: a command's
/// own error is its outcome, inside `Ok`.
fn apply_one(ns: &Namespace, entry: Entry<TypeConfig>) -> Result<Reply, StorageError> {
    let log_id = entry.log_id;
    let applied = |e: FsError| -> StorageError {
        StorageIOError::apply(log_id, openraft::AnyError::new(&e)).into()
    };
    let empty = Reply {
        outcome: Ok(NsOutcome::default()),
        repeated: false,
    };
    match entry.payload {
        EntryPayload::Blank => {
            ns.write_beside(|txn| mark_applied(txn, &log_id, None))
                .map_err(applied)?;
            Ok(empty)
        }
        EntryPayload::Membership(m) => {
            let stored = Membership::new(Some(log_id), m);
            ns.write_beside(|txn| mark_applied(txn, &log_id, Some(&stored)))
                .map_err(applied)?;
            Ok(empty)
        }
        EntryPayload::Normal(Proposal { id, cmd }) => {
            let rec = Record { log_id, id };
            let done = ns.apply_recorded(cmd, &rec).map_err(applied)?;
            Ok(Reply {
                outcome: done.outcome,
                repeated: done.repeated,
            })
        }
    }
}

/// The namespace as openraft's state machine.
pub struct NsStateMachine {
    ns: Arc<Namespace>,
    snapshots: Arc<Snapshots>,
}

impl NsStateMachine {
    /// The state machine over `ns`, with its snapshots in `dir`.
    pub fn open(ns: Arc<Namespace>, dir: &Path) -> Result<NsStateMachine, StorageError> {
        Ok(NsStateMachine {
            ns,
            snapshots: Arc::new(Snapshots::open(dir)?),
        })
    }
}

/// Runs `f` on a blocking thread.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(out) => out,
        Err(e) => Err(failed(e)),
    }
}

/// Builds snapshots of the namespace (on a task of openraft's, beside applies).
pub struct Builder {
    ns: Arc<Namespace>,
    snapshots: Arc<Snapshots>,
}

impl RaftSnapshotBuilder<TypeConfig> for Builder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let ns = self.ns.clone();
        let snapshots = self.snapshots.clone();
        let (meta, file) = blocking(move || {
            let path = snapshots.fresh_path("building");
            let db = Database::create(&path).map_err(failed)?;
            ns.export(&beside(), &db).map_err(failed)?;
            let mut meta = snapshot::read_meta(&db)?;
            meta.snapshot_id = match meta.last_log_id {
                Some(l) => format!("{}-{}-{}", l.leader_id, l.index, path_tag(&path)),
                None => format!("none-{}", path_tag(&path)),
            };
            snapshot::write_id(&db, &meta.snapshot_id)?;
            drop(db);
            snapshots.promote(&path, meta)?;
            snapshots
                .current()?
                .ok_or_else(|| failed(std::io::Error::other("snapshot vanished")))
        })
        .await?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(file),
        })
    }
}

/// The distinguishing part of a snapshot file's name.
fn path_tag(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

impl RaftStateMachine<TypeConfig> for NsStateMachine {
    type SnapshotBuilder = Builder;

    async fn applied_state(&mut self) -> Result<(Option<LogId<NodeId>>, Membership), StorageError> {
        let ns = self.ns.clone();
        // The outer error is the namespace's (opening the read), the inner one ours.
        blocking(move || {
            ns.read_beside(|txn| Ok(applied_in(txn)))
                .map_err(read_failed)?
        })
        .await
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Reply>, StorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<_> = entries.into_iter().collect();
        let ns = self.ns.clone();
        blocking(move || entries.into_iter().map(|e| apply_one(&ns, e)).collect()).await
    }

    async fn get_snapshot_builder(&mut self) -> Builder {
        Builder {
            ns: self.ns.clone(),
            snapshots: self.snapshots.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotFile>, StorageError> {
        Ok(Box::new(self.snapshots.receive().await?))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        mut snapshot: Box<SnapshotFile>,
    ) -> Result<(), StorageError> {
        snapshot.sync().await.map_err(failed)?;
        let path = snapshot.path().to_path_buf();
        drop(snapshot);
        let ns = self.ns.clone();
        let snapshots = self.snapshots.clone();
        let meta = meta.clone();
        blocking(move || {
            let db = Database::open(&path).map_err(failed)?;
            let inside = snapshot::read_meta(&db)?;
            if inside.last_log_id != meta.last_log_id
                || inside.last_membership != meta.last_membership
            {
                let e = std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "snapshot {} holds {:?}, its meta says {:?}",
                        meta.snapshot_id, inside.last_log_id, meta.last_log_id
                    ),
                );
                return Err(failed(e));
            }
            ns.import(&beside(), &db).map_err(failed)?;
            drop(db);
            snapshots.promote(&path, meta)
        })
        .await
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let snapshots = self.snapshots.clone();
        let current = blocking(move || snapshots.current()).await?;
        Ok(current.map(|(meta, file)| Snapshot {
            meta,
            snapshot: Box::new(file),
        }))
    }
}
