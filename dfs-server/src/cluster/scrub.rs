//! The scrubber: re-hashes every local blob copy once per `scrub_interval`, paced so a
//! pass spreads over the period. A copy whose bytes no longer match its name (bit rot, a
//! bad disk, a stray write) is deleted at once and pulled again from another node; the
//! next repair round would order the same, this only makes it sooner.
//!
//! Owns: the pass and its pacing. Must not: keep a bad copy "just in case" (a copy that
//! fails its hash is never served, so it is worth nothing).

use super::Replication;
use dfs_common::hash::BlobHasher;
use dfs_common::BlobId;
use std::io::Read;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Whether the local copy of `id` still hashes to its name (blocking). A copy that
/// vanished counts as good (the repair round sees it missing).
fn copy_is_good(replication: &Replication, id: &BlobId) -> bool {
    let Ok(mut f) = std::fs::File::open(replication.blobs.path(id)) else {
        return true;
    };
    let mut hasher = BlobHasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(_) => return false,
        }
    }
    hasher.finish() == *id
}

/// Runs scrub passes until `stop` turns true.
pub fn spawn(replication: Replication, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let period = replication.cluster.settings.scrub_interval;
        loop {
            let started = Instant::now();
            let blobs = replication.blobs.clone();
            let ids = tokio::task::spawn_blocking(move || blobs.index().ids())
                .await
                .unwrap_or_default();
            let pace = period / (ids.len().max(1) as u32);
            for id in ids {
                let next = Instant::now() + pace.min(Duration::from_secs(60));
                let (check, one) = (replication.clone(), id);
                let checked_at = super::key::now_ms();
                let good =
                    match tokio::task::spawn_blocking(move || copy_is_good(&check, &one)).await {
                        Ok(good) => good,
                        Err(e) => {
                            // Not judged: the copy stays, and the next pass checks it again.
                            log::warn!("scrub: checking blob {id} failed: {e}");
                            true
                        }
                    };
                let cluster = &replication.cluster;
                cluster.counters.scrubbed.fetch_add(1, Ordering::Relaxed);
                if !good {
                    cluster.counters.scrub_bad.fetch_add(1, Ordering::Relaxed);
                    log::warn!("scrub: local copy of blob {id} is corrupt; dropping it and copying it again");
                    // Unless a good copy replaced it meanwhile.
                    let blobs = replication.blobs.clone();
                    let _ =
                        tokio::task::spawn_blocking(move || blobs.remove_if_older(&id, checked_at))
                            .await;
                    let sources = cluster.sources_for(&id);
                    cluster.pulls.push(id, sources);
                }
                tokio::select! {
                    _ = tokio::time::sleep_until(next.into()) => {}
                    _ = async { let _ = stop.wait_for(|s| *s).await; } => return,
                }
            }
            let rest = period.saturating_sub(started.elapsed());
            tokio::select! {
                _ = tokio::time::sleep(rest.max(Duration::from_millis(100))) => {}
                _ = async { let _ = stop.wait_for(|s| *s).await; } => return,
            }
        }
    })
}
