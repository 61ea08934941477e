//! Garbage collection of blobs: deletes blob files whose refcount has been 0 for longer
//! than the grace period, and at startup deals with orphans (blob files a crash left
//! without any reference row).
//!
//! Owns: deciding which blob files to delete. Must not change refcounts: it only asks the
//! namespace to forget (or adopt) garbage rows through `NsCommand`s.

use super::BlobStore;
use crate::namespace::{Namespace, NsCommand};
use dfs_common::FsError;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Most blobs deleted in one round.
const BATCH: usize = 10_000;

/// One collection round (blocking): deletes blobs on the garbage list since at least
/// `grace_secs` before `now_secs` that are still unreferenced and not pinned.
pub fn collect(
    store: &BlobStore,
    ns: &Namespace,
    grace_secs: u64,
    now_secs: u64,
) -> Result<usize, FsError> {
    let mut due = ns.garbage_due(now_secs.saturating_sub(grace_secs))?;
    due.truncate(BATCH);
    if due.is_empty() {
        return Ok(0);
    }
    let mut deleted = Vec::new();
    {
        // Holding the pin table: no store can install one of these blobs and commit a
        // reference to it until we are done deleting.
        let pins = store.pins.lock().unwrap_or_else(|e| e.into_inner());
        for id in due {
            if pins.contains_key(&id) || ns.refcount(&id)?.unwrap_or(0) != 0 {
                continue;
            }
            match store.remove(&id) {
                Ok(()) => deleted.push(id),
                Err(e) => log::warn!("gc: cannot delete blob {id}: {e}"),
            }
        }
    }
    let n = deleted.len();
    if n > 0 {
        ns.apply(NsCommand::ForgetBlobs { blobs: deleted })?;
        log::info!("gc: deleted {n} unreferenced blobs");
    }
    Ok(n)
}

/// At startup (blocking, before serving): blob files that the namespace has never heard
/// of were written by a store that crashed before its commit. Those older than the grace
/// period are deleted; younger ones are put on the garbage list as of their mtime.
pub fn adopt_orphans(
    store: &BlobStore,
    ns: &Namespace,
    grace_secs: u64,
    now_secs: u64,
) -> Result<(usize, usize), FsError> {
    let mut deleted = 0;
    let mut adopt = Vec::new();
    for (id, mtime) in store.list()? {
        if ns.refcount(&id)?.is_some() {
            continue;
        }
        if mtime.saturating_add(grace_secs) <= now_secs {
            match store.remove(&id) {
                Ok(()) => deleted += 1,
                Err(e) => log::warn!("cannot delete orphan blob {id}: {e}"),
            }
        } else {
            adopt.push((id, mtime));
        }
    }
    let adopted = adopt.len();
    if adopted > 0 {
        ns.apply(NsCommand::AdoptBlobs { blobs: adopt })?;
    }
    if deleted + adopted > 0 {
        log::info!("orphan blobs: {deleted} deleted, {adopted} kept until their grace ends");
    }
    Ok((deleted, adopted))
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Runs `collect` every `min(grace, 30 s)` (at least every second) until `stop` turns true.
pub fn spawn(
    store: Arc<BlobStore>,
    ns: Arc<Namespace>,
    grace_secs: u64,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let period = Duration::from_secs(grace_secs.clamp(1, 30));
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                _ = async { let _ = stop.wait_for(|s| *s).await; } => return,
            }
            let (store, ns) = (store.clone(), ns.clone());
            let round =
                tokio::task::spawn_blocking(move || collect(&store, &ns, grace_secs, unix_now()))
                    .await;
            match round {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => log::warn!("gc round failed: {e}"),
                Err(e) => log::warn!("gc round panicked: {e}"),
            }
        }
    })
}
