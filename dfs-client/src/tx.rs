//! Transactions on the client: batch several file operations into one atomic unit (wire
//! contract: `dfs_common::tx`).
//!
//! ```no_run
//! # async fn demo(dfs: dfs_client::Dfs) -> Result<(), dfs_client::tx::TxError> {
//! let mut tx = dfs.begin_tx().await?;
//! tx.expect_version("/site/index.html", 3);
//! tx.put_bytes("/site/index.html", b"<h1>new</h1>".to_vec()).await?;
//! tx.put_file("/site/big.bin", std::path::Path::new("/tmp/big.bin"), None).await?;
//! tx.rename("/site/old", "/site/archive");
//! let committed = tx.commit().await?; // all of it, or (Err) none of it
//! # let _ = committed; Ok(()) }
//! ```
//!
//! Contents are staged (uploaded, fsynced, invisible) when `put_*` is called, so the
//! commit itself only sends the list of operations. A transaction lives while it is
//! renewed: a background task renews it until it is committed, aborted or dropped (a drop
//! aborts it); a client that dies simply stops renewing and the server aborts it and frees
//! what it staged. A commit whose answer is lost (server restart, network) asks the server
//! what became of it and re-sends it if it is still open, so `commit` reports what really
//! happened. After a commit through a `CacheManager` the manager forgets what it had cached
//! of everything the batch changed (the server sends no callback for one's own change).
//!
//! The text batch files of `dfs tx apply` are the command's (`dfs-fuse`'s `tx::batch`).
//!
//! Owns: the client side of the transaction resources. Must not hold cache policy (it
//! tells the manager what changed).

use crate::auth::CredentialStore;
use crate::cache::CacheManager;
use crate::port::Who;
use crate::remote::Remote;
use dfs_common::proto::{CallbackFrame, DirReply, DirRequest};
use dfs_common::tx::{
    AbortReason, BeginReply, BeginRequest, CommitReply, CommitRequest, Committed, RenewReply,
    Staged, TxFailure, TxId, TxOp, TxStatus, DEFAULT_DIR_MODE,
};
use dfs_common::{Attr, FsError, ROOT_INO};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Progress of one staged upload: (remote path, bytes sent, total bytes).
pub type ProgressFn = Arc<dyn Fn(&str, u64, u64) + Send + Sync>;

/// How long a commit keeps trying to learn its outcome when its answer is lost.
const OUTCOME_PATIENCE: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum TxError {
    /// The commit failed: a precondition, an operation or a lock wait. Nothing changed.
    #[error("{0}")]
    Failed(TxFailure),
    /// The transaction ended before it could commit (its lease ran out, or it was aborted).
    #[error("transaction {tx} {reason}")]
    Aborted { tx: TxId, reason: AbortReason },
    /// The server refused a request or could not be reached.
    #[error("{0}")]
    Fs(#[from] FsError),
    /// The commit was sent but its outcome could not be learnt: the batch is either wholly
    /// applied or wholly absent on the server.
    #[error("transaction {tx}: the commit was sent but its outcome is unknown ({why}); it is either wholly applied or not at all")]
    Unknown { tx: TxId, why: String },
}

/// A client of the transaction service of one server, with its own client id (no cache,
/// no mount), acting for the user who runs this process. `Dfs::begin_tx` is the way for a
/// program that also uses a cache.
pub struct TxClient {
    remote: Remote,
    who: Who,
}

impl TxClient {
    /// A client of the server at `addr` (`HOST:PORT`). Call inside a tokio runtime. It
    /// holds no credentials (anonymous in a realm) until some are filed in `credentials`
    /// under this process's uid (`dfs tx` files its user's `dfs login` tickets).
    pub fn new(addr: &str) -> Result<TxClient, FsError> {
        // A client of its own, registered with the server at its first request.
        let identity = crate::remote::identity::Identity::in_memory();
        Ok(TxClient {
            remote: Remote::for_client(addr, identity),
            who: Who::process(),
        })
    }

    pub fn client_id(&self) -> u64 {
        self.remote.client_id()
    }

    /// The credentials this client signs with.
    pub fn credentials(&self) -> &Arc<CredentialStore> {
        self.remote.credentials()
    }

    pub async fn begin(&self) -> Result<Transaction, TxError> {
        Transaction::begin(self.remote.clone(), self.who, None).await
    }

    /// What transaction `tx` of this client is or came to.
    pub async fn status(&self, tx: TxId) -> Result<TxStatus, FsError> {
        self.remote.get(&format!("/v1/tx/{tx}")).await
    }

    /// The attributes of `path` (from the root), `None` if it does not exist.
    pub async fn stat(&self, path: &str) -> Result<Option<Attr>, FsError> {
        let mut attr = match self
            .remote
            .dir(&self.who, &DirRequest::GetAttr { ino: ROOT_INO })
            .await?
        {
            DirReply::Attr(a) => a,
            _ => return Err(FsError::Io("unexpected answer to getattr".into())),
        };
        for name in path.split('/').filter(|c| !c.is_empty() && *c != ".") {
            let req = DirRequest::Lookup {
                parent: attr.ino,
                name: name.as_bytes().to_vec(),
            };
            attr = match self.remote.dir(&self.who, &req).await {
                Ok(DirReply::Attr(a)) => a,
                Ok(_) => return Err(FsError::Io("unexpected answer to lookup".into())),
                Err(FsError::NotFound) | Err(FsError::NotDir) => return Ok(None),
                Err(e) => return Err(e),
            };
        }
        Ok(Some(attr))
    }
}

impl CacheManager {
    /// Our own commit changed these: forget them like a callback break would.
    fn forget_committed(&self, c: &Committed) {
        let mut frames: Vec<CallbackFrame> = c
            .changed_inos
            .iter()
            .map(|&ino| CallbackFrame::Break { ino })
            .collect();
        frames.extend(
            c.changed_entries
                .iter()
                .map(|(dir, name)| CallbackFrame::EntryBreak {
                    dir: *dir,
                    name: name.clone(),
                }),
        );
        self.break_group(frames);
    }
}

/// An open transaction: stage operations, then `commit` or `abort`. Dropping it without
/// either aborts it.
pub struct Transaction {
    remote: Remote,
    mgr: Option<Arc<CacheManager>>,
    id: TxId,
    ops: Vec<TxOp>,
    finished: bool,
    renewer: tokio::task::JoinHandle<()>,
    /// The local user the transaction was begun for (its requests sign as them).
    who: Who,
    progress: Option<ProgressFn>,
    uid: u32,
    gid: u32,
    lock_wait: Duration,
}

fn path_bytes(p: impl AsRef<[u8]>) -> Vec<u8> {
    p.as_ref().to_vec()
}

impl Transaction {
    pub(crate) async fn begin(
        remote: Remote,
        who: Who,
        mgr: Option<Arc<CacheManager>>,
    ) -> Result<Transaction, TxError> {
        // SAFETY: getuid/getgid cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let req = BeginRequest {
            label: crate::cache::locks::label_for(uid),
        };
        let reply: BeginReply = remote
            .call(&who, "/v1/tx/begin", &req, Duration::ZERO)
            .await?;
        let id = reply.tx;
        // A transaction is its principal's: renewals and the abort at drop, which run on
        // tasks of their own, sign as the user who began it.
        let renewer = {
            let remote = remote.clone();
            let every = Duration::from_millis((reply.lease_ms / 3).max(100));
            tokio::spawn(async move {
                let path = format!("/v1/tx/{id}/renew");
                loop {
                    tokio::time::sleep(every).await;
                    match remote
                        .call::<_, RenewReply>(&who, &path, &(), Duration::ZERO)
                        .await
                    {
                        Ok(_) => {}
                        Err(FsError::NotFound) | Err(FsError::Stale(_)) => return,
                        Err(e) => log::debug!("transaction {id}: renewal failed: {e}"),
                    }
                }
            })
        };
        Ok(Transaction {
            remote,
            mgr,
            who,
            id,
            ops: Vec::new(),
            finished: false,
            renewer,
            progress: None,
            uid,
            gid,
            lock_wait: Duration::from_secs(30),
        })
    }

    pub fn id(&self) -> TxId {
        self.id
    }

    /// The operations staged so far, in order.
    pub fn ops(&self) -> &[TxOp] {
        &self.ops
    }

    /// Adds an operation as it is (the batch files of `dfs tx apply` build their own).
    pub fn push(&mut self, op: TxOp) {
        self.ops.push(op);
    }

    /// Called as staged uploads progress.
    pub fn set_progress(&mut self, f: ProgressFn) {
        self.progress = Some(f);
    }

    /// Owner of what the batch creates (default: this process's uid and gid).
    pub fn set_owner(&mut self, uid: u32, gid: u32) {
        self.uid = uid;
        self.gid = gid;
    }

    /// How long the commit waits for writers of files it replaces (default 30 s).
    pub fn set_lock_wait(&mut self, wait: Duration) {
        self.lock_wait = wait;
    }

    fn staged(&mut self, path: Vec<u8>, staged: Staged, mode: Option<u32>) -> Staged {
        self.ops.push(TxOp::Put {
            path,
            blob: staged.blob,
            mode,
        });
        staged
    }

    /// Stages `bytes` as the whole new contents of `path` (created with mode 644 if missing).
    pub async fn put_bytes(
        &mut self,
        path: impl AsRef<[u8]>,
        bytes: Vec<u8>,
    ) -> Result<Staged, TxError> {
        let staged = if bytes.is_empty() {
            Staged {
                blob: None,
                size: 0,
            }
        } else {
            self.remote
                .put_bytes(&self.who, &format!("/v1/tx/{}/blobs", self.id), bytes)
                .await?
        };
        Ok(self.staged(path_bytes(path), staged, None))
    }

    /// Stages the contents of local file `local` as the whole new contents of `path`
    /// (created with `mode`, default 644, if missing). Streamed: never all in memory.
    pub async fn put_file(
        &mut self,
        path: impl AsRef<[u8]>,
        local: &Path,
        mode: Option<u32>,
    ) -> Result<Staged, TxError> {
        let path = path_bytes(path);
        let total = std::fs::metadata(local).map_err(FsError::from)?.len();
        let progress = self.progress.clone().map(|p| {
            let shown = dfs_common::tx::show_path(&path);
            Arc::new(move |sent: u64| p(&shown, sent, total)) as Arc<dyn Fn(u64) + Send + Sync>
        });
        let staged = if total == 0 {
            Staged {
                blob: None,
                size: 0,
            }
        } else {
            self.remote
                .put_file(
                    &self.who,
                    &format!("/v1/tx/{}/blobs", self.id),
                    local,
                    progress,
                )
                .await?
        };
        Ok(self.staged(path, staged, mode))
    }

    /// A new empty file (the commit fails if `path` exists).
    pub fn create(&mut self, path: impl AsRef<[u8]>, mode: u32) {
        self.ops.push(TxOp::Create {
            path: path_bytes(path),
            mode,
        });
    }

    /// A new directory (mode 755 if `None`; the commit fails if `path` exists).
    pub fn mkdir(&mut self, path: impl AsRef<[u8]>, mode: Option<u32>) {
        self.ops.push(TxOp::Mkdir {
            path: path_bytes(path),
            mode: mode.unwrap_or(DEFAULT_DIR_MODE),
        });
    }

    /// Removes a file or an empty directory.
    pub fn remove(&mut self, path: impl AsRef<[u8]>) {
        self.ops.push(TxOp::Remove {
            path: path_bytes(path),
        });
    }

    pub fn rename(&mut self, from: impl AsRef<[u8]>, to: impl AsRef<[u8]>) {
        self.ops.push(TxOp::Rename {
            from: path_bytes(from),
            to: path_bytes(to),
        });
    }

    pub fn set_mode(&mut self, path: impl AsRef<[u8]>, mode: u32) {
        self.ops.push(TxOp::SetMode {
            path: path_bytes(path),
            mode,
        });
    }

    /// Precondition: `path` is at `version` when the commit starts.
    pub fn expect_version(&mut self, path: impl AsRef<[u8]>, version: u64) {
        self.ops.push(TxOp::ExpectVersion {
            path: path_bytes(path),
            version,
        });
    }

    /// Precondition: `path` does not exist when the commit starts.
    pub fn expect_absent(&mut self, path: impl AsRef<[u8]>) {
        self.ops.push(TxOp::ExpectAbsent {
            path: path_bytes(path),
        });
    }

    /// What the server says became of this transaction, asking until it answers (or
    /// `deadline`).
    async fn outcome(&self, deadline: Instant) -> Result<TxStatus, FsError> {
        let path = format!("/v1/tx/{}", self.id);
        loop {
            match self.remote.get::<TxStatus>(&path).await {
                Ok(s) => return Ok(s),
                Err(FsError::Unavailable(why)) if Instant::now() < deadline => {
                    log::debug!("transaction {}: waiting for the server: {why}", self.id);
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn done(&self, c: Committed) -> Committed {
        if let Some(mgr) = &self.mgr {
            mgr.forget_committed(&c);
        }
        c
    }

    /// Commits every staged operation as one atomic unit: all of them (`Ok`) or none.
    pub async fn commit(mut self) -> Result<Committed, TxError> {
        self.finished = true;
        let req = CommitRequest {
            ops: std::mem::take(&mut self.ops),
            uid: self.uid,
            gid: self.gid,
            lock_wait_ms: self.lock_wait.as_millis().min(u32::MAX as u128) as u32,
        };
        let path = format!("/v1/tx/{}/commit", self.id);
        let deadline = Instant::now() + OUTCOME_PATIENCE;
        loop {
            let err = match self
                .remote
                .call::<_, CommitReply>(&self.who, &path, &req, self.lock_wait)
                .await
            {
                Ok(CommitReply::Committed(c)) => return Ok(self.done(c)),
                Ok(CommitReply::Failed(f)) => return Err(TxError::Failed(f)),
                Err(e @ (FsError::Unavailable(_) | FsError::Stale(_))) => e,
                Err(e) => return Err(TxError::Fs(e)),
            };
            // The answer is lost or the transaction is no longer open: learn what it came to.
            let status = self.outcome(deadline).await.map_err(|e| TxError::Unknown {
                tx: self.id,
                why: format!("{err}; then: {e}"),
            })?;
            match status {
                TxStatus::Committed(c) => return Ok(self.done(c)),
                TxStatus::Aborted(AbortReason::Failed(f)) => return Err(TxError::Failed(f)),
                TxStatus::Aborted(reason) => {
                    return Err(TxError::Aborted {
                        tx: self.id,
                        reason,
                    })
                }
                TxStatus::Open { .. } if Instant::now() < deadline => {
                    log::info!(
                        "transaction {}: the commit did not happen ({err}); sending it again",
                        self.id
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                TxStatus::Open { .. } => {
                    return Err(TxError::Unknown {
                        tx: self.id,
                        why: err.to_string(),
                    })
                }
            }
        }
    }

    /// Gives up the transaction: nothing it staged becomes visible, and the server frees it.
    pub async fn abort(mut self) -> Result<(), TxError> {
        self.finished = true;
        let status: TxStatus = self
            .remote
            .call(
                &self.who,
                &format!("/v1/tx/{}/abort", self.id),
                &(),
                Duration::ZERO,
            )
            .await?;
        match status {
            TxStatus::Committed(_) => Err(TxError::Fs(FsError::Stale(format!(
                "transaction {} was already committed",
                self.id
            )))),
            _ => Ok(()),
        }
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        self.renewer.abort();
        if self.finished {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let (remote, id, who) = (self.remote.clone(), self.id, self.who);
            rt.spawn(async move {
                let path = format!("/v1/tx/{id}/abort");
                let _ = remote
                    .call::<_, TxStatus>(&who, &path, &(), Duration::ZERO)
                    .await;
            });
        }
    }
}
