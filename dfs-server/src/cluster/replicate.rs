//! Moving blob copies between nodes: placing a new blob on W nodes before its store is
//! acknowledged (the rest are filled in the background), pulling a copy from another
//! node (read repair, repair orders, scrub), and the pull queue that runs those.
//!
//! Owns: the write quorum rule and the pull worker. Must not: decide which copies a node
//! should have (that is `repair`'s job) or touch the namespace.

use super::peer::IDLE_TIMEOUT;
use super::placement;
use super::{Replication, View};
use crate::blobs::{Pin, TempBlob};
use dfs_common::{BlobId, FsError};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, Semaphore};

/// Pulls run at most this many at a time on one node.
const PULL_CONCURRENCY: usize = 4;

/// Places the received blob `temp` on its nodes: installed here if this node is one of
/// them, pushed to the others. Returns once W copies are durable (the other pushes go on
/// in the background), with a pin that keeps every node's garbage collection away until
/// the caller's commit is done. Fewer than W copies is an error: the store must fail.
pub async fn place(replication: &Replication, temp: TempBlob) -> Result<Pin, FsError> {
    let cluster = replication.cluster.clone();
    if !cluster.is_clustered() {
        if temp.journal_bytes().is_some() {
            // Kept in memory until the checkpoint: installing it does no I/O.
            return replication.blobs.install(temp);
        }
        let blobs = replication.blobs.clone();
        return tokio::task::spawn_blocking(move || blobs.install(temp))
            .await
            .map_err(|e| FsError::Io(format!("install task failed: {e}")))?;
    }
    let (id, size) = (temp.id, temp.size);
    let View {
        candidates,
        r,
        w,
        live,
    } = cluster.view();
    let live: HashSet<SocketAddr> = live.into_iter().collect();
    // The blob's R nodes, in ranking order; one that is down is replaced by the next
    // live node in the ranking (repair moves such a copy home later). The live nodes
    // after those are spares, for when pushes fail.
    let in_order: Vec<SocketAddr> = placement::ranked(&candidates, &id)
        .into_iter()
        .map(|c| c.addr)
        .filter(|a| live.contains(a))
        .collect();
    let (targets, spares) = in_order.split_at(r.min(in_order.len()));
    let (targets, spares) = (targets.to_vec(), spares.to_vec());
    let me = cluster.settings.advertise;
    let pin = replication.blobs.pin(id);
    let mut acks = 0;
    // Where the pushes read from: the installed copy, or the temp file kept alive by
    // the push tasks.
    let source: Arc<SourceFile> = if targets.contains(&me) {
        let blobs = replication.blobs.clone();
        let installed = tokio::task::spawn_blocking(move || blobs.install(temp))
            .await
            .map_err(|e| FsError::Io(format!("install task failed: {e}")))??;
        drop(installed); // `pin` above holds the same id
        acks += 1;
        Arc::new(SourceFile::Installed(replication.blobs.path(&id)))
    } else {
        Arc::new(SourceFile::Temp(temp))
    };
    let (done_tx, mut done_rx) = mpsc::channel(targets.len().max(1));
    for addr in targets.iter().copied().filter(|a| *a != me) {
        let (cluster, source, done_tx) = (cluster.clone(), source.clone(), done_tx.clone());
        tokio::spawn(async move {
            let result = match std::fs::File::open(source.path()) {
                Ok(f) => cluster.peers.push_blob(addr, id, f, size).await,
                Err(e) => Err(FsError::from(e)),
            };
            if let Err(e) = &result {
                log::warn!("copy of blob {id} to {addr} failed: {e}");
            }
            let _ = done_tx.send(result.is_ok()).await;
        });
    }
    drop(done_tx);
    while acks < w {
        match done_rx.recv().await {
            Some(true) => acks += 1,
            Some(false) => {}
            None => break,
        }
    }
    // Some pushes failed: the spares, one at a time, until W copies exist.
    for addr in spares.iter().copied().filter(|a| *a != me) {
        if acks >= w {
            break;
        }
        let pushed = match std::fs::File::open(source.path()) {
            Ok(f) => cluster.peers.push_blob(addr, id, f, size).await,
            Err(e) => Err(FsError::from(e)),
        };
        match pushed {
            Ok(()) => acks += 1,
            Err(e) => log::warn!("copy of blob {id} to spare {addr} failed: {e}"),
        }
    }
    if acks < w {
        let blobs = replication.blobs.clone();
        let ns = replication.ns.clone();
        tokio::task::spawn_blocking(move || blobs.discard_unreferenced(pin, |b| ns.refcount(b)))
            .await
            .map_err(|e| FsError::Io(format!("discard task failed: {e}")))?;
        return Err(FsError::Unavailable(format!(
            "only {acks} of the {w} copies needed could be stored ({} data nodes up)",
            in_order.len()
        )));
    }
    Ok(pin)
}

enum SourceFile {
    Installed(std::path::PathBuf),
    Temp(TempBlob),
}

impl SourceFile {
    fn path(&self) -> &std::path::Path {
        match self {
            SourceFile::Installed(p) => p,
            SourceFile::Temp(t) => t.path(),
        }
    }
}

/// Makes sure this node has a good copy of `id`, pulling it from another node if not.
pub async fn ensure_local(replication: &Replication, id: BlobId) -> Result<(), FsError> {
    // A small blob stored less than a checkpoint ago has no file yet, only its bytes in
    // memory: it is here all the same (a resize right after a store read it as missing).
    if replication.blobs.holds(&id) {
        return Ok(());
    }
    let sources = replication.cluster.sources_for(&id);
    if sources.is_empty() {
        return Err(FsError::Corrupt(format!(
            "blob {id} is missing here and no other node is up to copy it from"
        )));
    }
    pull(replication, id, &sources).await
}

/// Copies `id` from the first of `sources` that has a good copy; installs it here.
pub async fn pull(
    replication: &Replication,
    id: BlobId,
    sources: &[SocketAddr],
) -> Result<(), FsError> {
    let cluster = &replication.cluster;
    let mut last = FsError::NotFound;
    for addr in sources {
        match pull_from(replication, &cluster.peers, *addr, id).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                log::info!("pull of blob {id} from {addr}: {e}");
                last = e;
            }
        }
    }
    Err(last)
}

async fn pull_from(
    replication: &Replication,
    peers: &super::peer::PeerClient,
    addr: SocketAddr,
    id: BlobId,
) -> Result<(), FsError> {
    let (len, body) = peers.fetch_blob(addr, &id).await?;
    let body = IdleBody::new(body);
    let temp = replication
        .blobs
        .receive(body, crate::blobs::BodyLen::Exactly(len), Some(id))
        .await?;
    let blobs = replication.blobs.clone();
    tokio::task::spawn_blocking(move || blobs.install(temp).map(drop))
        .await
        .map_err(|e| FsError::Io(format!("install task failed: {e}")))?
}

/// A body that fails after `IDLE_TIMEOUT` without a frame (a peer that stops sending).
pub struct IdleBody {
    inner: crate::net::body::ReqBody,
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl IdleBody {
    pub fn new(inner: crate::net::body::ReqBody) -> IdleBody {
        IdleBody {
            inner,
            sleep: Box::pin(tokio::time::sleep(IDLE_TIMEOUT)),
        }
    }
}

impl hyper::body::Body for IdleBody {
    type Data = bytes::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, std::io::Error>>> {
        use std::future::Future;
        if let std::task::Poll::Ready(item) = std::pin::Pin::new(&mut self.inner).poll_frame(cx) {
            let deadline = tokio::time::Instant::now() + IDLE_TIMEOUT;
            self.sleep.as_mut().reset(deadline);
            return std::task::Poll::Ready(item);
        }
        match self.sleep.as_mut().poll(cx) {
            std::task::Poll::Ready(()) => std::task::Poll::Ready(Some(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "peer stopped sending",
            )))),
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }
}

/// The blobs this node has been asked to pull and not yet pulled (no duplicates).
#[derive(Default)]
pub struct PullQueue {
    queued: Mutex<HashSet<BlobId>>,
    tx: std::sync::OnceLock<mpsc::UnboundedSender<(BlobId, Vec<SocketAddr>)>>,
}

impl PullQueue {
    /// Queues a pull unless one for the same blob is waiting or running. Returns whether
    /// it was queued.
    pub fn push(&self, id: BlobId, sources: Vec<SocketAddr>) -> bool {
        let Some(tx) = self.tx.get() else {
            return false;
        };
        if !self
            .queued
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id)
        {
            return false;
        }
        tx.send((id, sources)).is_ok()
    }

    pub fn len(&self) -> usize {
        self.queued.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn finished(&self, id: &BlobId) {
        self.queued
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }
}

/// Starts the pull worker of this node (until `stop` turns true).
pub fn spawn_puller(replication: Replication, mut stop: tokio::sync::watch::Receiver<bool>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(BlobId, Vec<SocketAddr>)>();
    if replication.cluster.pulls.tx.set(tx).is_err() {
        return;
    }
    let slots = Arc::new(Semaphore::new(PULL_CONCURRENCY));
    tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                next = rx.recv() => next,
                _ = async { let _ = stop.wait_for(|s| *s).await; } => None,
            };
            let Some((id, sources)) = next else {
                return;
            };
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            let replication = replication.clone();
            tokio::spawn(async move {
                let cluster = replication.cluster.clone();
                let have = replication.blobs.index().get(&id).is_some();
                let result = if have {
                    Ok(())
                } else {
                    pull(&replication, id, &sources).await
                };
                match result {
                    Ok(()) => cluster.counters.pulls_done.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        log::warn!("repair: could not copy blob {id} here: {e}");
                        cluster
                            .counters
                            .pulls_failed
                            .fetch_add(1, Ordering::Relaxed)
                    }
                };
                cluster.pulls.finished(&id);
                drop(slot);
            });
        }
    });
}
