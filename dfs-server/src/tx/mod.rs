//! The transaction service (wire contract: `dfs_common::tx`): begin, stage blobs, commit a
//! batch as one atomic unit, abort, renew, status, and the sweep that aborts transactions
//! whose client went away.
//!
//! How a commit stays atomic, isolated and coherent:
//! - Atomic, also across crashes: the whole batch is ONE `TxCommand::Commit`, applied by
//!   the namespace in one durable redb write transaction together with the end of the
//!   transaction; any failing precondition or operation drops that write transaction.
//! - Isolated: readers use redb read transactions (they see before or after), and redb has
//!   one writer, so two batches never interleave: the outcome is always some serial order,
//!   and preconditions are checked inside the same write transaction (no check/act race).
//! - The writers' turn: before applying, the commit takes the lock service's `Open`
//!   (writers') lock on every existing file whose contents the batch replaces, with
//!   acquire-many in inode order (so two batches, or a batch and a writer, never deadlock),
//!   waiting up to the client's `lock_wait_ms` for a client that has one open for writing;
//!   if the wait runs out the commit fails cleanly naming the holder. The locks are held
//!   under a lock-client id of the transaction's own (`lock_client`), so no mount's lease
//!   renewal can keep them alive after a crash, and are released after the commit. The
//!   namespace re-checks inside the commit that every replaced file was locked
//!   (`NeedLocks`: the batch's own renames can change which file a path names), and the
//!   commit retries with the larger set.
//! - Callbacks: after the commit every other client's promise on what changed is broken
//!   once, all of one client's breaks in one grouped frame.
//! - Rights: every user may run a batch. Each operation is checked inside the commit
//!   against the caller's rights exactly as the same request alone would be (the batch
//!   carries the caller; `namespace::txn`), and the first one refused fails the batch
//!   whole, naming it. In a realm new files are the caller's whatever the request says;
//!   writers' locks are taken only on files the caller may write; results and statuses
//!   carry no content hash of a file the caller may not read.
//!
//! The resources (`/v1/tx/...`) are `crate::api::tx`'s.
//!
//! Owns: the order of those steps, leases of open transactions (in the namespace
//! database; requests in flight keep a transaction from being swept), the sweep
//! (`sweep`). Must not decide namespace rules (namespace) nor touch blob files directly
//! (blobs).

mod sweep;
#[cfg(test)]
mod tests;

pub use sweep::{spawn_sweeper, sweep};

use crate::auth::{perm, Caller};
use crate::cluster::Replication;
use crate::coherence::Coherence;
use crate::lock::LockService;
use crate::namespace::txn::{ms_of, TxApplied, TxBatch, TxCommand, TxOwner};
use dfs_common::locks::{LockClass, LockMode, LockRange, LockReply, LockRequest, ReleaseRequest};
use dfs_common::tx::{
    AbortReason, BeginReply, BeginRequest, CommitReply, CommitRequest, Committed, RenewReply,
    Staged, TxFailure, TxId, TxOp, TxStatus, MAX_OPS,
};
use dfs_common::{BlobId, FsError, Ino, Timestamp};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Default lease of an open transaction.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);
/// How long outcomes of finished transactions are kept for `GET /v1/tx/{id}`.
pub const KEEP_OUTCOMES: Duration = Duration::from_secs(24 * 3600);
/// Most rounds of "lock what the batch replaces, apply" before giving up.
const LOCK_ROUNDS: usize = 5;

/// What the transaction service works on (`crate::services::Services::transactions`).
#[derive(Clone)]
pub struct Transactions {
    pub coherence: Arc<Coherence>,
    pub locks: Arc<LockService>,
    pub replication: Replication,
    pub state: Arc<TxState>,
    pub max_file_size: u64,
}

/// In-memory state of the transaction service.
pub struct TxState {
    lease_ms: AtomicU64,
    /// Transactions with a request in flight (and how many), which the sweep leaves alone.
    busy: Mutex<HashMap<TxId, usize>>,
}

impl Default for TxState {
    fn default() -> Self {
        TxState {
            lease_ms: AtomicU64::new(DEFAULT_LEASE.as_millis() as u64),
            busy: Mutex::new(HashMap::new()),
        }
    }
}

impl TxState {
    pub fn set_lease(&self, lease: Duration) {
        self.lease_ms
            .store((lease.as_millis() as u64).max(100), Ordering::Relaxed);
    }

    pub fn lease_ms(&self) -> u64 {
        self.lease_ms.load(Ordering::Relaxed)
    }

    pub fn is_busy(&self, tx: TxId) -> bool {
        self.busy
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&tx)
    }
}

/// Marks a transaction busy while held.
struct Busy {
    state: Arc<TxState>,
    tx: TxId,
}

fn busy(service: &Transactions, tx: TxId) -> Busy {
    *service
        .state
        .busy
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(tx)
        .or_insert(0) += 1;
    Busy {
        state: service.state.clone(),
        tx,
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let mut b = self.state.busy.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = b.get_mut(&self.tx) {
            *n -= 1;
            if *n == 0 {
                b.remove(&self.tx);
            }
        }
    }
}

/// The lock-client id under which transaction `tx` holds writers' locks. Even, and tagged
/// "tx" in the top bits, so it is no mount's id (those are odd) and no mount's renewal
/// extends it.
pub fn lock_client(tx: TxId) -> u64 {
    0x7478_0000_0000_0000 | ((tx << 1) & 0x0000_ffff_ffff_fffe)
}

fn now_ms() -> u64 {
    ms_of(Timestamp::now())
}

/// Whose transactions `caller` may use: its client's, begun by the same principal.
fn owner_of(caller: Caller) -> Result<TxOwner, FsError> {
    if caller.client == 0 {
        return Err(FsError::BadRequest(format!(
            "transactions need a client id ({})",
            dfs_common::proto::HDR_CLIENT
        )));
    }
    Ok(TxOwner {
        client: caller.client,
        uid: caller.uid,
    })
}

/// `Ok` if `tx` is an open transaction of `owner`; otherwise the error that says why not.
fn check_open(ns: &crate::namespace::Namespace, tx: TxId, owner: TxOwner) -> Result<(), FsError> {
    match ns.tx_status(tx, owner, now_ms())? {
        TxStatus::Open { .. } => Ok(()),
        TxStatus::Committed(_) => Err(FsError::Stale(format!(
            "transaction {tx} is already committed"
        ))),
        TxStatus::Aborted(why) => Err(FsError::Stale(format!("transaction {tx} {why}"))),
    }
}

/// `POST /v1/tx/begin`.
pub async fn begin(
    service: &Transactions,
    caller: Caller,
    req: BeginRequest,
) -> Result<BeginReply, FsError> {
    if service.coherence.replica().is_some() {
        // Transactions write the namespace outside the Raft log: on a replicated directory
        // they would change the leader's copy alone.
        return Err(FsError::NotSupported(
            "transactions on a replicated directory are not built yet".into(),
        ));
    }
    let owner = owner_of(caller)?;
    let lease_ms = service.state.lease_ms();
    let label: String = req.label.chars().take(200).collect();
    let expires_ms = now_ms() + lease_ms;
    let applied = service
        .coherence
        .blocking(move |ns, _| {
            ns.apply_tx(TxCommand::Begin {
                owner,
                label,
                expires_ms,
            })
        })
        .await?;
    match applied {
        TxApplied::Begun(tx) => {
            crate::metrics::TX_BEGUN.inc();
            log::debug!("transaction {tx} begun by client {:#x}", owner.client);
            Ok(BeginReply { tx, lease_ms })
        }
        other => Err(FsError::Io(format!("begin came to {other:?}"))),
    }
}

/// `PUT /v1/tx/{id}/blobs`: `body` of `len` bytes (hashing to `expected` if given).
pub async fn stage<B>(
    service: &Transactions,
    caller: Caller,
    tx: TxId,
    body: B,
    len: u64,
    expected: Option<BlobId>,
) -> Result<Staged, FsError>
where
    B: hyper::body::Body<Data = bytes::Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let owner = owner_of(caller)?;
    let _busy = busy(service, tx);
    if len > service.max_file_size {
        return Err(FsError::TooLarge(format!(
            "{len} bytes, largest file is {} bytes",
            service.max_file_size
        )));
    }
    // Refuse before reading a byte when the transaction is not open.
    service
        .coherence
        .blocking(move |ns, _| check_open(ns, tx, owner))
        .await?;
    let temp = service
        .coherence
        .blobs
        .receive(body, crate::blobs::BodyLen::Exactly(len), expected)
        .await?;
    if temp.size == 0 {
        return Ok(Staged {
            blob: None,
            size: 0,
        });
    }
    let size = temp.size;
    let pin = crate::cluster::replicate::place(&service.replication, temp).await?;
    let blob = pin.id;
    let expires_ms = now_ms() + service.state.lease_ms();
    service
        .coherence
        .blocking(move |ns, blobs| {
            let cmd = TxCommand::Stage {
                tx,
                owner,
                blob,
                size,
                expires_ms,
            };
            match ns.apply_tx(cmd) {
                Ok(_) => {
                    drop(pin);
                    Ok(())
                }
                Err(e) => {
                    blobs.discard_unreferenced(pin, |id| ns.refcount(id));
                    Err(e)
                }
            }
        })
        .await?;
    Ok(Staged {
        blob: Some(blob),
        size,
    })
}

/// `POST /v1/tx/{id}/renew`.
pub async fn renew(
    service: &Transactions,
    caller: Caller,
    tx: TxId,
) -> Result<RenewReply, FsError> {
    let owner = owner_of(caller)?;
    let lease_ms = service.state.lease_ms();
    let expires_ms = now_ms() + lease_ms;
    service
        .coherence
        .blocking(move |ns, _| {
            ns.apply_tx(TxCommand::Renew {
                tx,
                owner,
                expires_ms,
            })
        })
        .await?;
    Ok(RenewReply { lease_ms })
}

/// `POST /v1/tx/{id}/abort`: what the transaction came to.
pub async fn abort(service: &Transactions, caller: Caller, tx: TxId) -> Result<TxStatus, FsError> {
    let owner = owner_of(caller)?;
    end(service, tx, Some(owner), AbortReason::Client).await
}

async fn end(
    service: &Transactions,
    tx: TxId,
    by: Option<TxOwner>,
    reason: AbortReason,
) -> Result<TxStatus, FsError> {
    let applied = service
        .coherence
        .blocking(move |ns, _| {
            ns.apply_tx(TxCommand::Abort {
                tx,
                by,
                reason,
                now: Timestamp::now(),
            })
        })
        .await?;
    match applied {
        TxApplied::Ended(status) => {
            crate::metrics::TX_ABORTED.inc();
            Ok(status)
        }
        other => Err(FsError::Io(format!("abort came to {other:?}"))),
    }
}

/// `GET /v1/tx/{id}`.
pub async fn status(service: &Transactions, caller: Caller, tx: TxId) -> Result<TxStatus, FsError> {
    let owner = owner_of(caller)?;
    let mut status = service
        .coherence
        .blocking(move |ns, _| ns.tx_status(tx, owner, now_ms()))
        .await?;
    if let TxStatus::Committed(c) = &mut status {
        hide_hashes(service, &caller, c)?;
    }
    Ok(status)
}

/// The results of a committed batch as `caller` may see them: no content hash of a file
/// it may not read (`auth::perm::reach`).
fn hide_hashes(service: &Transactions, caller: &Caller, c: &mut Committed) -> Result<(), FsError> {
    let attrs = c.results.iter_mut().filter_map(|a| a.as_mut()).collect();
    perm::hide_hashes(&service.coherence.ns, caller, attrs)
}

/// `POST /v1/tx/{id}/commit`. Runs to the end even if the client goes away (the locks it
/// takes must be released).
pub async fn commit(
    service: &Transactions,
    caller: Caller,
    tx: TxId,
    req: CommitRequest,
) -> Result<CommitReply, FsError> {
    let owner = owner_of(caller)?;
    if req.ops.len() > MAX_OPS {
        return Err(FsError::TooLarge(format!(
            "{} operations in one transaction, at most {MAX_OPS}",
            req.ops.len()
        )));
    }
    let service2 = service.clone();
    let mut reply =
        tokio::spawn(async move { commit_inner(&service2, caller, owner, tx, req).await })
            .await
            .map_err(|e| FsError::Io(format!("internal task failed: {e}")))??;
    if let CommitReply::Committed(c) = &mut reply {
        hide_hashes(service, &caller, c)?;
    }
    Ok(reply)
}

async fn release_all(service: &Transactions, tx: TxId, held: &[Ino]) {
    for &ino in held {
        let req = ReleaseRequest {
            ino,
            class: LockClass::Open,
            owner: tx,
            range: None,
        };
        if let Err(e) = service.locks.release(lock_client(tx), req).await {
            log::warn!("transaction {tx}: cannot release the writers' lock of inode {ino}: {e}");
        }
    }
}

/// Records that the commit of `tx` failed with `f` and answers so.
async fn fail(
    service: &Transactions,
    tx: TxId,
    owner: TxOwner,
    f: TxFailure,
) -> Result<CommitReply, FsError> {
    end(service, tx, Some(owner), AbortReason::Failed(f.clone())).await?;
    Ok(CommitReply::Failed(f))
}

async fn commit_inner(
    service: &Transactions,
    caller: Caller,
    owner: TxOwner,
    tx: TxId,
    req: CommitRequest,
) -> Result<CommitReply, FsError> {
    let _busy = busy(service, tx);
    let client = owner.client;
    let label = service
        .coherence
        .blocking(move |ns, _| {
            check_open(ns, tx, owner)?;
            ns.tx_open(tx)?
                .map(|rec| rec.label)
                .ok_or(FsError::NotFound)
        })
        .await?;
    let ops: Arc<Vec<TxOp>> = Arc::new(req.ops);
    let targets = {
        let ops = ops.clone();
        service
            .coherence
            .blocking(move |ns, _| ns.tx_lock_targets(&ops))
            .await?
    };
    // No writers' lock on a file the caller may not write: its batch fails on it anyway,
    // and must not make that file's writers wait first.
    let mut writable = Vec::with_capacity(targets.len());
    for t in targets {
        if perm::may_write(&service.coherence.ns, &caller, t.0)? {
            writable.push(t);
        }
    }
    let mut targets = writable;
    // In a realm what the batch creates is the caller's, whatever the request says.
    let (uid, gid) = if caller.enforce {
        (caller.uid, caller.gid)
    } else {
        (req.uid, req.gid)
    };
    for round in 1..=LOCK_ROUNDS {
        targets.sort_unstable_by_key(|(ino, _)| *ino);
        targets.dedup_by_key(|(ino, _)| *ino);
        let mut held: Vec<Ino> = Vec::new();
        if !targets.is_empty() {
            let reqs = targets
                .iter()
                .map(|(ino, _)| LockRequest {
                    ino: *ino,
                    class: LockClass::Open,
                    mode: LockMode::Exclusive,
                    range: LockRange::WHOLE,
                    owner: tx,
                    pid: 0,
                    label: format!("transaction {tx} of {label}"),
                    wait_ms: req.lock_wait_ms,
                })
                .collect();
            let replies = service.locks.acquire_many(lock_client(tx), reqs).await?;
            if let Some(LockReply::Conflict { holder }) = replies
                .into_iter()
                .find(|r| matches!(r, LockReply::Conflict { .. }))
            {
                let op = targets
                    .iter()
                    .find(|(ino, _)| *ino == holder.ino)
                    .map(|(_, op)| *op)
                    .unwrap_or(0);
                let path = ops
                    .get(op as usize)
                    .map(|o| o.path().to_vec())
                    .unwrap_or_default();
                let f = TxFailure::Locked { op, path, holder };
                log::info!("transaction {tx} of client {client:#x} failed: {f}");
                return fail(service, tx, owner, f).await;
            }
            held = targets.iter().map(|(ino, _)| *ino).collect();
        }
        let batch = TxBatch {
            tx,
            client,
            ops: ops.as_ref().clone(),
            caller,
            uid,
            gid,
            locked: held.clone(),
            now: Timestamp::now(),
        };
        let applied = service
            .coherence
            .mutate_grouped(caller, move |ns| {
                Ok(match ns.apply_tx(TxCommand::Commit(batch))? {
                    TxApplied::Committed { committed, outcome } => {
                        (Ok(committed), outcome.changed_inos, outcome.changed_entries)
                    }
                    other => (Err(other), Vec::new(), Vec::new()),
                })
            })
            .await;
        release_all(service, tx, &held).await;
        match applied? {
            Ok(committed) => {
                crate::metrics::TX_COMMITTED.inc();
                log::info!(
                    "transaction {tx} of client {client:#x} committed: {} operations, {} inodes changed",
                    committed.results.len(),
                    committed.changed_inos.len()
                );
                return Ok(CommitReply::Committed(committed));
            }
            Err(TxApplied::Failed(f)) => {
                crate::metrics::TX_ABORTED.inc();
                log::info!("transaction {tx} of client {client:#x} failed: {f}");
                return Ok(CommitReply::Failed(f));
            }
            Err(TxApplied::NeedLocks(more)) if round < LOCK_ROUNDS => {
                // The batch checked the caller may write each of these.
                targets.extend(more);
            }
            Err(TxApplied::NeedLocks(more)) => {
                let op = more.first().map(|(_, op)| *op).unwrap_or(0);
                let f = TxFailure::Op {
                    op,
                    what: ops.get(op as usize).map(TxOp::describe).unwrap_or_default(),
                    error: FsError::Busy(
                        "the files this batch writes kept changing under it; try again".into(),
                    ),
                };
                return fail(service, tx, owner, f).await;
            }
            Err(other) => return Err(FsError::Io(format!("commit came to {other:?}"))),
        }
    }
    Err(FsError::Io("commit rounds exhausted".into()))
}
