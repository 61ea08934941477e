//! The one rule that keeps callbacks honest: observing the namespace and registering the
//! promise for what was observed happen together under a shared gate, and breaking other
//! clients' promises after a commit happens under the exclusive gate. So a client can
//! never keep a promise on a state that a commit it did not hear about has already
//! replaced.
//!
//! Owns: `Coherence` (the namespace, the blob store and the callback registry behind that
//! gate), `observe` and `mutate`. Must not hold HTTP types or POSIX rules.

use crate::auth::Caller;
use crate::blobs::{BlobStore, Pin};
use crate::callbacks::Registry;
use crate::errors::join_err;
use crate::namespace::{CommitSeq, Namespace, NsCommand, NsOutcome};
use crate::raft::Replica;
use bytes::Bytes;
use dfs_common::{FsError, Ino};
use std::sync::{Arc, OnceLock};
use tokio::sync::RwLock;

/// Fail point `commit::before_apply`: a store's blob is written and installed, its commit
/// not begun (tests only; see `dfs-server/tests/crash.rs`).
fn before_apply() -> Result<(), FsError> {
    fail::fail_point!("commit::before_apply", |_| Err(FsError::Io(
        "fail point commit::before_apply".into()
    )));
    Ok(())
}

/// Whether a commit changed anything another client may hold a promise on.
fn owes_breaks(outcome: &NsOutcome) -> bool {
    !outcome.changed_inos.is_empty() || !outcome.changed_entries.is_empty()
}

/// How `mutate_with` commits.
struct Commit {
    /// A freshly installed blob, held until the commit is done.
    pin: Option<Pin>,
    /// The bytes of `pin`'s blob, whose file was written without an fsync.
    journal: Option<Bytes>,
    /// Wait until the commit is durable.
    sync: bool,
}

/// The namespace, the blob store and the callback registry behind the promise/break gate.
pub struct Coherence {
    pub ns: Arc<Namespace>,
    pub blobs: Arc<BlobStore>,
    pub callbacks: Arc<Registry>,
    /// This node's replica of the directory's Raft log, through which every commit goes
    /// (set once at start; never set when the directory is not replicated).
    replica: OnceLock<Arc<Replica>>,
    gate: Arc<RwLock<()>>,
}

impl Coherence {
    pub fn new(ns: Arc<Namespace>, blobs: Arc<BlobStore>, callbacks: Arc<Registry>) -> Coherence {
        Coherence {
            ns,
            blobs,
            callbacks,
            replica: OnceLock::new(),
            gate: Arc::new(RwLock::new(())),
        }
    }

    /// Makes commits go through `replica`'s log (once, at start, before serving; `ns`
    /// must be the replica's namespace).
    pub fn set_replica(&self, replica: Arc<Replica>) {
        let _ = self.replica.set(replica);
    }

    /// This node's replica of the directory, if the directory is replicated.
    pub fn replica(&self) -> Option<&Arc<Replica>> {
        self.replica.get()
    }

    /// Runs blocking work off the async threads.
    pub async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Namespace, &Arc<BlobStore>) -> Result<T, FsError> + Send + 'static,
    ) -> Result<T, FsError> {
        let (ns, blobs) = (self.ns.clone(), self.blobs.clone());
        tokio::task::spawn_blocking(move || f(&ns, &blobs))
            .await
            .map_err(join_err)?
    }

    /// `observe` for a short read of the namespace (a lookup, a getattr), run on the
    /// calling async thread: it takes microseconds from redb's cache, less than a hop to
    /// the blocking pool and back. (Short reads that promise nothing call the namespace
    /// directly.)
    pub async fn observe_now<T>(
        &self,
        caller: Caller,
        f: impl FnOnce(&Namespace) -> Result<(T, Vec<Ino>), FsError>,
    ) -> Result<T, FsError> {
        let _guard = self.gate.read().await;
        let (value, inos) = f(&self.ns)?;
        self.callbacks.promise(caller.client, &inos);
        Ok(value)
    }

    /// Runs a read of the namespace and gives `caller` a promise on the inos it returns.
    pub async fn observe<T: Send + 'static>(
        &self,
        caller: Caller,
        f: impl FnOnce(&Namespace, &Arc<BlobStore>) -> Result<(T, Vec<Ino>), FsError> + Send + 'static,
    ) -> Result<T, FsError> {
        let guard = self.gate.clone().read_owned().await;
        let (ns, blobs, cb) = (self.ns.clone(), self.blobs.clone(), self.callbacks.clone());
        tokio::task::spawn_blocking(move || {
            let _guard = guard;
            let (value, inos) = f(&ns, &blobs)?;
            cb.promise(caller.client, &inos);
            Ok(value)
        })
        .await
        .map_err(join_err)?
    }

    /// Applies one namespace command, gives `caller` a promise on `promise` (plus the inode
    /// of the outcome's attributes), then breaks every other client's promise on what
    /// changed. Returns once the change is durable. Runs to the end even if the request
    /// goes away. `pin` (a freshly installed blob) is held until the commit is done; if the
    /// commit fails and nothing references the blob, it is deleted.
    pub async fn mutate(
        self: &Arc<Self>,
        caller: Caller,
        cmd: NsCommand,
        promise: Vec<Ino>,
        pin: Option<Pin>,
    ) -> Result<NsOutcome, FsError> {
        let how = Commit {
            pin,
            journal: None,
            sync: true,
        };
        Ok(self.mutate_with(caller, cmd, promise, how).await?.0)
    }

    /// `mutate` for a store whose blob file was written without an fsync: its bytes go
    /// in the same commit (the namespace's blob journal), so that one fsync makes both the
    /// contents and the new version durable.
    pub async fn mutate_journalled(
        self: &Arc<Self>,
        caller: Caller,
        cmd: NsCommand,
        pin: Pin,
        journal: Bytes,
    ) -> Result<NsOutcome, FsError> {
        let how = Commit {
            pin: Some(pin),
            journal: Some(journal),
            sync: true,
        };
        Ok(self.mutate_with(caller, cmd, Vec::new(), how).await?.0)
    }

    /// `mutate` that returns before the change is durable (visible at once; durable after
    /// `sync_through`, or with the next durable commit of anything else).
    pub async fn mutate_unsynced(
        self: &Arc<Self>,
        caller: Caller,
        cmd: NsCommand,
        promise: Vec<Ino>,
    ) -> Result<(NsOutcome, CommitSeq), FsError> {
        let how = Commit {
            pin: None,
            journal: None,
            sync: false,
        };
        self.mutate_with(caller, cmd, promise, how).await
    }

    /// Returns once namespace commit `seq` is durable.
    pub async fn sync_through(&self, seq: CommitSeq) -> Result<(), FsError> {
        self.blocking(move |ns, _| ns.sync_through(seq)).await
    }

    async fn mutate_with(
        self: &Arc<Self>,
        caller: Caller,
        cmd: NsCommand,
        promise: Vec<Ino>,
        how: Commit,
    ) -> Result<(NsOutcome, CommitSeq), FsError> {
        if let Some(replica) = self.replica.get().cloned() {
            return self
                .mutate_replicated(replica, caller, cmd, promise, how)
                .await;
        }
        if !how.sync && how.pin.is_none() && !self.ns.durable_commit_in_flight() {
            return self.mutate_in_place(caller, cmd, promise).await;
        }
        let this = self.clone();
        // All of it on one blocking thread, which runs to the end even if the request goes
        // away: a commit is never left without the breaks it owes other clients. (One hop
        // instead of a task plus a hop: the task's wake-ups were ~5% of the server's CPU in
        // a create loop.)
        let task = tokio::task::spawn_blocking(move || {
            let guard = this.gate.blocking_read();
            let (ns, blobs) = (&this.ns, &this.blobs);
            let Commit { pin, journal, sync } = how;
            let journal = journal
                .as_ref()
                .zip(pin.as_ref())
                .map(|(b, p)| (&p.id, &b[..]));
            let result = before_apply()
                .and_then(|()| ns.apply_unsynced(cmd, journal))
                .and_then(|(out, seq)| {
                    if sync {
                        ns.sync_through(seq)?;
                    }
                    Ok((out, seq))
                });
            // Fail point: the commit is durable, no other client has been told.
            fail::fail_point!("commit::before_breaks");
            match (&result, pin) {
                (Ok((out, _)), pin) => {
                    this.promise_outcome(caller, promise, out);
                    drop(pin);
                }
                (Err(_), Some(pin)) => blobs.discard_unreferenced(pin, |id| ns.refcount(id)),
                (Err(_), None) => {}
            }
            drop(guard);
            let outcome = result?;
            if owes_breaks(&outcome.0) {
                let _exclusive = this.gate.blocking_write();
                this.break_outcome(caller, &outcome.0);
            }
            Ok(outcome)
        });
        task.await.map_err(join_err)?
    }

    /// `mutate_with` of a commit that does not wait for the disk, on the calling async
    /// thread. Such a commit touches only memory unless a durable one is under way (the
    /// caller checks). The hop to the blocking pool and back is two thread wake-ups: the
    /// server switched 20 times per file in a create loop with it, 16 without. Nothing
    /// is awaited between the commit and the breaks it owes other clients, or those run
    /// on a task of their own, which runs to the end even if the request goes away.
    async fn mutate_in_place(
        self: &Arc<Self>,
        caller: Caller,
        cmd: NsCommand,
        promise: Vec<Ino>,
    ) -> Result<(NsOutcome, CommitSeq), FsError> {
        let shared = self.gate.read().await;
        let (outcome, seq) = self.ns.apply_unsynced(cmd, None)?;
        self.promise_outcome(caller, promise, &outcome);
        drop(shared);
        if !owes_breaks(&outcome) {
            return Ok((outcome, seq));
        }
        if let Ok(_exclusive) = self.gate.try_write() {
            self.break_outcome(caller, &outcome);
            return Ok((outcome, seq));
        }
        let this = self.clone();
        let outcome = tokio::spawn(async move {
            let _exclusive = this.gate.write().await;
            this.break_outcome(caller, &outcome);
            outcome
        })
        .await
        .map_err(join_err)?;
        Ok((outcome, seq))
    }

    /// `mutate_with` on a replicated directory: the command goes through the Raft log
    /// (durable on a quorum before it is applied), under the shared gate as a local commit
    /// is; then the breaks. A journalled blob gets its fsynced file first (the journal is
    /// this node's, not the log's). Runs to the end even if the request goes away.
    async fn mutate_replicated(
        self: &Arc<Self>,
        replica: Arc<Replica>,
        caller: Caller,
        cmd: NsCommand,
        promise: Vec<Ino>,
        how: Commit,
    ) -> Result<(NsOutcome, CommitSeq), FsError> {
        let this = self.clone();
        let task = tokio::spawn(async move {
            let Commit { pin, journal, .. } = how;
            if let (Some(pin), Some(bytes)) = (&pin, journal) {
                let (blobs, id) = (this.blobs.clone(), pin.id);
                tokio::task::spawn_blocking(move || blobs.restore(id, &bytes))
                    .await
                    .map_err(join_err)??;
            }
            let guard = this.gate.read().await;
            let id = crate::raft::propose::request_id(caller.client, caller.request);
            let result = match before_apply() {
                Ok(()) => crate::raft::propose::propose(&replica, id, cmd).await,
                Err(e) => Err(e),
            };
            match (&result, pin) {
                (Ok(out), pin) => {
                    this.promise_outcome(caller, promise, out);
                    drop(pin);
                }
                (Err(_), Some(pin)) => {
                    let (ns, blobs) = (this.ns.clone(), this.blobs.clone());
                    tokio::task::spawn_blocking(move || {
                        blobs.discard_unreferenced(pin, |id| ns.refcount(id))
                    })
                    .await
                    .map_err(join_err)?;
                }
                (Err(_), None) => {}
            }
            drop(guard);
            let outcome = result?;
            if owes_breaks(&outcome) {
                let _exclusive = this.gate.write().await;
                this.break_outcome(caller, &outcome);
            }
            Ok((outcome, CommitSeq::DURABLE))
        });
        task.await.map_err(join_err)?
    }

    /// Gives `caller` a promise on `promise` plus the inode of the outcome's attributes.
    fn promise_outcome(&self, caller: Caller, mut promise: Vec<Ino>, outcome: &NsOutcome) {
        if let Some(a) = &outcome.attr {
            promise.push(a.ino);
        }
        self.callbacks.promise(caller.client, &promise);
    }

    /// Breaks every other client's promise on what `outcome` changed (under the exclusive
    /// gate, which the caller holds).
    fn break_outcome(&self, caller: Caller, outcome: &NsOutcome) {
        self.callbacks.break_changes(
            &outcome.changed_inos,
            &outcome.changed_entries,
            caller.client,
        );
    }

    /// Runs `f`, a change of the namespace that is not one `NsCommand` (a transaction's
    /// batch), under the shared gate, then breaks every other client's promise on the
    /// inodes and entries it reports changed, each client's breaks grouped into one frame
    /// so that it applies them together. Runs to the end even if the request goes away.
    #[allow(clippy::type_complexity)]
    pub async fn mutate_grouped<T: Send + 'static>(
        self: &Arc<Self>,
        caller: Caller,
        f: impl FnOnce(&Namespace) -> Result<(T, Vec<Ino>, Vec<(Ino, Vec<u8>)>), FsError>
            + Send
            + 'static,
    ) -> Result<T, FsError> {
        let this = self.clone();
        let task = tokio::spawn(async move {
            let guard = this.gate.clone().read_owned().await;
            let ns = this.ns.clone();
            let (value, inos, entries) = tokio::task::spawn_blocking(move || {
                let _guard = guard;
                f(&ns)
            })
            .await
            .map_err(join_err)??;
            if !inos.is_empty() || !entries.is_empty() {
                let _exclusive = this.gate.write().await;
                this.callbacks.break_group(&inos, &entries, caller.client);
            }
            Ok(value)
        });
        task.await.map_err(join_err)?
    }
}
