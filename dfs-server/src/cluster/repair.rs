//! The repair round (anti-entropy), run by the node with the directory role: the
//! namespace says which blobs must exist; placement says where; every live node reports
//! one digest per placement range (bucket) of what it holds. Where a node's digest
//! differs from the digest of what it should hold, the round lists only those buckets
//! of that node, then orders missing copies pulled (from nodes that have them), extra
//! copies trimmed (once every placement node has one) and garbage deleted (copies the
//! namespace has never heard of, older than the GC grace, not pinned by a store).
//!
//! A converged cluster costs one digest call per node per round (256 × 32 bytes), never
//! a whole listing. The round also yields the under-replicated and missing counts that
//! `dfs status` shows.
//!
//! Why the directory node drives it: only the namespace can tell a copy that must be
//! kept from garbage, so nodes comparing with each other alone would resurrect deleted
//! blobs. When the namespace is replicated, any namespace replica can run this round.
//!
//! Owns: the round and its decisions. Must not: move bytes itself (`replicate` does, on
//! the node that lacks a copy) or change the namespace.

use super::placement;
use super::{local, Cluster, RepairView, Replication, View};
use crate::blobs::index::digests_of;
use dfs_common::cluster::{bucket, DeleteOrder, Digests, PullOrder, BUCKETS};
use dfs_common::{BlobId, FsError};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Runs a round every `repair_interval` until `stop` turns true.
pub fn spawn(replication: Replication, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let period = replication.cluster.settings.repair_interval;
        // Let gossip find the members first.
        let mut wait = period.min(std::time::Duration::from_secs(2));
        loop {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = async { let _ = stop.wait_for(|s| *s).await; } => return,
            }
            wait = period;
            if let Err(e) = round(&replication).await {
                log::warn!("repair round failed: {e}");
            }
        }
    })
}

/// What one live node reported, and the buckets where it differs from what it should hold.
struct NodeReport {
    addr: SocketAddr,
    digests: Option<Digests>,
    differs: Vec<bool>,
    /// Blobs in the differing buckets: id -> mtime (ms, the node's clock).
    listed: HashMap<BlobId, u64>,
    listed_at_ms: u64,
}

impl NodeReport {
    /// Whether the node holds `id`, given whether placement says it should.
    fn holds(&self, id: &BlobId, placed_here: bool) -> bool {
        match &self.digests {
            None => false,
            Some(_) if self.differs[bucket(id)] => self.listed.contains_key(id),
            Some(_) => placed_here,
        }
    }
}

/// Orders for one node.
#[derive(Default)]
struct Orders {
    pulls: Vec<(BlobId, Vec<String>)>,
    deletes: Vec<BlobId>,
}

/// What a round decides on: placement and the namespace's blobs at the round's start.
struct Plan {
    candidates: Vec<placement::Candidate>,
    r: usize,
    live: Vec<SocketAddr>,
    slot: HashMap<SocketAddr, usize>,
    /// Every blob the namespace knows, in id order, and whether it is referenced.
    known: Vec<(BlobId, bool)>,
}

/// The round's counts of referenced, under-replicated and missing blobs.
struct Tally {
    referenced: u64,
    under: u64,
    missing: u64,
}

impl Plan {
    /// Per live node, the digests of what it should hold (blocking).
    fn expected_digests(&self) -> Vec<Vec<[u8; 32]>> {
        let mut expected: Vec<Vec<BlobId>> = vec![Vec::new(); self.live.len()];
        for (id, referenced) in &self.known {
            if !referenced {
                continue;
            }
            for a in placement::placement(&self.candidates, id, self.r) {
                if let Some(i) = self.slot.get(&a) {
                    expected[*i].push(*id);
                }
            }
        }
        expected.iter().map(|e| digests_of(e.iter())).collect()
    }

    /// Pull, trim and garbage orders per live node from what they reported (blocking).
    fn decide(
        &self,
        reports: &[NodeReport],
        blobs: &crate::blobs::BlobStore,
        ns: &crate::namespace::Namespace,
        grace_ms: u64,
    ) -> (Vec<Orders>, Tally) {
        let (live, slot, r) = (&self.live, &self.slot, self.r);
        let mut orders: Vec<Orders> = (0..live.len()).map(|_| Orders::default()).collect();
        let mut tally = Tally {
            referenced: 0,
            under: 0,
            missing: 0,
        };
        for (id, is_referenced) in &self.known {
            if !is_referenced {
                continue;
            }
            tally.referenced += 1;
            let place = placement::placement(&self.candidates, id, r);
            let holders: Vec<usize> = (0..live.len())
                .filter(|i| reports[*i].holds(id, place.contains(&live[*i])))
                .collect();
            if holders.len() < r {
                tally.under += 1;
            }
            if holders.is_empty() {
                tally.missing += 1;
                continue;
            }
            let sources: Vec<String> = holders.iter().map(|i| live[*i].to_string()).collect();
            for a in &place {
                if let Some(&i) = slot.get(a) {
                    if reports[i].digests.is_some() && !holders.contains(&i) {
                        orders[i].pulls.push((*id, sources.clone()));
                    }
                }
            }
            let all_placed = place
                .iter()
                .all(|a| slot.get(a).is_some_and(|i| holders.contains(i)));
            if holders.len() > r && all_placed {
                for &i in &holders {
                    if !place.contains(&live[i]) {
                        orders[i].deletes.push(*id);
                    }
                }
            }
        }
        // Garbage: copies the namespace has never heard of, old enough, not being stored.
        // The namespace is asked again now (not only at the round's start), after the
        // pin check: a store that committed meanwhile is known by then.
        let is_known = |id: &BlobId| self.known.binary_search_by_key(id, |(k, _)| *k).is_ok();
        for (i, rep) in reports.iter().enumerate() {
            for (id, mtime) in &rep.listed {
                if !is_known(id)
                    && mtime.saturating_add(grace_ms) < rep.listed_at_ms
                    && !blobs.is_pinned(id)
                    && matches!(ns.refcount(id), Ok(None))
                {
                    orders[i].deletes.push(*id);
                }
            }
        }
        (orders, tally)
    }
}

/// One round (see the module comment).
pub async fn round(replication: &Replication) -> Result<(), FsError> {
    let cluster = replication.cluster.clone();
    let dirs = cluster.directories();
    if dirs.len() != 1 {
        // Two namespaces would each see the other's blobs as garbage.
        return Err(FsError::Invalid(format!(
            "{} members have the directory role ({dirs:?}); exactly one may. No repair until that is fixed",
            dirs.len()
        )));
    }
    let View {
        candidates,
        r,
        live,
        ..
    } = cluster.view();
    let slot: HashMap<SocketAddr, usize> = live.iter().enumerate().map(|(i, a)| (*a, i)).collect();
    let ns = replication.ns.clone();
    let known = tokio::task::spawn_blocking(move || ns.known_blobs())
        .await
        .map_err(crate::errors::join_err)??;
    // The per-blob work runs off the async threads: gossip shares them, and a round over
    // millions of blobs must not delay its probes.
    let plan = Arc::new(Plan {
        candidates,
        r,
        live,
        slot,
        known,
    });
    let wanted = {
        let plan = plan.clone();
        tokio::task::spawn_blocking(move || plan.expected_digests())
            .await
            .map_err(|e| FsError::Io(format!("repair task failed: {e}")))?
    };

    // All nodes at once: one that cannot be reached costs the round its timeout once.
    let reports: Vec<NodeReport> = futures_util::future::join_all(
        plan.live
            .iter()
            .zip(&wanted)
            .map(|(addr, want)| report(replication, &cluster, *addr, want)),
    )
    .await;

    let grace_ms = cluster.settings.gc_grace.as_millis() as u64;
    let (orders, tally, reports) = {
        let (plan, blobs, ns) = (
            plan.clone(),
            replication.blobs.clone(),
            replication.ns.clone(),
        );
        tokio::task::spawn_blocking(move || {
            let (orders, tally) = plan.decide(&reports, &blobs, &ns, grace_ms);
            (orders, tally, reports)
        })
        .await
        .map_err(|e| FsError::Io(format!("repair task failed: {e}")))?
    };
    let Tally {
        referenced,
        under,
        missing,
    } = tally;

    for (i, o) in orders.into_iter().enumerate() {
        send_orders(replication, &cluster, &reports[i], o).await;
    }

    let mut view = RepairView {
        referenced,
        under_replicated: under,
        missing,
        finished_at: Some(Instant::now()),
        ..RepairView::default()
    };
    for rep in &reports {
        if let Some(d) = &rep.digests {
            view.held.insert(rep.addr, (d.blobs, d.bytes));
            view.repairs_done += d.pulls_done;
            view.repairs_failed += d.pulls_failed;
            view.repairs_pending += d.pulls_queued;
        }
    }
    *cluster.repair.lock().unwrap_or_else(|e| e.into_inner()) = view;
    cluster.counters.rounds.fetch_add(1, Ordering::Relaxed);
    if under > 0 {
        log::info!("repair: {under} of {referenced} blobs under-replicated ({missing} without any live copy)");
    }
    Ok(())
}

/// Digests (and, where they differ from `expected`, listings) of one node.
async fn report(
    replication: &Replication,
    cluster: &Arc<Cluster>,
    addr: SocketAddr,
    want: &[[u8; 32]],
) -> NodeReport {
    let mut rep = NodeReport {
        addr,
        digests: None,
        differs: vec![false; BUCKETS],
        listed: HashMap::new(),
        listed_at_ms: 0,
    };
    let local = addr == cluster.settings.advertise;
    let digests = if local {
        local::off_thread(replication, local::digests).await
    } else {
        cluster.peers.digests(addr).await
    };
    let digests = match digests {
        Ok(d) if d.digests.len() == BUCKETS => d,
        Ok(_) => {
            log::warn!("repair: node {addr} sent digests of the wrong shape");
            return rep;
        }
        Err(e) => {
            log::info!("repair: no digests from {addr}: {e}");
            return rep;
        }
    };
    let buckets: Vec<u16> = (0..BUCKETS)
        .filter(|b| want[*b] != digests.digests[*b])
        .map(|b| b as u16)
        .collect();
    if !buckets.is_empty() {
        let listing = if local {
            let b = buckets.clone();
            local::off_thread(replication, move |rep| local::listing(rep, &b)).await
        } else {
            cluster.peers.listing(addr, buckets.clone()).await
        };
        match listing {
            Ok(l) => {
                for b in &buckets {
                    rep.differs[*b as usize] = true;
                }
                rep.listed_at_ms = l.listed_at_ms;
                rep.listed = l.blobs.into_iter().map(|(id, _, m)| (id, m)).collect();
            }
            Err(e) => {
                log::info!("repair: no listing from {addr}: {e}");
                return rep;
            }
        }
    }
    rep.digests = Some(digests);
    rep
}

/// Most blobs named in one order request (keeps each under the order size limit).
const ORDER_BATCH: usize = 10_000;

async fn send_orders(
    replication: &Replication,
    cluster: &Arc<Cluster>,
    rep: &NodeReport,
    o: Orders,
) {
    let addr = rep.addr;
    let local = addr == cluster.settings.advertise;
    let missing = o.pulls.len();
    let mut queued = 0u64;
    let mut pulls = o.pulls;
    while !pulls.is_empty() {
        let batch: Vec<_> = pulls.drain(..pulls.len().min(ORDER_BATCH)).collect();
        let result = if local {
            Ok(batch
                .into_iter()
                .filter(|(id, sources)| {
                    let sources = sources.iter().filter_map(|s| s.parse().ok()).collect();
                    cluster.pulls.push(*id, sources)
                })
                .count() as u64)
        } else {
            let order = PullOrder { blobs: batch };
            cluster.peers.order(addr, "pull", &order).await
        };
        match result {
            Ok(q) => queued += q,
            Err(e) => {
                log::warn!("repair: pull order to {addr} failed: {e}");
                break;
            }
        }
    }
    cluster
        .counters
        .repairs_ordered
        .fetch_add(queued, Ordering::Relaxed);
    if queued > 0 {
        log::info!("repair: {addr} to copy {queued} blobs ({missing} missing there)");
    }
    for batch in o.deletes.chunks(ORDER_BATCH) {
        let order = DeleteOrder {
            listed_at_ms: rep.listed_at_ms,
            blobs: batch.to_vec(),
        };
        let result = if local {
            local::off_thread(replication, move |rep| local::delete(rep, &order)).await
        } else {
            cluster.peers.order(addr, "delete", &order).await
        };
        if let Err(e) = result {
            log::warn!("repair: delete order to {addr} failed: {e}");
            break;
        }
    }
}
