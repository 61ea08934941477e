//! The services of one node wired together, and the one rule that keeps callbacks honest:
//! observing the namespace and registering the promise for what was observed happen
//! together under a shared gate, and breaking other clients' promises after a commit
//! happens under the exclusive gate. So a client can never keep a promise on a state that
//! a commit it did not hear about has already replaced.
//!
//! Owns: `Services`, `Caller`, `observe` and `mutate`. Must not hold HTTP types or POSIX
//! rules.

use crate::blobs::{BlobStore, Pin};
use crate::callbacks::{ClientId, Registry};
use crate::cluster::{Cluster, ClusterSettings};
use crate::errors::join_err;
use crate::lock::LockService;
use crate::namespace::{CommitSeq, Namespace, NsCommand, NsOutcome};
use bytes::Bytes;
use dfs_common::{FsError, Ino};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::RwLock;

/// Whether a commit changed anything another client may hold a promise on.
/// Fail point `commit::before_apply`: a store's blob is written and installed, its commit
/// not begun (tests only; see `dfs-server/tests/crash.rs`).
fn before_apply() -> Result<(), FsError> {
    fail::fail_point!("commit::before_apply", |_| Err(FsError::Io(
        "fail point commit::before_apply".into()
    )));
    Ok(())
}

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

/// Who is calling, as the authentication layer established it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The client (mount) id; 0 when anonymous.
    pub client: ClientId,
    /// Who acts, for permission checks (`crate::auth::perm`; constructors there).
    pub uid: u32,
    pub gid: u32,
    pub groups: [u32; 8],
    pub admin: bool,
    /// False in an open cell (no realm): nothing is checked.
    pub enforce: bool,
}

/// Settings of a node.
#[derive(Clone, Debug)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub gc_grace_secs: u64,
    pub max_file_size: u64,
}

pub struct Services {
    pub ns: Arc<Namespace>,
    /// The registered clients (mounts) and the check of who a request's client is.
    pub clients: crate::clients::Clients,
    pub blobs: Arc<BlobStore>,
    pub callbacks: Arc<Registry>,
    pub locks: Arc<LockService>,
    pub settings: Settings,
    /// The realm, if this node has one (set once at start; empty = open cell).
    pub security: std::sync::OnceLock<Arc<crate::auth::Security>>,
    /// The transaction service's in-memory state (leases, requests in flight).
    pub tx: crate::tx::TxState,
    /// This node's replica of the directory's Raft log (set once at start; never set when
    /// the directory is not replicated).
    pub replica: std::sync::OnceLock<Arc<crate::raft::Replica>>,
    /// The replication service (set once at start; a node on its own if never set).
    cluster: std::sync::OnceLock<Arc<Cluster>>,
    gate: Arc<RwLock<()>>,
}

impl Services {
    /// The services of a node; fails if the registered clients cannot be read.
    pub fn new(
        ns: Arc<Namespace>,
        blobs: Arc<BlobStore>,
        callbacks: Arc<Registry>,
        locks: Arc<LockService>,
        settings: Settings,
    ) -> Result<Arc<Services>, FsError> {
        let clients = crate::clients::Clients::load(&ns, callbacks.epoch())?;
        Ok(Arc::new(Services {
            clients,
            ns,
            blobs,
            callbacks,
            locks,
            settings,
            security: std::sync::OnceLock::new(),
            tx: crate::tx::TxState::default(),
            replica: std::sync::OnceLock::new(),
            cluster: std::sync::OnceLock::new(),
            gate: Arc::new(RwLock::new(())),
        }))
    }

    /// Puts this node in a cluster (once, at start, before serving).
    pub fn set_cluster(&self, cluster: Arc<Cluster>) {
        let _ = self.cluster.set(cluster);
    }

    /// The replication service; a node on its own unless `set_cluster` was called.
    pub fn cluster(&self) -> &Arc<Cluster> {
        self.cluster.get_or_init(|| {
            Cluster::new(ClusterSettings::standalone(SocketAddr::from((
                [0, 0, 0, 0],
                0,
            ))))
        })
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

    /// Runs a short read of the namespace (a lookup, a getattr) on the calling async
    /// thread: it takes microseconds from redb's cache, less than a hop to the blocking
    /// pool and back.
    pub fn read_now<T>(
        &self,
        f: impl FnOnce(&Namespace) -> Result<T, FsError>,
    ) -> Result<T, FsError> {
        f(&self.ns)
    }

    /// `observe` for a short read (see `read_now`), run on the calling async thread.
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
        let svc = self.clone();
        // All of it on one blocking thread, which runs to the end even if the request goes
        // away: a commit is never left without the breaks it owes other clients. (One hop
        // instead of a task plus a hop: the task's wake-ups were ~5% of the server's CPU in
        // a create loop.)
        let task = tokio::task::spawn_blocking(move || {
            let guard = svc.gate.blocking_read();
            let (ns, blobs) = (&svc.ns, &svc.blobs);
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
                    svc.promise_outcome(caller, promise, out);
                    drop(pin);
                }
                (Err(_), Some(pin)) => blobs.discard_unreferenced(pin, |id| ns.refcount(id)),
                (Err(_), None) => {}
            }
            drop(guard);
            let outcome = result?;
            if owes_breaks(&outcome.0) {
                let _exclusive = svc.gate.blocking_write();
                svc.break_outcome(caller, &outcome.0);
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
        let svc = self.clone();
        let outcome = tokio::spawn(async move {
            let _exclusive = svc.gate.write().await;
            svc.break_outcome(caller, &outcome);
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
        replica: Arc<crate::raft::Replica>,
        caller: Caller,
        cmd: NsCommand,
        promise: Vec<Ino>,
        how: Commit,
    ) -> Result<(NsOutcome, CommitSeq), FsError> {
        let svc = self.clone();
        let task = tokio::spawn(async move {
            let Commit { pin, journal, .. } = how;
            if let (Some(pin), Some(bytes)) = (&pin, journal) {
                let (blobs, id) = (svc.blobs.clone(), pin.id);
                tokio::task::spawn_blocking(move || blobs.restore(id, &bytes))
                    .await
                    .map_err(join_err)??;
            }
            let guard = svc.gate.read().await;
            let id = crate::raft::propose::request_id(caller.client);
            let result = match before_apply() {
                Ok(()) => crate::raft::propose::propose(&replica, id, cmd).await,
                Err(e) => Err(e),
            };
            match (&result, pin) {
                (Ok(out), pin) => {
                    svc.promise_outcome(caller, promise, out);
                    drop(pin);
                }
                (Err(_), Some(pin)) => {
                    let (ns, blobs) = (svc.ns.clone(), svc.blobs.clone());
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
                let _exclusive = svc.gate.write().await;
                svc.break_outcome(caller, &outcome);
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
        let svc = self.clone();
        let task = tokio::spawn(async move {
            let guard = svc.gate.clone().read_owned().await;
            let ns = svc.ns.clone();
            let (value, inos, entries) = tokio::task::spawn_blocking(move || {
                let _guard = guard;
                f(&ns)
            })
            .await
            .map_err(join_err)??;
            if !inos.is_empty() || !entries.is_empty() {
                let _exclusive = svc.gate.write().await;
                svc.callbacks.break_group(&inos, &entries, caller.client);
            }
            Ok(value)
        });
        task.await.map_err(join_err)?
    }
}
