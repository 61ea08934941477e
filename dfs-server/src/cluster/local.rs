//! This node's own blob copies as the replication service sees them: their digests and
//! listings by placement bucket, and carrying out a delete order. The repair round asks
//! them of the directory node itself directly, and of other nodes through their
//! `/v1/cluster/` resources (`crate::api::cluster`).
//!
//! Owns: those reports and the delete. Must not decide what to delete (`repair`).

use super::Replication;
use dfs_common::cluster::{DeleteOrder, Digests, Listing};
use dfs_common::FsError;
use std::sync::atomic::Ordering;

/// This node's digests (blocking: one pass over the index).
pub fn digests(replication: &Replication) -> Digests {
    let (digests, count, bytes) = {
        let index = replication.blobs.index();
        (index.digests(), index.len(), index.bytes())
    };
    let cluster = &replication.cluster;
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    Digests {
        listed_at_ms: super::key::now_ms(),
        digests,
        blobs: count,
        bytes,
        pulls_queued: cluster.pulls.len() as u64,
        pulls_done: load(&cluster.counters.pulls_done),
        pulls_failed: load(&cluster.counters.pulls_failed),
        scrubbed: load(&cluster.counters.scrubbed),
        scrub_bad: load(&cluster.counters.scrub_bad),
    }
}

/// What this node holds in `buckets` (blocking).
pub fn listing(replication: &Replication, buckets: &[u16]) -> Listing {
    let listed_at_ms = super::key::now_ms();
    let held = replication.blobs.index().listing(buckets);
    Listing {
        listed_at_ms,
        blobs: held
            .into_iter()
            .map(|(id, h)| (id, h.size, h.mtime_ms))
            .collect(),
    }
}

/// Carries out a delete order (blocking); returns how many copies went.
pub fn delete(replication: &Replication, order: &DeleteOrder) -> u64 {
    let mut n = 0u64;
    for id in &order.blobs {
        match replication.blobs.remove_if_older(id, order.listed_at_ms) {
            Ok(true) => n += 1,
            Ok(false) => {}
            Err(e) => log::warn!("cannot delete blob {id}: {e}"),
        }
    }
    n
}

/// Runs one of the blocking helpers above off the async threads.
pub async fn off_thread<T: Send + 'static>(
    replication: &Replication,
    f: impl FnOnce(&Replication) -> T + Send + 'static,
) -> Result<T, FsError> {
    let replication = replication.clone();
    tokio::task::spawn_blocking(move || f(&replication))
        .await
        .map_err(crate::errors::join_err)
}
